// pty.mjs: terminals with the official SDK, unmodified. sandbox.pty.create
// runs bash on a terminal of the given size: typed input is echoed and run,
// ^C interrupts the command in the foreground, pty.resize changes the size,
// and the terminal outlives a pause (listed, pty.connect re-attaches,
// input and resize reach it); pty.kill ends it.
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'

const dec = new TextDecoder()
const enc = new TextEncoder()
let out = ''
const onData = (d) => { out += dec.decode(d) }
// until waits for the terminal's output (since the last mark) to match re.
let mark = 0
const until = async (re, what) => {
  const t0 = Date.now()
  while (!re.test(out.slice(mark))) {
    if (Date.now() - t0 > 20_000) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(out.slice(mark))}`)
    await new Promise((r) => setTimeout(r, 20))
  }
  mark = out.length
}
const type = (sb, pid, s) => sb.pty.sendInput(pid, enc.encode(s))

const sb = await Sandbox.create('base', { timeoutMs: 120_000 })
const term = await sb.pty.create({ cols: 100, rows: 30, onData, timeoutMs: 0 })
assert.ok(term.pid > 0)
await type(sb, term.pid, 'tty; stty size; echo "term=$TERM"\n')
await until(/term=xterm-256color\r\n/, 'the first answers')
assert.match(out, /\/dev\/pts\/\d+\r\n/)
assert.match(out, /30 100\r\n/)
// ^C stops the command in the foreground, not the shell.
await type(sb, term.pid, 'sleep 30; echo not-interrupted\n')
await new Promise((r) => setTimeout(r, 300))
await type(sb, term.pid, '\x03')
await type(sb, term.pid, 'echo "status=$?"\n')
await until(/status=130\r\n/, 'the interrupted sleep')
assert.doesNotMatch(out, /\nnot-interrupted\r\n/) // the echoed command line has it, not a line of its own
await sb.pty.resize(term.pid, { cols: 120, rows: 40 })
await type(sb, term.pid, 'stty size\n')
await until(/40 120\r\n/, 'the new size')
const list = await sb.commands.list()
assert.ok(list.some((p) => p.pid === term.pid), JSON.stringify(list))

// A pause ends the stream, not the terminal.
await type(sb, term.pid, 'export KEPT=yes\n')
await new Promise((r) => setTimeout(r, 300))
await sb.pause()
const again = await Sandbox.connect(sb.sandboxId)
assert.ok((await again.commands.list()).some((p) => p.pid === term.pid))
const back = await again.pty.connect(term.pid, { onData, timeoutMs: 0 })
await again.pty.resize(term.pid, { cols: 90, rows: 20 })
await type(again, term.pid, 'echo "kept=$KEPT"; stty size\n')
await until(/kept=yes\r\n20 90\r\n/, 'the shell after the pause')
assert.equal(await again.pty.kill(term.pid), true)
const res = await back.wait().catch((e) => e)
assert.notEqual(res.exitCode, 0, JSON.stringify(res))
assert.equal(await again.pty.kill(term.pid), false)
await again.kill()
console.log('e2b pty: ok')
