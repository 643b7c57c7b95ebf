package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
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
	return startClusterOn(t, testetcd.Start(t), n, nodeArgs...)
}

// startClusterOn is startCluster on an etcd the test started.
func startClusterOn(t *testing.T, endpoints []string, n int, nodeArgs ...string) (*server, []*server, string) {
	t.Helper()
	etcd := strings.Join(endpoints, ",")
	nodes := startNodes(t, etcd, n, nodeArgs...)
	return startGateway(t, etcd, n), nodes, etcd
}

// startNodes starts node processes n1 … nN (with args) on etcd.
func startNodes(t *testing.T, etcd string, n int, args ...string) []*server {
	t.Helper()
	var nodes []*server
	for i := 1; i <= n; i++ {
		nodeArgs := append([]string{"--role", "node", "--name", fmt.Sprintf("n%d", i), "--etcd", etcd}, args...)
		nodes = append(nodes, startServer(t, "", nodeArgs...))
	}
	return nodes
}

// startGateway starts a gateway (with args) on etcd and waits until it
// routes to n nodes.
func startGateway(t *testing.T, etcd string, n int, args ...string) *server {
	t.Helper()
	gw := startServer(t, "", append([]string{"--role", "gateway", "--etcd", etcd}, args...)...)
	waitMembers(t, gw, n)
	return gw
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

// TestClusterTwoGateways: two gateways on the same etcd and nodes, as
// behind DNS round robin or a load balancer. They keep no state of their
// own: an app deployed through one is served through the other, and both
// send each app's requests to the same node (one ring, from the same
// membership), so it stays warm on one node whichever gateway a client
// reaches.
func TestClusterTwoGateways(t *testing.T) {
	gw1, _, etcd := startCluster(t, 3)
	gw2 := startGateway(t, etcd, 3)
	apps := []string{"alpha", "bravo", "charlie", "delta", "echo"}
	for i, app := range apps {
		gw := []*server{gw1, gw2}[i%2]
		out := gw.mustFrost("deploy", app, testguest.Path(t, "hello-c"))
		// Each names its own listener in the app's URL.
		_, port, _ := net.SplitHostPort(gw.http)
		if want := "http://" + app + ".localhost:" + port + "/"; !strings.Contains(out, want) {
			t.Errorf("deploy of %s through a gateway says\n%s\nwant %q", app, out, want)
		}
	}
	nodesOf := map[string]bool{}
	for _, app := range apps {
		seen := map[string]int{}
		for i := range 10 {
			gw := []*server{gw1, gw2}[i%2]
			resp, body := gw.get(app, "/")
			if resp.StatusCode != 200 || body != "hello from frost\n" {
				t.Fatalf("%s through gateway %d: %d %q", app, i%2+1, resp.StatusCode, body)
			}
			seen[resp.Header.Get("Frost-Node")]++
		}
		if len(seen) != 1 {
			t.Errorf("%s's requests through two gateways landed on %v: both should pick its one node", app, seen)
		}
		for n := range seen {
			nodesOf[n] = true
		}
	}
	if len(nodesOf) < 2 {
		t.Errorf("%d apps all on %v: the ring should spread apps over nodes", len(apps), nodesOf)
	}
}

// TestClusterRoleErrors: roles without their registry are refused with
// what to do, and so is a lease that is not positive.
func TestClusterRoleErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--role", "node"}, "--role"},
		{[]string{"--role", "gateway"}, "--role"},
		{[]string{"--role", "leader", "--etcd", "http://127.0.0.1:1"}, "--role"},
		{[]string{"--role", "node", "--etcd", "http://127.0.0.1:1", "--lease", "0s"}, "--lease 0s: must be positive"},
	} {
		cmd := exec.Command(frostBin, append([]string{"server", "--data", filepath.Join(t.TempDir(), "d"), "--http", "127.0.0.1:0", "--api", "127.0.0.1:0"}, c.args...)...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("frost server %v: %v\n%s\nwant an error saying %q", c.args, err, out, c.want)
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

// waitServedByEach waits until each of the n nodes (n1, n2, …) serves app
// when pinned to it through gw: 200, with body want unless want is "".
func waitServedByEach(t *testing.T, gw *server, n int, app, want string) {
	t.Helper()
	for i := range n {
		host := fmt.Sprintf("0-n%d--%s", i+1, app)
		waitFor(t, host, func() bool {
			resp, body, err := gw.do("GET", host, "/", nil, nil)
			return err == nil && resp.StatusCode == 200 && (want == "" || body == want)
		})
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
	return startLoadFunc(clients, func(int, int) (string, error) {
		resp, body, err := gw.do("GET", app, path, nil, nil)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != 200 || body != want {
			return fmt.Sprintf("%d %q", resp.StatusCode, body), nil
		}
		return "", nil
	})
}

// startLoadFunc starts clients calling one(client, n) in a loop, n
// counting each client's calls; one returns what was wrong with the
// answer ("" if nothing) or the error of the exchange.
func startLoadFunc(clients int, one func(client, n int) (string, error)) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	for c := range clients {
		l.wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				wrong, err := one(c, n)
				if err != nil {
					wrong = err.Error()
				}
				if wrong == "" {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				l.mu.Lock()
				l.errs = append(l.errs, wrong)
				l.mu.Unlock()
			}
		})
	}
	return l
}

