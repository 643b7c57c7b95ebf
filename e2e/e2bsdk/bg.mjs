// bg.mjs: background commands with the official SDK, unmodified: list,
// kill, sendStdin, and disconnect → connect (a command outlives the stream
// that started it; another client re-attaches by pid).
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'
const sb = await Sandbox.create('base', { timeoutMs: 120_000 })
const h = await sb.commands.run('sleep 60', { background: true })
assert.ok(h.pid > 0)
const list = await sb.commands.list()
assert.ok(list.some((p) => p.pid === h.pid), JSON.stringify(list))
assert.equal(await sb.commands.kill(h.pid), true)
await assert.rejects(h.wait())
assert.equal(await sb.commands.kill(h.pid), false)
const echo = await sb.commands.run('head -1', { background: true, stdin: true })
await sb.commands.sendStdin(echo.pid, 'hello stdin\n')
const res = await echo.wait()
assert.equal(res.stdout, 'hello stdin\n')
const slow = await sb.commands.run('for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; done', { background: true })
await slow.disconnect()
const again = await Sandbox.connect(sb.sandboxId)
const seen = []
const h2 = await again.commands.connect(slow.pid, { onStdout: (d) => seen.push(d) })
const done = await h2.wait()
assert.equal(done.exitCode, 0)
assert.match(seen.join(''), /tick 6/)
await assert.rejects(again.commands.connect(slow.pid))
await sb.kill()
console.log('e2b background commands: ok')
