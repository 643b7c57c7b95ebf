// bg.mjs: background commands with the official SDK, unmodified: list, kill, sendStdin.
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
await sb.kill()
console.log('e2b background commands: ok')