// startPosts starts clients POSTing to app (the CGI guest, which echoes
// the body) through gw, each body its own, each answer checked.
func startPosts(gw *server, app string, clients int) *load {
	return startLoadFunc(clients, func(c, n int) (string, error) {
		payload := fmt.Sprintf("post %d of client %d", n, c)
		resp, body, err := gw.do("POST", app, "/", strings.NewReader(payload), nil)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != 200 || !strings.Contains(body, "method=POST\n") || !strings.HasSuffix(body, "\n"+payload) {
			return fmt.Sprintf("%d %q", resp.StatusCode, body), nil
		}
		return "", nil
	})
}

// exchange is one request's outcome, for requests sent in the background.
type exchange struct {
	status int // 0 when err
	body   string
	err    error
	took   time.Duration
}

// sendAsync sends method app path through gw in the background.
func sendAsync(gw *server, method, app, path string) <-chan exchange {
	ch := make(chan exchange, 1)
	go func() {
		began := time.Now()
		resp, body, err := gw.do(method, app, path, nil, nil)
		x := exchange{body: body, err: err, took: time.Since(began)}
		if err == nil {
			x.status = resp.StatusCode
		}
		ch <- x
	}()
	return ch
}

// stop ends the load and returns the failures seen.
func (l *load) stop() []string {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs
}

// TestClusterRollingRestart: each node in turn stopped with SIGTERM and
// started again, as an upgrade does, while clients send GETs and POSTs
// through the gateway. A node that is told to stop leaves the ring first
// and drains what it has, so no request fails: not a GET, which the
// gateway could retry, and not a POST, which it never sends twice once a
// node may have seen it.
func TestClusterRollingRestart(t *testing.T) {
	gw, nodes, etcd := startCluster(t, 3)
	gw.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	gw.mustFrost("deploy", "echo", testguest.Path(t, "cgi"))
	gw.mustFrost("deploy", "slow", testguest.Path(t, "spin"), "--timeout", "30s")
	gets := startLoad(gw, "hello", "/", "hello from frost\n", 2)
	posts := startPosts(gw, "echo", 2)
	for i, n := range nodes {
		name := fmt.Sprintf("n%d", i+1)
		time.Sleep(500 * time.Millisecond)
		before := gets.ok.Load() + posts.ok.Load()
		// A long POST in flight on the node when it is told to stop: it
		// drains it, and the gateway waits for the answer.
		long := sendAsync(gw, "POST", "0-"+name+"--slow", "/?mode=work&n=1000000000")
		time.Sleep(300 * time.Millisecond)
		stopped := time.Now()
		if err := n.stop(syscall.SIGTERM); err != nil {
			t.Fatalf("SIGTERM %s: %v", name, err)
		}
		t.Logf("%s stopped in %v (%d requests ok so far)", name, time.Since(stopped).Round(time.Millisecond), before)
		r := <-long
		if r.err != nil || r.status != 200 || strings.TrimSpace(r.body) == "" {
			t.Errorf("a long POST on %s while it drained: %d %v %q", name, r.status, r.err, r.body)
		} else {
			t.Logf("a long POST on %s while it drained: answered after %v", name, r.took.Round(time.Millisecond))
		}
		if slices.Contains(members(t, gw), name) {
			t.Errorf("%s still in the gateway's ring after it stopped: it should leave before it exits", name)
		}
		nodes[i] = startServer(t, n.data, "--role", "node", "--name", name, "--etcd", etcd)
		waitMembers(t, gw, 3)
	}
	time.Sleep(500 * time.Millisecond)
	getErrs, postErrs := gets.stop(), posts.stop()
	t.Logf("%d GETs and %d POSTs ok across three restarts", gets.ok.Load(), posts.ok.Load())
	if len(getErrs) > 0 || len(postErrs) > 0 {
		t.Errorf("%d GETs failed %v; %d POSTs failed %v", len(getErrs), getErrs, len(postErrs), postErrs)
	}
	if gets.ok.Load() == 0 || posts.ok.Load() == 0 {
		t.Error("no load got through")
	}
	// Each app is served by a restarted node, which kept it.
	for _, app := range []string{"hello", "echo"} {
		if resp, _, err := gw.do("GET", app, "/", nil, nil); err != nil || resp.StatusCode != 200 {
			t.Errorf("%s after the restarts: %v %v", app, resp, err)
		}
	}
}

