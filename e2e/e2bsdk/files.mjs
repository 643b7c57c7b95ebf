// files.mjs: files.rename and files.watchDir with the official SDK, unmodified.
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'
const sb = await Sandbox.create('base', { timeoutMs: 120_000 })
await sb.files.write('/root/w/a.txt', 'one')
const moved = await sb.files.rename('/root/w/a.txt', '/root/w/sub/b.txt')
assert.equal(moved.path, '/root/w/sub/b.txt')
assert.equal(await sb.files.read('/root/w/sub/b.txt'), 'one')
const events = []
const handle = await sb.files.watchDir('/root/w', (ev) => events.push(ev), { recursive: true })
await sb.files.write('/root/w/c.txt', 'two')
for (let i = 0; i < 50 && !events.some((e) => e.name === 'c.txt'); i++) await new Promise((r) => setTimeout(r, 100))
await handle.stop()
assert.ok(events.some((e) => e.name === 'c.txt'), JSON.stringify(events))
await sb.kill()
console.log('e2b files extra: ok')
