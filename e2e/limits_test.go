package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/testguest"
)

func TestCPULimitStopsHotLoop(t *testing.T) {
	s := startServer(t, "")
	s.mustFrost("deploy", "spin", testguest.Path(t, "spin"), "--timeout", "300ms")
	s.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	start := time.Now()
	resp, body := s.get("spin", "/?mode=forever")
	took := time.Since(start)
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "time limit") {
		t.Fatalf("spin forever: %d %q", resp.StatusCode, body)
	}
	if took > 20*time.Second {
		t.Errorf("the loop was stopped only after %s", took)
	}
	// The app still serves afterwards, and so does every other app.
	if resp, body := s.get("spin", "/?mode=work&n=1000"); resp.StatusCode != 200 {
		t.Errorf("spin after a kill: %d %s", resp.StatusCode, body)
	}
	if resp, _ := s.get("hello", "/"); resp.StatusCode != 200 {
		t.Errorf("hello: %d", resp.StatusCode)
	}
	metrics := func() string { _, b := s.apiReq("GET", "/metrics", "", nil); return b }()
	if !strings.Contains(metrics, `frost_limit_kills_total{app="spin",limit="cpu"} 1`) {
		t.Errorf("cpu limit kill not counted")
	}
}

// TestHostileAppDoesNotStarveOthers runs hot-loop guests continuously while
// measuring a well-behaved app's latency, and compares with its latency alone.
func TestHostileAppDoesNotStarveOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end case; runs without -short")
	}
	// One long-runner slot, as the default gives a 2-core machine, so that
	// the two spinners must take turns on any machine.
	s := startServer(t, "", "--long-runners", "1")
	s.mustFrost("deploy", "spin", testguest.Path(t, "spin"), "--timeout", "200ms", "--concurrency", "2")
	s.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	// The hostile loops take turns on one slot, leaving a core to hello.
	// Without the fair scheduler both loops hold both cores and hello's p99
	// is 25 ms and more, past the p99 bound.
	checkNeighbour(t, s, "spin", "/?mode=forever", http.StatusGatewayTimeout)
	_, metrics := s.apiReq("GET", "/metrics", "", nil)
	for _, want := range []string{"frost_cpu_long_runner_slots 1", "frost_cpu_long_runners 0", "frost_cpu_long_runners_waiting 0"} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	if parks := metricValue(metrics, "frost_cpu_parks_total"); parks < 10 {
		t.Errorf("frost_cpu_parks_total = %v: the spinners did not take turns", parks)
	}
}

// TestFloodingAppsDoNotStarveOthers: guests that flood the host (a body
// written forever, a memory bomb on every request) with two clients each
// leave hello's latency close to alone. Before the host recycled response
// buffers and memory, a body flood put hello's p99 at 40 ms and more.
func TestFloodingAppsDoNotStarveOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end case; runs without -short")
	}
	s := startServer(t, "")
	s.mustFrost("deploy", "spin", testguest.Path(t, "spin"), "--concurrency", "2")
	s.mustFrost("deploy", "bomb", testguest.Path(t, "membomb"), "--memory", "64MiB", "--concurrency", "2")
	s.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	checkNeighbour(t, s, "spin", "/?mode=body", http.StatusBadGateway)
	checkNeighbour(t, s, "bomb", "/?mode=trap", http.StatusInternalServerError)
}

