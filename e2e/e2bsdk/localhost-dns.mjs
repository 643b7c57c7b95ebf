// localhost-dns.mjs is preloaded (node --import) by the getHost test: it
// resolves every name under .localhost to 127.0.0.1, as systemd-resolved
// does and glibc alone does not. It stands in for the wildcard DNS record
// a deployment has; the SDK itself is untouched.
import dns from 'node:dns'

const lookup = dns.lookup
dns.lookup = function (host, opts, cb) {
  if (typeof opts === 'function') {
    cb = opts
    opts = {}
  }
  if (/\.localhost\.?$/i.test(host)) {
    if (opts && opts.all) return process.nextTick(cb, null, [{ address: '127.0.0.1', family: 4 }])
    return process.nextTick(cb, null, '127.0.0.1', 4)
  }
  return lookup.call(this, host, opts, cb)
}
