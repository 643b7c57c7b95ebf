package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/testguest"
)

// leave sends a GET for app's path to addr and hangs up while it runs, as
// a client that gives up does.
func leave(t *testing.T, addr, app, path string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s.localhost\r\n\r\n", path, app)
	time.Sleep(300 * time.Millisecond) // long enough for the guest to be running
	c.Close()
}

// freedAfter is waitServes, logging how long after the hang-up the app
// served again.
func freedAfter(t *testing.T, s *server, app string, hungUp time.Time) {
	t.Helper()
	waitServes(t, s, app)
	t.Logf("%s served again %v after its client hung up", app, time.Since(hungUp).Round(time.Millisecond))
}

// waitServes polls app until it answers 200 (its concurrency slots freed).
func waitServes(t *testing.T, s *server, app string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, body := s.get(app, "/?mode=work&n=10")
		if resp.StatusCode == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still refuses after its clients left: %d %q", app, resp.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClientLeavingStopsGuest: a client that hangs up while its request
// runs stops the guest (it does not run on to its time limit, holding the
// app's only concurrent request for nobody), and the request counts as
// client_closed, apart from the app's own failures.
func TestClientLeavingStopsGuest(t *testing.T) {
	s := startServer(t, "")
	s.mustFrost("deploy", "spin", testguest.Path(t, "spin"), "--concurrency", "1", "--timeout", "60s")
	leave(t, s.http, "spin", "/?mode=forever")
	// Without the watch the spinning request holds the one slot for a
	// minute: every request until then is refused with 503.
	freedAfter(t, s, "spin", time.Now())
	_, metrics := s.apiReq("GET", "/metrics", "", nil)
	if want := `frost_errors_total{app="spin",reason="client_closed"} 1`; !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s", want)
	}
	if strings.Contains(metrics, `frost_limit_kills_total{app="spin",limit="cpu"}`) {
		t.Errorf("a client leaving counted as a time-limit kill")
	}
	// The app's log says so, as news rather than an app error.
	logs := grepLines(s.mustFrost("logs", "spin"), "the client went away")
	if !strings.Contains(logs, " info ") || strings.Contains(logs, " error ") {
		t.Errorf("frost logs spin: %q, want an info line", logs)
	}
}

// TestClusterClientLeavingStopsGuest: the same through a gateway, for a
// request alone (sent to the node over HTTP/1.1: the gateway closes that
// connection, and the node's own watch sees it) and for one of two at
// once (over the multiplexed hop: the gateway resets the stream).
func TestClusterClientLeavingStopsGuest(t *testing.T) {
	gw, nodes, _ := startCluster(t, 1)
	closed := func(app string) string {
		_, metrics := nodes[0].apiReq("GET", "/metrics", "", nil)
		return grepLines(metrics, `frost_errors_total{app="`+app+`",reason="client_closed"}`)
	}
	gw.mustFrost("deploy", "alone", testguest.Path(t, "spin"), "--concurrency", "1", "--timeout", "60s")
	waitServes(t, gw, "alone")
	leave(t, gw.http, "alone", "/?mode=forever")
	freedAfter(t, gw, "alone", time.Now())
	if got := closed("alone"); !strings.Contains(got, "} 1") {
		t.Errorf("a request alone: client_closed counted %q, want 1", got)
	}

	gw.mustFrost("deploy", "pair", testguest.Path(t, "spin"), "--concurrency", "2", "--timeout", "60s")
	waitServes(t, gw, "pair")
	done := make(chan struct{})
	go func() { defer close(done); leave(t, gw.http, "pair", "/?mode=forever") }()
	leave(t, gw.http, "pair", "/?mode=forever")
	<-done
	waitFor(t, "the node to stop both guests whose clients left", func() bool {
		return strings.Contains(closed("pair"), "} 2")
	})
	// Both slots are free: two requests at once are served.
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			resp, body, err := gw.do("GET", "pair", "/?mode=work&n=10", nil, nil)
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("%d %q", resp.StatusCode, body)
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("after the clients left: %v", err)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}