// TestClusterEtcdOutage: etcd killed under load through the gateway, and
// brought back after the membership leases would have run out. Apps keep
// being served from what the gateway and the nodes hold (the ring, the
// deployed apps): no request fails. A deploy while etcd is away is
// refused saying the registry cannot be reached, and changes nothing. Once
// etcd is back every node is a member again, and deploys land and are
// served.
func TestClusterEtcdOutage(t *testing.T) {
	etcd := testetcd.StartServer(t)
	gw, nodes, _ := startClusterOn(t, etcd.Endpoints(), 3)
	gw.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	gw.mustFrost("deploy", "echo", testguest.Path(t, "cgi"))
	// Every node has both apps before etcd goes.
	for _, app := range []string{"hello", "echo"} {
		waitServedByEach(t, gw, len(nodes), app, "")
	}
	gets := startLoad(gw, "hello", "/", "hello from frost\n", 2)
	posts := startPosts(gw, "echo", 2)
	time.Sleep(500 * time.Millisecond)

	etcd.Kill()
	killed := time.Now()
	out, errs, code := gw.frost("deploy", "late", testguest.Path(t, "hello-c"))
	if code == 0 || !strings.Contains(errs, "registry unavailable") {
		t.Errorf("a deploy with etcd away: exit %d, %q %q; want it refused for the registry", code, out, errs)
	}
	t.Logf("deploy with etcd away: exit %d: %s", code, strings.TrimSpace(errs))
	// Pinned requests reach every node; the leases (3 s) run out twice over.
	for time.Since(killed) < 7*time.Second {
		for i := range nodes {
			host := fmt.Sprintf("0-n%d--hello", i+1)
			if resp, body, err := gw.do("GET", host, "/", nil, nil); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s with etcd away: %v %v %q", host, err, resp, body)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got := members(t, gw); len(got) != 3 {
		t.Errorf("with etcd away the gateway routes to %v: it should keep the ring it had", got)
	}
	during := gets.ok.Load() + posts.ok.Load()

	if err := etcd.Restart(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	waitFor(t, "the registry after etcd came back", func() bool {
		_, _, code := gw.frost("apps")
		return code == 0
	})
	if apps := gw.mustFrost("apps"); strings.Contains(apps, "late") || !strings.Contains(apps, "echo") {
		t.Errorf("apps after etcd came back:\n%s\nwant hello and echo, not the refused deploy", apps)
	}
	// Every node rejoins (its lease ran out while etcd was away); a
	// deploy lands on every node and is served.
	waitFor(t, "a deploy after etcd came back", func() bool {
		_, _, code := gw.frost("deploy", "late", testguest.Path(t, "hello-c"))
		return code == 0
	})
	t.Logf("deploys land %v after etcd came back", time.Since(back).Round(time.Millisecond))
	waitServedByEach(t, gw, len(nodes), "late", "hello from frost\n")
	waitMembers(t, gw, 3)
	time.Sleep(time.Second)
	getErrs, postErrs := gets.stop(), posts.stop()
	t.Logf("%d GETs and %d POSTs ok (%d with etcd away)", gets.ok.Load(), posts.ok.Load(), during)
	if len(getErrs) > 0 || len(postErrs) > 0 {
		t.Errorf("%d GETs failed %v; %d POSTs failed %v", len(getErrs), head(getErrs), len(postErrs), head(postErrs))
	}
}

// head returns the first few of errs.
func head(errs []string) []string { return errs[:min(len(errs), 5)] }

// TestClusterNodeFrozen: the app's node stops answering without closing
// anything (SIGSTOP: as a machine that lost power or its network, or a
// process stuck), under GET load through the gateway, with a long POST
// in flight on it. Its kernel keeps the connections open, so nothing
// fails on its own: until its lease lapses the requests sent to it wait.
// Then the gateway takes it for lost: the GETs in flight go to another
// node and succeed, the POST is answered 502 saying the node was lost
// with it in flight (it may have been served: it is not sent twice), and
// none waits on for the minutes TCP would take. When the node wakes it
// joins again and is routed to.
func TestClusterNodeFrozen(t *testing.T) {
	gw, nodes, _ := startCluster(t, 3)
	gw.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	gw.mustFrost("deploy", "slow", testguest.Path(t, "spin"), "--timeout", "10s")
	resp, _ := gw.get("hello", "/")
	victim := resp.Header.Get("Frost-Node")
	vs := nodeServer(t, nodes, victim)

	var mu sync.Mutex
	var longest time.Duration
	gets := startLoadFunc(4, func(int, int) (string, error) {
		began := time.Now()
		resp, body, err := gw.do("GET", "hello", "/", nil, nil)
		mu.Lock()
		longest = max(longest, time.Since(began))
		mu.Unlock()
		if err != nil {
			return "", err
		}
		if resp.StatusCode != 200 || body != "hello from frost\n" {
			return fmt.Sprintf("%d %q", resp.StatusCode, body), nil
		}
		return "", nil
	})
	post := sendAsync(gw, "POST", "0-"+victim+"--slow", "/?mode=forever")
	time.Sleep(time.Second)
	vs.cmd.Process.Signal(syscall.SIGSTOP)
	frozen := time.Now()
	t.Cleanup(func() { vs.cmd.Process.Signal(syscall.SIGCONT) })

	// Out of the ring once its lease lapses; the requests it held end.
	waitFor(t, victim+" out of the ring", func() bool { return !slices.Contains(members(t, gw), victim) })
	left := time.Since(frozen)
	var r exchange
	select {
	case r = <-post:
	case <-time.After(20 * time.Second):
		t.Fatalf("the POST in flight on %s still waits 20s after it froze (out of the ring after %v)", victim, left)
	}
	// Its lease lapses first as a rule (3 s); a health check finds it
	// silent after 4 s at the latest.
	if r.err != nil || r.status != http.StatusBadGateway ||
		!strings.Contains(r.body, "left the cluster without draining") && !strings.Contains(r.body, "stopped answering") {
		t.Errorf("the POST in flight on the frozen node: %d %v %q; want 502 saying the node was lost", r.status, r.err, r.body)
	}
	time.Sleep(time.Second)
	okBefore := gets.ok.Load()
	time.Sleep(time.Second)
	if gets.ok.Load() == okBefore {
		t.Errorf("no GET served in the second after %s was taken for lost", victim)
	}
	_, metrics := gw.apiReq("GET", "/metrics", "", nil)
	if !strings.Contains(metrics, "frost_gateway_nodes_lost_total 1") && !strings.Contains(metrics, "frost_gateway_nodes_silent_total 1") {
		t.Errorf("gateway metrics count the frozen node neither lost nor silent")
	}

	// It wakes: its membership was lost, it joins again, and is routed to.
	vs.cmd.Process.Signal(syscall.SIGCONT)
	waitMembers(t, gw, 3)
	waitFor(t, victim+" served again", func() bool {
		resp, body, err := gw.do("GET", "0-"+victim+"--hello", "/", nil, nil)
		return err == nil && resp.StatusCode == 200 && body == "hello from frost\n"
	})
	errs := gets.stop()
	t.Logf("%s frozen: out of the ring after %v, the POST answered after %v: %q; %d GETs ok, the longest %v",
		victim, left.Round(time.Millisecond), r.took.Round(time.Millisecond), strings.TrimSpace(r.body), gets.ok.Load(), longest.Round(time.Millisecond))
	if len(errs) > 0 {
		t.Errorf("%d GETs failed: %v", len(errs), head(errs))
	}
}

// TestClusterNodeSilent: as TestClusterNodeFrozen, but the nodes' leases
// (--lease 30s) outlast the test, so the frozen node stays a member and
// only the gateway's health check can find it: a node with requests in
// flight and no answer for 2 s is checked, fails, and has its
// connections cut. The GETs go on elsewhere, the POST in flight is
// answered 502 saying the node stopped answering (not that it left), and
// the node, still a member all along, is routed to again once it answers
// its checks.
func TestClusterNodeSilent(t *testing.T) {
	gw, nodes, _ := startCluster(t, 3, "--lease", "30s")
	gw.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	gw.mustFrost("deploy", "slow", testguest.Path(t, "spin"), "--timeout", "10s")
	resp, _ := gw.get("hello", "/")
	victim := resp.Header.Get("Frost-Node")
	vs := nodeServer(t, nodes, victim)

	gets := startLoad(gw, "hello", "/", "hello from frost\n", 4)
	post := sendAsync(gw, "POST", "0-"+victim+"--slow", "/?mode=forever")
	time.Sleep(time.Second)
	vs.cmd.Process.Signal(syscall.SIGSTOP)
	frozen := time.Now()
	t.Cleanup(func() { vs.cmd.Process.Signal(syscall.SIGCONT) })

	var r exchange
	select {
	case r = <-post:
	case <-time.After(15 * time.Second):
		t.Fatalf("the POST in flight on %s still waits 15s after it froze", victim)
	}
	silent := time.Since(frozen)
	if r.err != nil || r.status != http.StatusBadGateway || !strings.Contains(r.body, "stopped answering") {
		t.Errorf("the POST in flight on the silent node: %d %v %q; want 502 saying the node stopped answering", r.status, r.err, r.body)
	}
	if !slices.Contains(members(t, gw), victim) {
		t.Fatalf("%s left the ring %v after it froze, with a 30 s lease", victim, silent)
	}
	okBefore := gets.ok.Load()
	time.Sleep(time.Second)
	if gets.ok.Load() == okBefore {
		t.Errorf("no GET served in the second after %s was found silent", victim)
	}
	_, metrics := gw.apiReq("GET", "/metrics", "", nil)
	if metricValue(metrics, "frost_gateway_nodes_silent_total") != 1 || metricValue(metrics, "frost_gateway_nodes_lost_total") != 0 {
		t.Errorf("gateway metrics: silent %v, lost %v; want 1 and 0",
			metricValue(metrics, "frost_gateway_nodes_silent_total"), metricValue(metrics, "frost_gateway_nodes_lost_total"))
	}

	// It wakes, still a member: once a check passes it is routed to.
	vs.cmd.Process.Signal(syscall.SIGCONT)
	waitFor(t, victim+" served again", func() bool {
		resp, body, err := gw.do("GET", "0-"+victim+"--hello", "/", nil, nil)
		return err == nil && resp.StatusCode == 200 && body == "hello from frost\n"
	})
	errs := gets.stop()
	t.Logf("%s frozen: the POST answered after %v: %q; %d GETs ok", victim, silent.Round(time.Millisecond), strings.TrimSpace(r.body), gets.ok.Load())
	if len(errs) > 0 {
		t.Errorf("%d GETs failed: %v", len(errs), head(errs))
	}
}

// TestClusterEtcdLeaderDies: the cluster on a three-member etcd, the
// etcd leader killed under GET and POST load through the gateway. The
// other two elect a leader, every process's client moves to them, and
// nothing is lost: no request fails, no node drops out of the ring, and
// a deploy made after the kill lands. The killed member comes back.
func TestClusterEtcdLeaderDies(t *testing.T) {
	etcd := testetcd.StartCluster(t, 3)
	gw, nodes, _ := startClusterOn(t, testetcd.Endpoints(etcd), 3)
	gw.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	gw.mustFrost("deploy", "echo", testguest.Path(t, "cgi"))
	gets := startLoad(gw, "hello", "/", "hello from frost\n", 2)
	posts := startPosts(gw, "echo", 2)
	var lost atomic.Bool
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watchCtx.Err() == nil {
			if len(members(t, gw)) != len(nodes) {
				lost.Store(true)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond)

	leader := -1
	waitFor(t, "an etcd leader", func() bool {
		for i, s := range etcd {
			if lead, err := s.IsLeader(); err == nil && lead {
				leader = i
				return true
			}
		}
		return false
	})
	etcd[leader].Kill()
	killed := time.Now()
	var refused []string
	waitFor(t, "a deploy after the etcd leader died", func() bool {
		_, errs, code := gw.frost("deploy", "late", testguest.Path(t, "hello-c"))
		if code != 0 {
			refused = append(refused, strings.TrimSpace(errs))
		}
		return code == 0
	})
	t.Logf("etcd leader m%d killed: a deploy landed %v after, %d refused before it %q",
		leader+1, time.Since(killed).Round(time.Millisecond), len(refused), refused)
	waitServedByEach(t, gw, len(nodes), "late", "hello from frost\n")
	time.Sleep(3 * time.Second) // a lease's TTL: one that lapsed would show
	if err := etcd[leader].Restart(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	stopWatch()
	<-watched
	getErrs, postErrs := gets.stop(), posts.stop()
	t.Logf("%d GETs and %d POSTs ok", gets.ok.Load(), posts.ok.Load())
	if len(getErrs) > 0 || len(postErrs) > 0 {
		t.Errorf("%d GETs failed %v; %d POSTs failed %v", len(getErrs), head(getErrs), len(postErrs), head(postErrs))
	}
	if lost.Load() {
		t.Error("a node dropped out of the gateway's ring while etcd elected a leader")
	}
}
