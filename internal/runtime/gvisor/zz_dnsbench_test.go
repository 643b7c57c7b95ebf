package gvisor

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/frostdev/frost/internal/registry"
)

func TestZZDNSBench(t *testing.T) {
	resolv := t.TempDir() + "/resolv.conf"
	os.WriteFile(resolv, []byte("nameserver 127.0.0.79\n"), 0o644)
	r, rootfs := newRuntime(t, func(c *Config) { c.Network = testPool; c.Spares = -1; c.ResolvConf = resolv })
	fakeDNS(t, "127.0.0.79:53", netip.MustParseAddr("192.0.2.1"))
	b, _ := bootEgress(t, r, rootfs, "t1dnsb", registry.Egress{})
	out, errOut, code := run(t, b, "", "python3", "-c", `
import socket, time
d = []
for i in range(400):
    t0 = time.perf_counter(); socket.gethostbyname("n%d.bench.test" % i); d.append(time.perf_counter() - t0)
d = sorted(d[50:])
print("p50_us=%.0f p99_us=%.0f" % (d[len(d)//2]*1e6, d[len(d)*99//100]*1e6))
`)
	if code != 0 {
		t.Fatal(errOut)
	}
	t.Log(strings.TrimSpace(out))
}
