// control.mjs drives Frost's E2B control plane with the official SDK,
// unmodified: create, getInfo, list by metadata, getMetrics, setTimeout,
// pause, connect (resume), kill. Every step is checked; any failure exits 1.
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'

const sb = await Sandbox.create('base', { timeoutMs: 120_000, metadata: { suite: 'frost', run: process.pid.toString() } })
assert.match(sb.sandboxId, /^[a-z0-9]{20}$/)

const info = await sb.getInfo()
assert.equal(info.state, 'running')
assert.equal(info.metadata.suite, 'frost')

const items = await Sandbox.list({ query: { metadata: { run: process.pid.toString() } } }).nextItems()
assert.deepEqual(items.map((s) => s.sandboxId), [sb.sandboxId])

// getMetrics: CPU and memory from the sandbox's cgroup, a point for now
// after the one taken as it started.
await sb.commands.run("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
const metrics = await sb.getMetrics()
assert.ok(metrics.length >= 1, `metrics: ${JSON.stringify(metrics)}`)
const last = metrics.at(-1)
assert.ok(last.timestamp instanceof Date && Date.now() - last.timestamp.getTime() < 60_000, `timestamp ${last.timestamp}`)
assert.ok(last.cpuCount >= 1 && last.cpuUsedPct > 0 && last.cpuUsedPct <= 100, `cpu: ${JSON.stringify(last)}`)
assert.ok(last.memUsed > 0 && last.memTotal >= last.memUsed, `memory: ${JSON.stringify(last)}`)

await sb.setTimeout(300_000)
assert.equal(await sb.pause(), true)
assert.equal((await Sandbox.getInfo(sb.sandboxId)).state, 'paused')

// Paused: its history.
assert.ok((await Sandbox.getMetrics(sb.sandboxId)).length >= 1)

const again = await Sandbox.connect(sb.sandboxId)
assert.equal((await again.getInfo()).state, 'running')

assert.equal(await again.kill(), true)
assert.equal(await Sandbox.kill(sb.sandboxId), false)
console.log('e2b control plane: ok')
