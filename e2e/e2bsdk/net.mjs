// net.mjs drives sandbox networks with the official SDK, unmodified:
// Sandbox.create with allowInternetAccess false and with network.denyOut,
// getInfo's allowInternetAccess and network, sandbox.updateNetwork. The
// Go test serves OUTSIDE_URL from a host beyond the machine, which sees
// sandboxes' requests come from OUTSIDE_HOST (the machine, masquerading
// them). Any failure exits 1.
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'

const url = process.env.OUTSIDE_URL
const addr = new URL(url).hostname
// fetch runs curl in the sandbox: what it printed, or its exit code.
async function fetch(sb) {
  const r = await sb.commands.run(`curl -sS -m 2 ${url}; echo " exit=$?"`)
  return r.stdout.trim()
}

const off = await Sandbox.create('base', { timeoutMs: 120_000, allowInternetAccess: false })
assert.equal((await off.getInfo()).allowInternetAccess, false)
assert.match(await fetch(off), /exit=(7|28)$/)
await off.updateNetwork({ allowInternetAccess: true })
assert.equal((await off.getInfo()).allowInternetAccess, true)
assert.equal(await fetch(off), `${process.env.OUTSIDE_HOST} exit=0`)

const denied = await Sandbox.create('base', { timeoutMs: 120_000, network: { denyOut: [addr] } })
const info = await denied.getInfo()
assert.deepEqual(info.network.denyOut, [`${addr}/32`])
assert.match(await fetch(denied), /exit=(7|28)$/)
await denied.updateNetwork({})
assert.equal(await fetch(denied), `${process.env.OUTSIDE_HOST} exit=0`)

for (const s of [off, denied]) await s.kill()
console.log('e2b network: ok')
