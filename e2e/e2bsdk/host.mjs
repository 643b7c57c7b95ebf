// host.mjs: E2B's domain route with the official SDK, unmodified. Only
// E2B_DOMAIN names Frost (no E2B_SANDBOX_URL), so every data-plane call
// goes to https://49983-ID.DOMAIN on Frost's TLS listener, trusted
// through NODE_EXTRA_CA_CERTS; getHost(port) URLs reach a server running
// inside the sandbox, public by default, or with the traffic token when
// the sandbox was created with allowPublicTraffic: false.
import assert from 'node:assert/strict'
import { Sandbox } from 'e2b'

assert.ok(process.env.E2B_DOMAIN && !process.env.E2B_SANDBOX_URL)

async function get(url, headers = {}) {
  for (let i = 0; ; i++) {
    try {
      const r = await fetch(url, { headers })
      const body = await r.text()
      if (r.status !== 502 || i > 100) return { status: r.status, body }
    } catch (e) {
      if (i > 100) throw e
    }
    await new Promise((res) => setTimeout(res, 100))
  }
}

const sb = await Sandbox.create('base', { timeoutMs: 120_000 })
await sb.files.write('/srv/hello.txt', 'hello over TLS\n')
assert.equal(await sb.files.read('/srv/hello.txt'), 'hello over TLS\n')
await sb.commands.run('cd /srv && exec python3 -m http.server 8000', { background: true })
const host = sb.getHost(8000)
assert.match(host, new RegExp(`^8000-${sb.sandboxId}\\.`))
const pub = await get(`https://${host}/hello.txt`)
assert.equal(pub.status, 200, pub.body)
assert.equal(pub.body, 'hello over TLS\n')

const priv = await Sandbox.create('base', { timeoutMs: 120_000, network: { allowPublicTraffic: false } })
assert.ok(priv.trafficAccessToken)
await priv.files.write('/srv/secret.txt', 'for token holders\n')
await priv.commands.run('cd /srv && exec python3 -m http.server 8000', { background: true })
const url = `https://${priv.getHost(8000)}/secret.txt`
const denied = await get(url)
assert.equal(denied.status, 401, denied.body)
const allowed = await get(url, { 'e2b-traffic-access-token': priv.trafficAccessToken })
assert.equal(allowed.status, 200, allowed.body)
assert.equal(allowed.body, 'for token holders\n')

await sb.kill()
await priv.kill()
console.log('e2b getHost over TLS: ok')
