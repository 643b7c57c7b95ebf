// files.mjs: files.rename, files.watchDir and files.write of many files
// with the official SDK, unmodified.
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
// files.write([...]): many files in one request, each under its own
// directory (written as one tree by Frost), every path kept whole.
const many = Array.from({ length: 30 }, (_, i) => ({ path: `/root/many/d${i % 3}/f${i}.txt`, data: `file ${i}` }))
const wrote = await sb.files.write(many)
assert.deepEqual(wrote.map((w) => w.path), many.map((f) => f.path))
for (const i of [0, 14, 29]) assert.equal(await sb.files.read(`/root/many/d${i % 3}/f${i}.txt`), `file ${i}`)
assert.equal((await sb.files.list('/root/many/d1')).length, 10)
await sb.kill()
console.log('e2b files extra: ok')
