package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/ring"
	"github.com/frostdev/frost/internal/testetcd"
	"github.com/frostdev/frost/internal/testguest"
)

// startCluster starts a real etcd, n node processes (with nodeArgs) and
// a gateway on loopback, and waits until the gateway routes to every node.
func startCluster(t *testing.T, n int, nodeArgs ...string) (*server, []*server, string) {
	t.Helper()
	endpoints := testetcd.Start(t)
	etcd := strings.Join(endpoints, ",")
	var nodes []*server
	for i := 1; i <= n; i++ {
		args := append([]string{"--role", "node", "--name", fmt.Sprintf("n%d", i), "--etcd", etcd}, nodeArgs...)
		nodes = append(nodes, startServer(t, "", args...))
	}
	gw := startServer(t, "", "--role", "gateway", "--etcd", etcd)
	waitMembers(t, gw, n)
	return gw, nodes, etcd
}

// nodeServer returns the process of node name (startCluster's nodes are
// n1, n2, …).
func nodeServer(t *testing.T, nodes []*server, name string) *server {
	t.Helper()
	for i, n := range nodes {
		if fmt.Sprintf("n%d", i+1) == name {
			return n
		}
	}
	t.Fatalf("node %q is not one of ours", name)
	return nil
}

// members asks the gateway which nodes it routes to.
func members(t testing.TB, gw *server) []string {
	t.Helper()
	resp, body := gw.apiReq("GET", "/v1/nodes", "", nil)
	var list []struct {
		Name string `json:"name"`
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &list) != nil {
		t.Fatalf("GET /v1/nodes: %d %s", resp.StatusCode, body)
	}
	var names []string
	for _, m := range list {
		names = append(names, m.Name)
	}
	return names
}

