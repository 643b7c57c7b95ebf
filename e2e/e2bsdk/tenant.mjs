// tenant.mjs drives the official SDK, unmodified, with a tenant's key
// (E2B_API_KEY, e2b_ and the tenant token's secret): its sandboxes and
// snapshots are its own; OTHER_SANDBOX, the admin's, is not found; the
// list holds its own alone. Any failure exits 1.
import assert from 'node:assert/strict'
import { Sandbox, SandboxNotFoundError } from 'e2b'

const sb = await Sandbox.create('base', { timeoutMs: 120_000 })
assert.equal((await sb.commands.run('echo tenant')).stdout, 'tenant\n')
const listed = await Sandbox.list().nextItems()
assert.deepEqual(listed.map((s) => s.sandboxId), [sb.sandboxId])
await assert.rejects(Sandbox.connect(process.env.OTHER_SANDBOX), SandboxNotFoundError)
await assert.rejects(Sandbox.getInfo(process.env.OTHER_SANDBOX), SandboxNotFoundError)
assert.equal(await Sandbox.kill(process.env.OTHER_SANDBOX), false)

const name = `tenant-snap-${process.pid}`
await sb.createSnapshot({ name })
const snaps = await Sandbox.listSnapshots().nextItems()
assert.deepEqual(snaps.map((s) => s.snapshotId), [name])
const fromSnap = await Sandbox.create(name, { timeoutMs: 60_000 })
assert.equal(await Sandbox.deleteSnapshot(name), true)
for (const s of [fromSnap, sb]) await s.kill()
console.log('e2b as a tenant: ok')
