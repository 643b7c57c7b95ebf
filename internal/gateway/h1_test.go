package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// h1Server is a test node counting the connections it accepted.
func h1Server(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

type countingTransport struct {
	n atomic.Int64
	http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.RoundTripper.RoundTrip(r)
}

func newTestH1() (*h1, *countingTransport) {
	fb := &countingTransport{RoundTripper: &http.Transport{}}
	return newH1((&net.Dialer{}).DialContext, fb), fb
}

func h1Get(t *testing.T, tr http.RoundTripper, url string, readAll bool) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if !readAll {
		b := make([]byte, 10)
		n, _ := io.ReadFull(resp.Body, b)
		return string(b[:n])
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestH1ReusesConnections: sequential requests share one connection, each
// answered right, with bodies of known, chunked and no length.
func TestH1ReusesConnections(t *testing.T) {
	srv, conns := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte("chunk-"))
			w.(http.Flusher).Flush()
			w.Write([]byte("ed"))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			io.WriteString(w, "hello "+r.URL.Path)
		}
	})
	tr, fb := newTestH1()
	for i := range 30 {
		path := []string{"/a", "/chunked", "/empty"}[i%3]
		want := map[string]string{"/a": "hello /a", "/chunked": "chunk-ed", "/empty": ""}[path]
		if got := h1Get(t, tr, srv.URL+path, true); got != want {
			t.Fatalf("%s: %q, want %q", path, got, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("30 sequential requests used %d connections, want 1", n)
	}
	if fb.n.Load() != 0 {
		t.Errorf("%d requests went to the fallback", fb.n.Load())
	}
}

// TestH1RetriesOnClosedIdleConnection: the node closed the pooled
// connection; the next request goes again on a new one, unseen by the caller.
func TestH1RetriesOnClosedIdleConnection(t *testing.T) {
	srv, conns := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+string(b))
	})
	tr, _ := newTestH1()
	h1Get(t, tr, srv.URL, true)
	srv.CloseClientConnections()
	if got := h1Get(t, tr, srv.URL, true); got != "GET " {
		t.Fatalf("after the node closed the connection: %q", got)
	}
	srv.CloseClientConnections()
	body := "replayable body"
	req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(body)) // sets GetBody
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("POST with a replayable body after the close: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "POST "+body {
		t.Errorf("POST answered %q", b)
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

// TestH1EarlyCloseDropsConnection: a body closed before its end closes the
// connection (the rest of the body is never read into the next response).
func TestH1EarlyCloseDropsConnection(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	srv, conns := h1Server(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) })
	tr, _ := newTestH1()
	if got := h1Get(t, tr, srv.URL, false); got != "xxxxxxxxxx" {
		t.Fatalf("first bytes %q", got)
	}
	if got := h1Get(t, tr, srv.URL, true); got != big {
		t.Fatalf("second response: %d bytes", len(got))
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the half-read one dropped)", n)
	}
}

// TestH1Fallback: a streamed body (no GetBody), an upgrade and Expect go
// through the fallback transport.
func TestH1Fallback(t *testing.T) {
	srv, _ := h1Server(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	tr, fb := newTestH1()
	stream := func() *http.Request {
		req, _ := http.NewRequest("POST", srv.URL, io.NopCloser(strings.NewReader("stream")))
		return req
	}
	upgrade, _ := http.NewRequest("GET", srv.URL, nil)
	upgrade.Header.Set("Upgrade", "websocket")
	expect, _ := http.NewRequest("PUT", srv.URL, strings.NewReader("x"))
	expect.Header.Set("Expect", "100-continue")
	for i, req := range []*http.Request{stream(), upgrade, expect} {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if fb.n.Load() != int64(i+1) {
			t.Errorf("request %d did not go to the fallback", i)
		}
	}
}

// TestH1ContextCancel: a request whose context ends while the node is slow
// fails with the context's error, and the connection is not reused.
func TestH1ContextCancel(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{})
	srv, conns := h1Server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		io.WriteString(w, "ok")
	})
	defer close(release)
	tr, _ := newTestH1()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/slow", nil)
	errc := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		errc <- err
	}()
	<-arrived
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("a cancelled request succeeded")
	}
	if got := h1Get(t, tr, srv.URL+"/fast", true); got != "ok" {
		t.Fatalf("after the cancel: %q", got)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// TestH1SweepsIdleConnections: a connection idle past idleTime is closed
// and forgotten, without another request to that node.
func TestH1SweepsIdleConnections(t *testing.T) {
	var closed atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	tr, _ := newTestH1()
	tr.idleTime = 50 * time.Millisecond
	h1Get(t, tr, srv.URL, true)
	deadline := time.Now().Add(5 * time.Second)
	for closed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the idle connection was never closed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.idle) != 0 || tr.sweeper != nil {
		t.Errorf("after the sweep: %d addresses pooled, sweeper %v", len(tr.idle), tr.sweeper != nil)
	}
}