func waitMembers(t testing.TB, gw *server, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(members(t, gw)) != n {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway routes to %v, want %d nodes", members(t, gw), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCluster: three nodes and a gateway on a real etcd. One token for
// the cluster; a deploy through the gateway reaches every node (the
// module is fetched from the node that has it); the app's requests land
// on one node; a pinned hostname reaches each node; env changes and
// deletes made through the gateway reach every node.
func TestCluster(t *testing.T) {
	gw, nodes, _ := startCluster(t, 3)
	for _, n := range nodes {
		if n.token != gw.token {
			t.Fatalf("node token %q differs from the gateway's %q: a cluster has one", n.token, gw.token)
		}
	}
	out := gw.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	// The answer names the app's URL through the gateway, not the node's.
	_, port, _ := net.SplitHostPort(gw.http)
	if want := "curl http://hello.localhost:" + port + "/"; !strings.Contains(out, want) {
		t.Errorf("deploy through the gateway says\n%s\nwant %q", out, want)
	}
	seen := map[string]int{}
	for i := 0; i < 20; i++ {
		resp, body := gw.get("hello", "/")
		if resp.StatusCode != 200 || body != "hello from frost\n" {
			t.Fatalf("through the gateway: %d %q", resp.StatusCode, body)
		}
		seen[resp.Header.Get("Frost-Node")]++
	}
	if len(seen) != 1 {
		t.Errorf("an idle app's requests spread over %v: they should stay on its warm node", seen)
	}
	// Every node serves it (pinned), fetching the module if it lacks it.
	for i := range nodes {
		resp, body := gw.get(fmt.Sprintf("0-n%d--hello", i+1), "/")
		if resp.StatusCode != 200 || body != "hello from frost\n" || resp.Header.Get("Frost-Node") != fmt.Sprintf("n%d", i+1) {
			t.Errorf("pinned to n%d: %d %q from %q", i+1, resp.StatusCode, body, resp.Header.Get("Frost-Node"))
		}
	}
	gw.mustFrost("deploy", "cgi", testguest.Path(t, "cgi"), "--env", "GREETING=one")
	gw.mustFrost("env", "set", "cgi", "GREETING=two")
	for i := range nodes {
		host := fmt.Sprintf("0-n%d--cgi", i+1)
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, body := gw.get(host, "/env")
			if strings.Contains(body, "GREETING=two") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("n%d never saw the env change: %q", i+1, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The gateway's own metrics, on its API (admin token), not a node's.
	resp, metrics := gw.apiReq("GET", "/metrics", "", nil)
	for _, want := range []string{
		"frost_gateway_members 3",
		`frost_gateway_node_in_flight_requests{node="n1"} 0`,
		"frost_gateway_requests_total",
		"frost_http_front_requests_total",
		"frost_http_stalled_connections_total 0",
	} {
		if resp.StatusCode != 200 || !strings.Contains(metrics, want) {
			t.Errorf("gateway /metrics: %d, lacks %q", resp.StatusCode, want)
		}
	}
	if strings.Contains(metrics, "frost_requests_total") {
		t.Errorf("gateway /metrics answered with a node's metrics")
	}
	if resp, _ := gw.apiReq("GET", "/metrics", "wrong", nil); resp.StatusCode != 401 {
		t.Errorf("gateway /metrics with a wrong token: %d, want 401", resp.StatusCode)
	}
	gw.mustFrost("rm", "hello")
	for i := range nodes {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, _ := gw.get(fmt.Sprintf("0-n%d--hello", i+1), "/")
			if resp.StatusCode == 404 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("n%d still serves a deleted app: %d", i+1, resp.StatusCode)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestClusterNodeKilledUnderLoad: kill -9 the node serving an app while
// clients hammer it through the gateway with GETs. Requests route around
// the dead node at once (its refused connections), it leaves the ring
// when its lease expires, and the clients see no error beyond requests in
// flight at the kill. A node that comes back rejoins.
func TestClusterNodeKilledUnderLoad(t *testing.T) {
	gw, nodes, etcd := startCluster(t, 3)
	gw.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	resp, _ := gw.get("hello", "/")
	victim := resp.Header.Get("Frost-Node")
	vs := nodeServer(t, nodes, victim)

	const clients = 4
	load := startLoad(gw, "hello", "/", "hello from frost\n", clients)
	time.Sleep(time.Second)
	before := load.ok.Load()
	killed := time.Now()
	vs.cmd.Process.Signal(syscall.SIGKILL)
	// Gone from the ring within the membership TTL (3s) and a little.
	deadline := time.Now().Add(15 * time.Second)
	for {
		gone := true
		for _, m := range members(t, gw) {
			if m == victim {
				gone = false
			}
		}
		if gone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still in the ring 15s after kill -9", victim)
		}
		time.Sleep(20 * time.Millisecond)
	}
	left := time.Since(killed)
	time.Sleep(time.Second)
	errs := load.stop()
	t.Logf("kill -9 %s: out of the ring after %v; %d requests ok (%d before the kill), %d failed %v",
		victim, left.Round(time.Millisecond), load.ok.Load(), before, load.failed.Load(), errs)
	if load.failed.Load() > clients {
		t.Errorf("%d requests failed: more than the %d in flight at the kill: %v", load.failed.Load(), clients, errs)
	}
	if load.ok.Load() <= before {
		t.Error("no request succeeded after the kill")
	}
	// The node comes back with the same name and data: it rejoins.
	startServer(t, vs.data, "--role", "node", "--name", victim, "--etcd", etcd)
	waitMembers(t, gw, 3)
	resp, body := gw.get("0-"+victim+"--hello", "/")
	if resp.StatusCode != 200 || body != "hello from frost\n" {
		t.Errorf("%s after it came back: %d %q", victim, resp.StatusCode, body)
	}
}

// TestClusterRoleErrors: roles without their registry are refused with
// what to do.
func TestClusterRoleErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--role", "node"},
		{"--role", "gateway"},
		{"--role", "leader", "--etcd", "http://127.0.0.1:1"},
	} {
		cmd := exec.Command(frostBin, append([]string{"server", "--data", filepath.Join(t.TempDir(), "d"), "--http", "127.0.0.1:0", "--api", "127.0.0.1:0"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "--role") {
			t.Errorf("frost server %v: %v\n%s", args, err, out)
		}
	}
}

// TestClusterReplay: a node whose app is at its concurrency limit answers
// with Frost-Replay naming the next node on the app's ring, and the
// gateway re-sends the request there; a pinned request is not moved.
func TestClusterReplay(t *testing.T) {
	gw, nodes, _ := startCluster(t, 3)
	gw.mustFrost("deploy", "spin", testguest.Path(t, "spin"), "--concurrency", "1", "--timeout", "5s")
	resp, _ := gw.get("spin", "/?mode=work&n=1")
	owner := resp.Header.Get("Frost-Node")
	ownerSrv := nodeServer(t, nodes, owner)
	// Hold the owner's one slot, straight at the node (the gateway does
	// not see it, so its bounded loads still pick the owner), with a
	// request that spins until its CPU timeout.
	// (A probe may take the slot just as the spinning request arrives,
	// which is then refused: start it again until it holds the slot.)
	var spinning chan struct{}
	spin := func() {
		spinning = make(chan struct{})
		done := spinning
		go func() { ownerSrv.do("GET", "spin", "/?mode=forever", nil, nil); close(done) }()
		time.Sleep(50 * time.Millisecond)
	}
	spin()
	deadline := time.Now().Add(4 * time.Second)
	for {
		select {
		case <-spinning:
			spin()
		default:
		}
		resp, _, err := ownerSrv.do("GET", "spin", "/?mode=work&n=1", nil, nil)
		if err == nil && resp.StatusCode == 503 && resp.Header.Get("Frost-Replay") != "" && resp.Header.Get("Frost-Replay") != owner {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the full owner %s never answered with a replay: %v %v", owner, resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, body := gw.get("spin", "/?mode=work&n=1")
	if resp.StatusCode != 200 || resp.Header.Get("Frost-Node") == owner || resp.Header.Get("Frost-Replay") != "" {
		t.Errorf("through the gateway while the owner %s is full: %d %q from %s", owner, resp.StatusCode, body, resp.Header.Get("Frost-Node"))
	}
	resp, body = gw.get("0-"+owner+"--spin", "/?mode=work&n=1")
	if resp.StatusCode != 503 || !strings.Contains(body, "concurrent requests") || resp.Header.Get("Frost-Replay") != "" {
		t.Errorf("pinned to the full owner: %d %q (replay header %q)", resp.StatusCode, body, resp.Header.Get("Frost-Replay"))
	}
}

// TestClusterWarmPool: with --warm 2 the app's first two nodes in ring
// order keep it ready past its idle timeout while the third lets it
// freeze; when the owner is not ready (frozen here by hand), the next node
// serves the request while the owner wakes, and the owner serves again.
func TestClusterWarmPool(t *testing.T) {
	gw, nodes, _ := startCluster(t, 3)
	r, err := ring.New([]string{"n1", "n2", "n3"}, ring.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	order := slices.Collect(r.Walk("hello"))
	node := func(name string) *server { return nodeServer(t, nodes, name) }
	state := func(name string) string {
		resp, body := node(name).apiReq("GET", "/v1/apps/hello", "", nil)
		var d struct {
			State string `json:"state"`
		}
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &d) != nil {
			t.Fatalf("app on %s: %d %s", name, resp.StatusCode, body)
		}
		return d.State
	}
	gw.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"), "--warm", "2", "--idle", "300ms")
	// Every node has the app; the third one is given a request so that it
	// has something to freeze.
	for _, name := range order {
		waitFor(t, "hello on "+name, func() bool {
			resp, _ := gw.get("0-"+name+"--hello", "/")
			return resp.StatusCode == 200
		})
	}
	waitFor(t, "the pool warm and the rest frozen", func() bool {
		return state(order[0]) == "live" && state(order[1]) == "live" && state(order[2]) == "frozen"
	})
	time.Sleep(time.Second) // three idle periods: the pool stays live
	if state(order[0]) != "live" || state(order[1]) != "live" {
		t.Fatalf("the warm pool froze: %s %s", state(order[0]), state(order[1]))
	}
	// The owner's pool empties: the next node in ring order answers. (The
	// owner refills its pool within a second by itself, so a request may
	// find it ready again: a few tries.)
	served := ""
	for try := 0; try < 5 && served != order[1]; try++ {
		if resp, body := node(order[0]).apiReq("POST", "/v1/apps/hello/freeze", "", nil); resp.StatusCode != 200 {
			t.Fatalf("freeze on %s: %d %s", order[0], resp.StatusCode, body)
		}
		resp, body := gw.get("hello", "/")
		if resp.StatusCode != 200 || body != "hello from frost\n" {
			t.Fatalf("with the owner %s not ready: %d %q", order[0], resp.StatusCode, body)
		}
		served = resp.Header.Get("Frost-Node")
	}
	if served != order[1] {
		t.Fatalf("with the owner %s not ready, %s served, want the next node %s", order[0], served, order[1])
	}
	waitFor(t, "the owner ready again", func() bool { return state(order[0]) == "live" })
	if resp, _ := gw.get("hello", "/"); resp.Header.Get("Frost-Node") != order[0] {
		t.Errorf("after it woke, the owner %s does not serve: %s", order[0], resp.Header.Get("Frost-Node"))
	}
}

// waitFor polls cond for up to 15 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 15s for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// load is clients requesting one app through a gateway in a loop, each
// answer checked, until stop.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// startLoad starts clients requesting app's path through gw, each answer
// expected to be 200 with body want.
func startLoad(gw *server, app, path, want string, clients int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	for range clients {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				resp, body, err := gw.do("GET", app, path, nil, nil)
				if err != nil || resp.StatusCode != 200 || body != want {
					l.failed.Add(1)
					l.mu.Lock()
					if err != nil {
						l.errs = append(l.errs, err.Error())
					} else {
						l.errs = append(l.errs, fmt.Sprintf("%d %q", resp.StatusCode, body))
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		})
	}
	return l
}

// stop ends the load and returns the failures seen.
func (l *load) stop() []string {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs
}
