// fork.mjs drives forks and snapshots with the official SDK, unmodified:
// sandbox.fork({count}) (each fork has the sandbox's files and its running
// commands, and goes its own way), createSnapshot, listSnapshots,
// Sandbox.create(snapshotId), deleteSnapshot. Any failure exits 1.
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'

const sb = await Sandbox.create('base', { timeoutMs: 120_000 })
await sb.files.write('/root/state.txt', 'before')
const bg = await sb.commands.run('sleep 600', { background: true })

const forks = await sb.fork({ count: 2 })
assert.equal(forks.length, 2)
for (const f of forks) {
  assert.ok(!(f instanceof Error), String(f))
  assert.notEqual(f.sandboxId, sb.sandboxId)
  assert.equal(await f.files.read('/root/state.txt'), 'before')
  const procs = await f.commands.list()
  assert.ok(procs.some((p) => p.pid === bg.pid), `the fork's commands: ${JSON.stringify(procs)}`)
  await f.files.write('/root/state.txt', `fork ${f.sandboxId}`)
}
assert.notEqual(await forks[0].files.read('/root/state.txt'), await forks[1].files.read('/root/state.txt'))
assert.equal(await sb.files.read('/root/state.txt'), 'before')
assert.equal((await sb.getInfo()).state, 'running')

const name = `sdk-snap-${process.pid}`
const snap = await sb.createSnapshot({ name })
assert.equal(snap.snapshotId, name)
const listed = await Sandbox.listSnapshots({ sandboxId: sb.sandboxId }).nextItems()
assert.ok(listed.some((s) => s.snapshotId === name), JSON.stringify(listed))
const fromSnap = await Sandbox.create(name, { timeoutMs: 60_000 })
assert.equal(await fromSnap.files.read('/root/state.txt'), 'before')
assert.equal(await Sandbox.deleteSnapshot(name), true)
assert.equal(await Sandbox.deleteSnapshot(name), false)

for (const s of [...forks, fromSnap, sb]) await s.kill()
console.log('e2b fork and snapshots: ok')
