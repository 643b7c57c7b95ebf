package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testbox"
)

// serveWhoAmI serves, on the outside host, the address each request came
// from, and returns its URL.
func serveWhoAmI(t *testing.T, out *testbox.Outside) string {
	ln := out.Listen(t, "tcp", 0)
	testbox.WhoAmI(t, ln)
	return "http://" + ln.Addr().String() + "/"
}

// Sandboxes on a real server's default network: they reach a host
// beyond the machine (masqueraded as the machine), as their limits let
// them; their ports are dialled on their own addresses, before and after
// a pause; a stopped server leaves no namespace behind.
func TestSandboxNetwork(t *testing.T) {
	data := t.TempDir()
	s, c := startSandboxServer(t, data)
	ctx := context.Background()
	out := testbox.NewOutside(t)
	url := serveWhoAmI(t, out)
	fetch := func(id string) (string, int) {
		t.Helper()
		o, _, code := sbExec(t, c, id, "", "curl", "-sS", "-m", "2", url)
		return o, code
	}

	id := strings.TrimSpace(s.mustFrost("sandbox", "create", "--timeout", "1h"))
	var err error
	if got, code := fetch(id); code != 0 || got != out.Host.String() {
		t.Fatalf("a sandbox fetching a host beyond the machine: exit %d, seen from %q, want %s", code, got, out.Host)
	}
	// Its metrics count what crossed its link.
	var netIn, netOut int64
	var ms []api.SandboxMetric
	for range 30 { // a metric needs 100 ms after the sample before
		time.Sleep(100 * time.Millisecond)
		if ms, err = c.SandboxMetrics(ctx, id, time.Time{}, time.Time{}); err != nil {
			t.Fatal(err)
		}
		netIn, netOut = 0, 0
		for _, m := range ms {
			netIn, netOut = netIn+m.NetIn, netOut+m.NetOut
		}
		if netIn > 0 && netOut > 0 {
			break
		}
	}
	if netIn == 0 || netOut == 0 {
		t.Fatalf("after a fetch, the sandbox's metrics count %d bytes in, %d out: %+v", netIn, netOut, ms)
	}
	if table := s.mustFrost("sandbox", "metrics", id); !strings.Contains(table, "NET IN") {
		t.Fatalf("sandbox metrics:\n%s", table)
	}
	offline := strings.TrimSpace(s.mustFrost("sandbox", "create", "--offline"))
	if got, code := fetch(offline); code == 0 {
		t.Fatalf("an --offline sandbox reached the outside host: %q", got)
	}
	allowed := strings.TrimSpace(s.mustFrost("sandbox", "create", "--offline", "--allow-out", out.Addr.String()))
	if got, code := fetch(allowed); code != 0 || got != out.Host.String() {
		t.Fatalf("--offline --allow-out the outside host: exit %d, %q", code, got)
	}
	denied := strings.TrimSpace(s.mustFrost("sandbox", "create", "--deny-out", "198.18.0.0/16"))
	if got, code := fetch(denied); code == 0 {
		t.Fatalf("--deny-out the outside host's range: reached it: %q", got)
	}
	if _, errOut, code := s.frost("sandbox", "create", "--deny-out", "pypi.org"); code != 2 || !strings.Contains(errOut, "pypi.org") {
		t.Fatalf("--deny-out a host name: exit %d, %q", code, errOut)
	}
	info, err := c.Sandbox(ctx, allowed)
	if err != nil || info.Network == nil || !info.Network.Offline || len(info.Network.AllowOut) != 1 {
		t.Fatalf("the API's picture of an offline sandbox: %+v %v", info.Network, err)
	}
	// Changed while running: at once.
	if got := s.mustFrost("sandbox", "network", allowed, "--offline"); !strings.Contains(got, "offline") {
		t.Fatalf("sandbox network --offline: %q", got)
	}
	if got, code := fetch(allowed); code == 0 {
		t.Fatalf("after sandbox network --offline, reached the outside host: %q", got)
	}
	if got := s.mustFrost("sandbox", "network", allowed); !strings.Contains(got, "the internet") {
		t.Fatalf("sandbox network (no flags): %q", got)
	}
	if got, code := fetch(allowed); code != 0 || got != out.Host.String() {
		t.Fatalf("after sandbox network with no limits: exit %d, %q", code, got)
	}
	if show := s.mustFrost("sandbox", "show", offline); !strings.Contains(show, "offline") {
		t.Fatalf("sandbox show of an offline sandbox:\n%s", show)
	}

	// Its ports: a server on every address sees the proxy come from the
	// host's end of the sandbox's link, not from the agent's relay.
	sb, err := c.Sandbox(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, e, code := sbExec(t, c, id, "", "sh", "-c", testbox.WhoAmIInBox("0.0.0.0", 8000)); code != 0 {
		t.Fatalf("server: %d %s", code, e)
	}
	// Listening first: a port that refuses the direct dial is tried
	// through the agent's relay (for servers on loopback only).
	if _, e, code := sbExec(t, c, id, "", "sh", "-c", "for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:8000/ && exit 0; sleep 0.1; done; exit 1"); code != 0 {
		t.Fatalf("the server in the sandbox never listened: %s", e)
	}
	direct := func(when string) {
		t.Helper()
		status, body := waitPort(s, id, 8000, sb.Token, "/")
		if status != 200 || body == "127.0.0.1" || !strings.HasPrefix(body, "10.213.") {
			t.Fatalf("%s: port 8000 answered %d %q: want the sandbox's gateway in 10.213.0.0/16", when, status, body)
		}
	}
	direct("running")
	// The proxy keeps its connection to the server alive: requests from
	// new clients arrive on one connection (one peer port).
	peers := func() map[string]bool {
		t.Helper()
		seen := map[string]bool{}
		for range 5 {
			req, _ := http.NewRequest("GET", "http://"+s.http+"/", nil)
			req.Host = fmt.Sprintf("8000-%s.localhost", id)
			req.Header.Set("X-Frost-Sandbox-Token", sb.Token)
			resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("port 8000: %d", resp.StatusCode)
			}
			seen[resp.Header.Get("X-Peer-Port")] = true
		}
		return seen
	}
	before := peers()
	if len(before) != 1 {
		t.Fatalf("5 requests reached the sandbox's server on %d connections, want 1 kept alive: %v", len(before), before)
	}
	if _, err := c.PauseSandbox(ctx, id); err != nil {
		t.Fatal(err)
	}
	// The first request resumes it, on a new connection: the one kept
	// alive went with the pause (a request sent on it would wait for an
	// answer that never comes: peers' client gives up after 20 s).
	if after := peers(); len(after) != 1 {
		t.Fatalf("after a pause, requests came on connections %v: want one kept alive", after)
	}
	direct("after a pause")
	if got, code := fetch(id); code != 0 || got != out.Host.String() {
		t.Fatalf("after a resume, fetching the outside host: exit %d, %q", code, got)
	}

	// Stopped, the server pauses every sandbox: no namespace stays.
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(data, "sandboxes", "runsc", "netns"))
	for _, e := range entries {
		if e.Name() != "table" {
			t.Errorf("left after the server stopped: %s", e.Name())
		}
	}
}
