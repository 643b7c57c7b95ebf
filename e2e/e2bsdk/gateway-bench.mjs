// gateway-bench.mjs measures what a cluster's gateway adds to E2B's SDK:
// the same operations through the official SDK (unmodified), straight at
// a node (its control API and app listener) and through the gateway,
// alternating A/B, each on a sandbox of its own on the same node. Prints
// a Markdown table of medians (ms), their ratio and the difference. Run
// by bench/cluster (-only e2b) in `make bench`.
//
//   E2B_API_KEY: the cluster's token as an E2B key
//   DIRECT_API, DIRECT_URL: the node's control API and app listener (URLs)
//   GW_API, GW_URL: the gateway's
//   N: samples of each operation (default 20)
import { Sandbox } from 'e2b'
import { median, time } from './timing.mjs'

const N = Number(process.env.N || 20)
const via = {
  direct: { apiUrl: process.env.DIRECT_API, sandboxUrl: process.env.DIRECT_URL },
  gateway: { apiUrl: process.env.GW_API, sandboxUrl: process.env.GW_URL },
}

const sb = {}
for (const [k, opts] of Object.entries(via)) sb[k] = await Sandbox.create('base', { ...opts, timeoutMs: 600_000 })
const data = 'x'.repeat(4096)
for (const s of Object.values(sb)) await s.files.write('/root/f.txt', data)

const rows = []
async function compare(name, op, n = N) {
  const t = { direct: [], gateway: [] }
  for (let i = 0; i < n; i++) {
    for (const k of i % 2 ? ['gateway', 'direct'] : ['direct', 'gateway']) t[k].push(await time(() => op(k)))
  }
  rows.push([name, n, median(t.direct), median(t.gateway)])
}

await compare('getInfo', (k) => sb[k].getInfo())
await compare('run `true`', (k) => sb[k].commands.run('true'))
await compare('run, 64 KiB of output', (k) => sb[k].commands.run('head -c 65536 /dev/zero | tr "\\0" x'))
await compare('write a 4 KiB file', (k) => sb[k].files.write('/root/f.txt', data))
await compare('read a 4 KiB file', (k) => sb[k].files.read('/root/f.txt'))
await compare('create + kill', async (k) => {
  const s = await Sandbox.create('base', { ...via[k], timeoutMs: 60_000 })
  await s.kill()
})
await compare('pause + connect (resume)', async (k) => {
  await sb[k].pause()
  sb[k] = await Sandbox.connect(sb[k].sandboxId, { ...via[k], timeoutMs: 600_000 })
}, Math.max(3, Math.floor(N / 2)))
for (const s of Object.values(sb)) await s.kill()

console.log('| operation (alternating) | samples | straight at the node p50 ms | through the gateway p50 ms | gateway ÷ node | added ms |')
console.log('|---|---|---|---|---|---|')
for (const [name, n, a, b] of rows) {
  console.log(`| ${name} | ${n} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(b / a).toFixed(2)}× | ${(b - a).toFixed(1)} |`)
}
