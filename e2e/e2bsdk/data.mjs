// data.mjs drives Frost's E2B data plane (envd, served by Frost on the host)
// with the official SDK, unmodified: commands.run (env from create, cwd,
// stdout/stderr, streamed output, non-zero exits), files write/read/list/
// exists/makeDir/remove, and files and commands after pause + connect: a
// background command runs on after the pause, as in E2B's VMs, and is
// listed, re-attached, fed and killed as before it.
import assert from 'node:assert/strict'
import { Sandbox, CommandExitError } from 'e2b'
const sb = await Sandbox.create('base', { timeoutMs: 120_000, envs: { GREETING: 'hi' } })
const r = await sb.commands.run('echo "$GREETING from $(pwd)"; echo err >&2')

assert.equal(r.stdout, 'hi from /root\n')
assert.equal(r.stderr, 'err\n')
assert.equal(r.exitCode, 0)
let lines = []
await sb.commands.run('for i in 1 2 3; do echo line$i; sleep 0.2; done', { onStdout: (d) => lines.push(d) })
assert.deepEqual(lines.join(''), 'line1\nline2\nline3\n')
await assert.rejects(sb.commands.run('exit 3'), (e) => e instanceof CommandExitError && e.exitCode === 3)
await sb.files.write('/root/dir/a.txt', 'hello files')
assert.equal(await sb.files.read('/root/dir/a.txt'), 'hello files')
const list = await sb.files.list('/root/dir')
assert.deepEqual(list.map((e) => e.name), ['a.txt'])
assert.equal(await sb.files.exists('/root/dir/a.txt'), true)
assert.equal(await sb.files.exists('/root/nope'), false)
assert.equal(await sb.files.makeDir('/root/newdir'), true)
assert.equal(await sb.files.makeDir('/root/newdir'), false)
await sb.files.remove('/root/dir/a.txt')
assert.equal(await sb.files.exists('/root/dir/a.txt'), false)
const ticker = await sb.commands.run('i=0; while true; do i=$((i+1)); echo $i >/tmp/tick.new && mv /tmp/tick.new /tmp/tick; echo tick $i; sleep 0.1; done', { background: true })
const reader = await sb.commands.run('while read l; do echo "got $l"; done; echo eof', { background: true, stdin: true })
const tick = async (s) => Number(await s.files.read('/tmp/tick'))
for (let i = 0; i < 50 && !(await sb.files.exists('/tmp/tick')); i++) await new Promise((r) => setTimeout(r, 100))
await sb.pause()
const again = await Sandbox.connect(sb.sandboxId)
assert.equal((await again.commands.run('ls /root')).stdout, 'dir\nnewdir\n')
const before = await tick(again)
await new Promise((r) => setTimeout(r, 500))
const after = await tick(again)
assert.ok(before > 0 && after > before, `the background loop after the pause: tick ${before} then ${after}`)
// The commands started before the pause are still the sandbox's: listed
// under their pids (real ones: ps inside agrees), re-attached, fed and
// killed.
const listed = (await again.commands.list()).map((p) => p.pid)
assert.ok(listed.includes(ticker.pid) && listed.includes(reader.pid), `listed ${listed}, want ${ticker.pid} and ${reader.pid}`)
assert.match((await again.commands.run(`cat /proc/${ticker.pid}/cmdline`)).stdout, /while true/)
const seen = []
const follow = await again.commands.connect(ticker.pid, { onStdout: (d) => seen.push(d) })
for (let i = 0; i < 50 && !seen.join('').includes('tick'); i++) await new Promise((r) => setTimeout(r, 100))
assert.match(seen.join(''), /tick \d+/)
assert.equal(await again.commands.kill(ticker.pid), true)
await assert.rejects(follow.wait())
assert.equal(await again.commands.kill(ticker.pid), false)
const got = []
const fed = await again.commands.connect(reader.pid, { onStdout: (d) => got.push(d) })
await again.commands.sendStdin(reader.pid, 'after the pause\n')
for (let i = 0; i < 50 && !got.join('').includes('got after'); i++) await new Promise((r) => setTimeout(r, 100))
assert.equal(got.join(''), 'got after the pause\n')
await fed.kill()
assert.ok(!(await again.commands.list()).some((p) => p.pid === ticker.pid || p.pid === reader.pid))
await again.kill()
console.log('e2b data plane: ok')
