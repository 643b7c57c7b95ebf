package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/testetcd"
	"github.com/frostdev/frost/internal/testguest"
	"github.com/frostdev/frost/internal/testtool"
)

// slowFlags cut slow clients after a second instead of a minute: a test
// that waits 20 s for the cut fails with the defaults.
var slowFlags = []string{"--body-timeout", "1s", "--stall-timeout", "1s"}

// stalledBodies sends app two POSTs whose bodies stop coming, one chunked
// (served by net/http behind the front) and one of known length (served
// by the front itself), each on a connection of its own, and wants 408
// for each, cut by slowFlags' second without a byte.
func stalledBodies(t *testing.T, addr, app string) {
	t.Helper()
	for _, tc := range []struct{ name, req string }{
		{"chunked", "POST / HTTP/1.1\r\nHost: " + app + ".localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
		{"known length", "POST / HTTP/1.1\r\nHost: " + app + ".localhost\r\nContent-Length: 100\r\n\r\nten bytes."},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		resp, body := testtool.Exchange(t, c, bufio.NewReader(c), "POST", tc.req)
		c.Close()
		// The gap rule of --body-timeout 1s, not the rate rule, which
		// would cut this body after 5 s with the default.
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(body, "nothing for 1s") {
			t.Fatalf("%s: %s %q, want 408 for nothing in 1s", tc.name, resp.Status, body)
		}
		t.Logf("%s body cut after %v: %s", tc.name, time.Since(began).Round(time.Millisecond), strings.TrimSpace(body))
	}
}

// stalledReader posts n bytes to the echo app (the CGI guest answers
// them back) from a connection with a 4 KiB receive buffer, reads none of
// the answer, and wants the connection cut: after a few seconds it reads
// what came, and it must end before n bytes.
func stalledReader(t *testing.T, addr, app string, n int) {
	t.Helper()
	// The buffer is set before the connection opens: set after, the
	// window already offered shrinks under the sender, which then probes
	// it with timers backing off, and a write crawls rather than stops.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		})
		return cmp.Or(err, serr)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: %s.localhost\r\nContent-Length: %d\r\n\r\n", app, n)
	if _, err := c.Write(bytes.Repeat([]byte("x"), n)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second) // the answer's write stalls, and is cut after 1 s
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the connection is still open 24 s after its client stopped reading (%d bytes read)", got)
	}
	if got >= int64(n) {
		t.Fatalf("read %d bytes, the whole answer: the write never stalled", got)
	}
	t.Logf("cut after %d of %d bytes (%v)", got, n, err)
}

// TestSlowClientsAreCut: `frost server --body-timeout --stall-timeout`
// answers a request body that stops coming with 408 and frees the app's
// slot, and closes a connection whose client stops reading, counting
// both on /metrics.
func TestSlowClientsAreCut(t *testing.T) {
	s := startServer(t, "", slowFlags...)
	s.mustFrost("deploy", "echo", testguest.Path(t, "cgi"), "--concurrency", "1")
	stalledBodies(t, s.http, "echo")
	// The app's one slot is free again.
	if resp, body := s.get("echo", "/"); resp.StatusCode != 200 {
		t.Fatalf("after the stalled bodies: %d %q", resp.StatusCode, body)
	}
	stalledReader(t, s.http, "echo", 12<<20)
	_, metrics := s.apiReq("GET", "/metrics", "", nil)
	for _, want := range []string{
		`frost_errors_total{app="echo",reason="body_timeout"} 2`,
		"frost_http_stalled_connections_total 1",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestClusterSlowClientsAreCut: the same flags on a gateway cut its
// clients (the node behind it keeps its minute): 408 counted as the
// gateway's body timeouts, and a stalled connection on its /metrics.
func TestClusterSlowClientsAreCut(t *testing.T) {
	endpoints := strings.Join(testetcd.Start(t), ",")
	startServer(t, "", "--role", "node", "--name", "n1", "--etcd", endpoints)
	gw := startServer(t, "", append([]string{"--role", "gateway", "--etcd", endpoints}, slowFlags...)...)
	waitMembers(t, gw, 1)
	gw.mustFrost("deploy", "echo", testguest.Path(t, "cgi"), "--concurrency", "1")
	waitServes(t, gw, "echo")
	stalledBodies(t, gw.http, "echo")
	stalledReader(t, gw.http, "echo", 12<<20)
	_, metrics := gw.apiReq("GET", "/metrics", "", nil)
	for _, want := range []string{
		"frost_gateway_body_timeouts_total 2",
		"frost_http_stalled_connections_total 1",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("the gateway's metrics lack %s", want)
		}
	}
}