// checkNeighbour measures hello alone and while two clients keep app busy
// with path (each answered want), and fails if hello's latency went far
// from alone. The bounds are loose (this machine runs other tests
// meanwhile); bench/neighbours measures the ratio.
func checkNeighbour(t *testing.T, s *server, app, path string, want int) {
	t.Helper()
	measure := func(n int) []time.Duration {
		var d []time.Duration
		for i := 0; i < n; i++ {
			start := time.Now()
			resp, _ := s.get("hello", "/")
			if resp.StatusCode != 200 {
				t.Fatalf("hello: %d", resp.StatusCode)
			}
			d = append(d, time.Since(start))
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d
	}
	alone := measure(1000)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var stopped atomic.Int64
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				resp, _ := s.get(app, path)
				if resp.StatusCode == want {
					stopped.Add(1)
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	busy := measure(1000)
	stop.Store(true)
	wg.Wait()
	if stopped.Load() == 0 {
		t.Fatalf("%s %s: the hostile guest was never stopped with %d", app, path, want)
	}
	med := func(d []time.Duration) time.Duration { return d[len(d)/2] }
	p99 := func(d []time.Duration) time.Duration { return d[len(d)*99/100] }
	t.Logf("%s %s: hello p50 alone %s, beside it %s; p99 %s vs %s", app, path, med(alone), med(busy), p99(alone), p99(busy))
	if med(busy) > 50*med(alone)+20*time.Millisecond {
		t.Errorf("%s %s: hello p50 went from %s to %s", app, path, med(alone), med(busy))
	}
	if p99(busy) > 10*p99(alone)+10*time.Millisecond {
		t.Errorf("%s %s: hello p99 went from %s to %s", app, path, p99(alone), p99(busy))
	}
}

// metricValue is the value of an unlabelled metric in a Prometheus text
// exposition (-1 if absent).
func metricValue(exposition, name string) float64 {
	for _, l := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

func TestMemoryLimit(t *testing.T) {
	s := startServer(t, "")
	s.mustFrost("deploy", "bomb", testguest.Path(t, "membomb"), "--memory", "8MiB")
	resp, body := s.get("bomb", "/?mode=trap")
	if resp.StatusCode < 500 || !strings.Contains(body, "memory") {
		t.Fatalf("membomb: %d %q", resp.StatusCode, body)
	}
	resp, body = s.get("bomb", "/")
	if resp.StatusCode == 200 && !strings.Contains(body, "MiB") {
		t.Errorf("membomb report: %q", body)
	}
	// A module whose initial memory exceeds the limit is refused at deploy.
	_, errs, code := s.frost("deploy", "bomb2", testguest.Path(t, "go-cgi"), "--memory", "64KiB")
	if code == 0 || !strings.Contains(errs, "memory") {
		t.Errorf("deploy over the memory limit: exit %d, %q", code, errs)
	}
}

func TestBodyAndConcurrencyLimits(t *testing.T) {
	s := startServer(t, "")
	s.mustFrost("deploy", "echo", testguest.Path(t, "probe"), "--max-body", "1KiB")
	resp, _, err := s.do("POST", "echo", "/", strings.NewReader(strings.Repeat("x", 2048)), nil)
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %v %v", resp, err)
	}
	resp, body, _ := s.do("POST", "echo", "/", strings.NewReader(strings.Repeat("x", 1000)), nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `"body_len":1000`) {
		t.Errorf("body within limit: %d %s", resp.StatusCode, body)
	}

	s.mustFrost("deploy", "slow", testguest.Path(t, "spin"), "--concurrency", "1", "--timeout", "2s")
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.get("slow", "/?mode=forever")
	}()
	time.Sleep(300 * time.Millisecond)
	resp, body = s.get("slow", "/?mode=work&n=10")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("over the concurrency limit: %d %q Retry-After=%q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	<-done
}

// TestFloodingGuests: a guest that sets headers forever, one that writes
// its body forever, and one that calls the host in an endless loop are
// each stopped with a clear error (the first two at Frost's size limits,
// at once; the third at its time limit), the server's RSS stays bounded,
// and the app and its neighbours serve afterwards.
func TestFloodingGuests(t *testing.T) {
	s := startServer(t, "")
	s.mustFrost("deploy", "spin", testguest.Path(t, "spin"), "--timeout", "2s")
	s.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	base := rssBytes(t, s.cmd.Process.Pid)
	for _, c := range []struct {
		mode   string
		status int
		msg    string
	}{
		{"headers", http.StatusBadGateway, "more than 1048576 bytes of headers"},
		{"body", http.StatusBadGateway, "exceeds the limit"},
		{"log", http.StatusGatewayTimeout, "time limit"},
	} {
		resp, body := s.get("spin", "/?mode="+c.mode)
		if resp.StatusCode != c.status || !strings.Contains(body, c.msg) {
			t.Errorf("mode=%s: %d %.200q; want %d with %q", c.mode, resp.StatusCode, body, c.status, c.msg)
		}
		if resp, body := s.get("spin", "/?mode=work&n=10"); resp.StatusCode != 200 {
			t.Errorf("spin after mode=%s: %d %s", c.mode, resp.StatusCode, body)
		}
		if resp, _ := s.get("hello", "/"); resp.StatusCode != 200 {
			t.Errorf("hello after mode=%s: %d", c.mode, resp.StatusCode)
		}
	}
	// The body limit is 32 MiB: one response's worth, buffered, then
	// dropped; headers stop at 1 MiB. Allow for both and the runtime.
	if grew := rssBytes(t, s.cmd.Process.Pid) - base; grew > 160<<20 {
		t.Errorf("the server's RSS grew by %d MiB over three flooding requests", grew>>20)
	}
}

// TestSlowClients: 200 connections that send their headers a byte at a
// time (slowloris) do not stop other clients from being served, are cut
// off once the header timeout (10s) passes, and headers over 64 KiB are
// refused with 431.
func TestSlowClients(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end case; runs without -short")
	}
	s := startServer(t, "")
	s.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	const slow = 200
	var conns []net.Conn
	for range slow {
		c, err := net.Dial("tcp", s.http)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: hello.localhost\r\nX-Slow: ")
		conns = append(conns, c)
	}
	start := time.Now()
	for i := range 50 {
		if resp, body := s.get("hello", "/"); resp.StatusCode != 200 || body != "hello from frost\n" {
			t.Fatalf("request %d while %d clients dawdle: %d %q", i, slow, resp.StatusCode, body)
		}
		conns[i%slow].Write([]byte("a")) // keep dawdling
	}
	t.Logf("50 requests served in %v beside %d slowloris connections", time.Since(start).Round(time.Millisecond), slow)

	// Past the header timeout every slow connection is closed.
	time.Sleep(11*time.Second - time.Since(start))
	closed := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadAll(c); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			closed++
		}
	}
	if closed != slow {
		t.Errorf("%d of %d slow connections were closed after the header timeout", closed, slow)
	}

	req, err := http.NewRequest("GET", "http://"+s.http+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "hello.localhost"
	req.Header.Set("X-Big", strings.Repeat("h", 70<<10))
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req) // a fresh connection
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("70 KiB of headers: %d, want 431", resp.StatusCode)
	}
}

// TestGuestCannotReachTheNetwork: a stock Go guest asks its runtime for a
// TCP connection to the server's own control API (listening on loopback)
// and to the app listener: both fail inside the guest (WASI preview 1 can
// only use sockets the host pre-opens, and Frost pre-opens none).
func TestGuestCannotReachTheNetwork(t *testing.T) {
	s := startServer(t, "")
	s.mustFrost("deploy", "dialer", testguest.Path(t, "go-cgi"))
	for _, addr := range []string{s.api, s.http, "1.1.1.1:53"} {
		resp, body := s.get("dialer", "/dial?addr="+addr)
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "error=") {
			t.Errorf("a guest dialing %s: %d %q; want an error", addr, resp.StatusCode, body)
		}
	}
}
