// control.mjs drives Frost's E2B control plane with the official SDK,
// unmodified: create, getInfo, list by metadata, setTimeout, pause,
// connect (resume), kill. Every step is checked; any failure exits 1.
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'

const sb = await Sandbox.create('base', { timeoutMs: 120_000, metadata: { suite: 'frost', run: process.pid.toString() } })
assert.match(sb.sandboxId, /^[a-z0-9]{20}$/)

const info = await sb.getInfo()
assert.equal(info.state, 'running')
assert.equal(info.metadata.suite, 'frost')

const items = await Sandbox.list({ query: { metadata: { run: process.pid.toString() } } }).nextItems()
assert.deepEqual(items.map((s) => s.sandboxId), [sb.sandboxId])

await sb.setTimeout(300_000)
assert.equal(await sb.pause(), true)
assert.equal((await Sandbox.getInfo(sb.sandboxId)).state, 'paused')

const again = await Sandbox.connect(sb.sandboxId)
assert.equal((await again.getInfo()).state, 'running')

assert.equal(await again.kill(), true)
assert.equal(await Sandbox.kill(sb.sandboxId), false)
console.log('e2b control plane: ok')
