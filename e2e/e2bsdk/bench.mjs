// bench.mjs measures what the E2B compatibility layer costs: the same
// operations through the official SDK (unmodified) and through Frost's
// own REST API called with fetch from this same process, alternating
// A/B, on the same server. Prints a Markdown table of medians (ms) and
// their ratio. Run by bench/sandbox (-e2b) in `make bench`.
//
//   E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY: as for the SDK
//   FROST_API, FROST_TOKEN: Frost's control API and admin token
//   N: samples of each operation (default 20)
import { Sandbox } from 'e2b'
import { median, time } from './timing.mjs'

const N = Number(process.env.N || 20)
const api = process.env.FROST_API
const auth = { Authorization: `Bearer ${process.env.FROST_TOKEN}` }

async function frost(method, path, body, headers = {}) {
  const r = await fetch(api + path, { method, headers: { ...auth, ...headers }, body })
  const text = await r.text()
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`)
  return text
}


const rows = []
async function compare(name, sdk, native) {
  const a = []
  const b = []
  for (let i = 0; i < N; i++) {
    a.push(await time(sdk))
    b.push(await time(native))
  }
  rows.push([name, median(a), median(b)])
}

const sb = await Sandbox.create('base', { timeoutMs: 600_000 })
const id = JSON.parse(await frost('POST', '/v1/sandboxes', '{"timeout":"10m"}')).id
const exec = (cmd) => frost('POST', `/v1/sandboxes/${id}/exec`, JSON.stringify({ cmd: ['/bin/bash', '-l', '-c', cmd] }) + '\n')
const data = 'x'.repeat(4096)

await compare('run `true` (bash -l -c)', () => sb.commands.run('true'), () => exec('true'))
await compare('run, 64 KiB of output', () => sb.commands.run('head -c 65536 /dev/zero | tr "\\0" x'), () => exec('head -c 65536 /dev/zero | tr "\\0" x'))
await compare('write a 4 KiB file', () => sb.files.write('/root/f.txt', data), () => frost('PUT', `/v1/sandboxes/${id}/files?path=/root/f.txt`, data))
await compare('read a 4 KiB file', () => sb.files.read('/root/f.txt'), () => frost('GET', `/v1/sandboxes/${id}/files?path=/root/f.txt`))
await compare('stat', () => sb.files.getInfo('/root/f.txt'), () => frost('GET', `/v1/sandboxes/${id}/files/stat?path=/root/f.txt`))
await sb.kill()
await frost('DELETE', `/v1/sandboxes/${id}`)

await compare('create + kill', async () => {
  const s = await Sandbox.create('base', { timeoutMs: 60_000 })
  await s.kill()
}, async () => {
  const i = JSON.parse(await frost('POST', '/v1/sandboxes', '{}')).id
  await frost('DELETE', `/v1/sandboxes/${i}`)
})

console.log(`| operation (${N} samples each, alternating) | E2B SDK p50 ms | Frost API p50 ms | SDK ÷ Frost |`)
console.log('|---|---|---|---|')
for (const [name, a, b] of rows) console.log(`| ${name} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(a / b).toFixed(2)}× |`)
