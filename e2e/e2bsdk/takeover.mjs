// takeover.mjs: a paused sandbox outlives its node, driven by the official
// SDK, unmodified, through a Frost cluster's gateway. Three steps, each a
// run of this script, with the test killing a node in between:
//
//   node takeover.mjs pause          create, write a file, start a server,
//                                    pause; prints {"id","sha256","pid"}
//   node takeover.mjs resume ID SHA PID  connect: the sandbox resumes (on
//                                    whichever node the gateway picks) with
//                                    the file and the server still running,
//                                    listed under its pid; then kills it
//   node takeover.mjs kill ID        kill, and a second kill finds nothing
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { Sandbox } from 'e2b'

const [step, id, sum, pid] = process.argv.slice(2)
const sha256 = (s) => createHash('sha256').update(s).digest('hex')

if (step === 'pause') {
  const sb = await Sandbox.create('base', { timeoutMs: 300_000 })
  const blob = randomBytes(384 * 1024).toString('hex')
  await sb.files.write('/root/srv/blob.txt', blob)
  const server = await sb.commands.run('cd /root/srv && exec python3 -m http.server 8000', { background: true })
  const probe = "python3 -c \"import urllib.request as u; print(len(u.urlopen('http://127.0.0.1:8000/blob.txt').read()))\""
  let served
  for (let i = 0; i < 100; i++) {
    served = await sb.commands.run(probe).catch((e) => e)
    if (served.exitCode === 0) break
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.equal(served.stdout, `${blob.length}\n`)
  assert.equal(await sb.pause(), true)
  assert.equal((await Sandbox.getInfo(sb.sandboxId)).state, 'paused')
  console.log(JSON.stringify({ id: sb.sandboxId, sha256: sha256(blob), pid: server.pid }))
} else if (step === 'resume') {
  const sb = await Sandbox.connect(id)
  assert.equal((await sb.getInfo()).state, 'running')
  assert.equal(sha256(await sb.files.read('/root/srv/blob.txt')), sum)
  const r = await sb.commands.run('sha256sum /root/srv/blob.txt')
  assert.equal(r.stdout.split(' ')[0], sum)
  // The server started before the pause still answers: its process and
  // socket came back with the sandbox's memory, not from a fresh boot.
  const got = await sb.commands.run(
    "python3 -c \"import urllib.request as u, hashlib; print(hashlib.sha256(u.urlopen('http://127.0.0.1:8000/blob.txt').read()).hexdigest())\"",
  )
  assert.equal(got.stdout.trim(), sum)
  // It is still a command of the sandbox's, on this node too: listed,
  // and killed through the SDK.
  const listed = await sb.commands.list()
  assert.ok(listed.some((p) => p.pid === Number(pid) && /http\.server/.test([p.cmd, ...p.args].join(' '))), JSON.stringify(listed))
  assert.equal(await sb.commands.kill(Number(pid)), true)
  const gone = await sb.commands.run('python3 -c "import urllib.request as u; u.urlopen(\'http://127.0.0.1:8000/\')"').catch((e) => e)
  assert.notEqual(gone.exitCode, 0, 'the server answers after its kill')
} else if (step === 'kill') {
  assert.equal(await Sandbox.kill(id), true)
  assert.equal(await Sandbox.kill(id), false)
} else {
  throw new Error(`unknown step ${step}`)
}
console.log(`e2b take-over ${step}: ok`)
