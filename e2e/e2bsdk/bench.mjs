// bench.mjs measures what the E2B compatibility layer costs: the same
// operations through the official SDK (unmodified) and through Frost's
// own REST API called with fetch from this same process, alternating
// A/B, on the same server. Prints a Markdown table of medians (ms) and
// their ratio; then a second one of typing through the SDK: a line to cat
// on a terminal (pty.sendInput) against on pipes (commands.sendStdin); then
// files.write of 30 files in one call against one call a file.
// Run by bench/sandbox (-e2b) in `make bench`.
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

// Typing through the SDK: a line sent to cat on pipes (commands.sendStdin)
// and on a terminal (pty.sendInput), until it comes back; alternating.
const typing = { stdin: [], echo: [], pty: [] }
{
  let piped = ''
  let onTerm = ''
  const count = (s, sub) => s.split(sub).length - 1
  // until resolves once get() holds sub n times, checked as output comes.
  let waiting = []
  const arrived = () => { waiting = waiting.filter((check) => !check()) }
  const until = (get, sub, n) => new Promise((resolve) => {
    const check = () => count(get(), sub) >= n && (resolve(), true)
    if (!check()) waiting.push(check)
  })
  const cat = await sb.commands.run('cat', { background: true, stdin: true, onStdout: (d) => { piped += d; arrived() } })
  const term = await sb.pty.create({ cols: 80, rows: 24, onData: (d) => { onTerm += new TextDecoder().decode(d); arrived() }, timeoutMs: 0 })
  await sb.pty.sendInput(term.pid, new TextEncoder().encode('exec cat\n'))
  await new Promise((r) => setTimeout(r, 500))
  for (let i = 0; i < N; i++) {
    const line = `line ${i}`
    typing.stdin.push(await time(async () => {
      await sb.commands.sendStdin(cat.pid, line + '\n')
      await until(() => piped, line + '\n', 1)
    }))
    const t0 = performance.now()
    await sb.pty.sendInput(term.pid, new TextEncoder().encode(line + '\n'))
    await until(() => onTerm, line + '\r\n', 1)
    typing.echo.push(performance.now() - t0)
    await until(() => onTerm, line + '\r\n', 2)
    typing.pty.push(performance.now() - t0)
  }
  await sb.commands.kill(cat.pid)
  await sb.pty.kill(term.pid)
}

// files.write of many files: one call (one request; Frost writes the
// parts as one tree) against one call a file (a write each, as Frost
// wrote every part before); alternating.
const many = { batch: [], each: [] }
{
  const files = (k) => Array.from({ length: 30 }, (_, i) => ({ path: `/root/many${k}/d${i % 3}/f${i}.txt`, data: `file ${i} `.repeat(100) }))
  for (let i = 0; i < N; i++) {
    many.batch.push(await time(() => sb.files.write(files(`b${i}`))))
    many.each.push(await time(async () => { for (const f of files(`e${i}`)) await sb.files.write(f.path, f.data) }))
  }
}
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

console.log()
console.log(`| typing through the SDK (${N} lines each, alternating) | p50 ms | ÷ stdin |`)
console.log('|---|---|---|')
const base = median(typing.stdin)
console.log(`| \`commands.sendStdin\` to cat on pipes, until the line is back | ${base.toFixed(2)} | 1.00× |`)
console.log(`| \`pty.sendInput\` to cat on a terminal, until its echo | ${median(typing.echo).toFixed(2)} | ${(median(typing.echo) / base).toFixed(2)}× |`)
console.log(`| \`pty.sendInput\` to cat on a terminal, until cat's answer | ${median(typing.pty).toFixed(2)} | ${(median(typing.pty) / base).toFixed(2)}× |`)

console.log()
console.log(`| 30 files of 1 KiB through the SDK (${N} times each, alternating) | p50 ms | ÷ one call a file |`)
console.log('|---|---|---|')
console.log(`| one \`files.write\` call a file (baseline) | ${median(many.each).toFixed(1)} | 1.00× |`)
console.log(`| one \`files.write([...])\` of the 30 | ${median(many.batch).toFixed(1)} | ${(median(many.batch) / median(many.each)).toFixed(2)}× |`)
