package hop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serve runs a hop server for h on a loopback listener; the listener's
// address and the server are returned. Cleanup closes the listener and
// every connection.
func serve(t *testing.T, h http.Handler) (string, *Server, func()) {
	return serveWith(t, &Server{Handler: h, Logger: slog.New(slog.DiscardHandler)})
}

// serveWith is serve with a server of the test's own.
func serveWith(t *testing.T, s *Server) (string, *Server, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); s.ServeConn(c, bufio.NewReader(c)) }()
		}
	}()
	kill := func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
	t.Cleanup(kill)
	return ln.Addr().String(), s, kill
}

func newTransport() *Transport {
	return &Transport{Dial: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}
}

func get(t *testing.T, tr *Transport, method, addr, target string, body []byte, h http.Header) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, vv := range h {
		req.Header[k] = vv
	}
	req.Host = "app.example"
	return tr.RoundTrip(req)
}

// echo answers with what it got.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-Uri", r.RequestURI)
	w.Header()["X-Got"] = r.Header["X-Send"]
	w.Write(b)
})

func TestManyRequestsShareConnections(t *testing.T) {
	addr, _, _ := serve(t, echo)
	tr := newTransport()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Go(func() {
			for i := range 30 {
				body := bytes.Repeat([]byte{byte('a' + g%26)}, g*100+i)
				target := fmt.Sprintf("/p/%d/%d?q=1", g, i)
				resp, err := get(t, tr, http.MethodPost, addr, target, body, http.Header{"X-Send": {"one", "two"}})
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					errs <- err
				case resp.StatusCode != 200 || !bytes.Equal(got, body) || resp.ContentLength != int64(len(body)):
					errs <- fmt.Errorf("%s: %d, %d bytes (length %d), want %d", target, resp.StatusCode, len(got), resp.ContentLength, len(body))
				case resp.Header.Get("X-Uri") != target || resp.Header.Get("X-Host") != "app.example" || resp.Header.Get("X-Method") != "POST" ||
					strings.Join(resp.Header["X-Got"], ",") != "one,two":
					errs <- fmt.Errorf("%s: header %v", target, resp.Header)
				}
				if len(errs) > 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	tr.mu.Lock()
	n := len(tr.conns[addr])
	tr.mu.Unlock()
	if n < 1 || n > 4 {
		t.Errorf("%d connections for 64 concurrent clients, want 1 to 4", n)
	}
}

// A client that does not read its answer holds only its own request:
// the node sends it no more than Window ahead, and the others' answers
// pass it on the same connection.
func TestSlowReaderHoldsOnlyItself(t *testing.T) {
	var sent atomic.Int64
	big := bytes.Repeat([]byte("0123456789abcdef"), 4*Window/16)
	addr, _, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			w.Write([]byte("small"))
			return
		}
		for i := 0; i < len(big); i += 4096 {
			if _, err := w.Write(big[i : i+4096]); err != nil {
				return
			}
			sent.Store(int64(i + 4096))
		}
	}))
	tr := &Transport{Dial: (&net.Dialer{}).DialContext, MaxConns: 1}
	resp, err := get(t, tr, http.MethodGet, addr, "/big", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		r, err := get(t, tr, http.MethodGet, addr, "/small", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(r.Body); string(b) != "small" {
			t.Fatalf("small: %q", b)
		}
		r.Body.Close()
	}
	if n := sent.Load(); n > Window+maxChunk {
		t.Errorf("the node sent %d bytes of an answer nobody read (window %d)", n, Window)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big: %d bytes, %v; want %d", len(got), err, len(big))
	}
	if resp.ContentLength != -1 {
		t.Errorf("a streamed answer has length %d", resp.ContentLength)
	}
}

func TestTrailersHeadAndStatus(t *testing.T) {
	addr, _, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/trailers":
			w.Header().Set("Trailer", "X-Sum")
			w.Write([]byte("body"))
			w.(http.Flusher).Flush()
			w.Header().Set("X-Sum", "42")
			w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
		case "/head":
			w.Header().Set("Content-Length", "1234")
		case "/teapot":
			w.WriteHeader(http.StatusTeapot)
			w.Write([]byte("short and stout"))
		}
	}))
	tr := newTransport()
	resp, err := get(t, tr, http.MethodGet, addr, "/trailers", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "body" || resp.Trailer.Get("X-Sum") != "42" || resp.Trailer.Get("X-Late") != "yes" || resp.Header.Get("X-Late") != "" {
		t.Errorf("trailers: %q, trailer %v, header %v", b, resp.Trailer, resp.Header)
	}
	resp, err = get(t, tr, http.MethodHead, addr, "/head", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Body != http.NoBody || resp.ContentLength != 1234 || resp.Header.Get("Content-Length") != "1234" {
		t.Errorf("HEAD: length %d, header %v", resp.ContentLength, resp.Header)
	}
	resp, err = get(t, tr, http.MethodGet, addr, "/teapot", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTeapot || resp.Status != "418 I'm a teapot" || string(b) != "short and stout" ||
		resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("teapot: %s %q %v", resp.Status, b, resp.Header)
	}
}

// A body closed before its end, or a request whose context ends, resets
// the request: the handler's context ends.
func TestAbandonedRequestEndsTheHandler(t *testing.T) {
	ended := make(chan string, 2)
	addr, _, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("start"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		ended <- r.URL.Path
	}))
	tr := newTransport()
	resp, err := get(t, tr, http.MethodGet, addr, "/closed", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "start" {
		t.Fatalf("%q %v", buf, err)
	}
	resp.Body.Close()
	if got := wait(t, ended); got != "/closed" {
		t.Errorf("ended %s", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/cancelled", nil)
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, context.Canceled) {
		t.Errorf("body after cancel: %v", err)
	}
	if got := wait(t, ended); got != "/cancelled" {
		t.Errorf("ended %s", got)
	}
}

func wait[T any](t *testing.T, c chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing after 10 s")
		panic("unreachable")
	}
}

func TestHandlerPanicFailsOnlyItsRequest(t *testing.T) {
	addr, _, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		w.Write([]byte("fine"))
	}))
	tr := newTransport()
	if _, err := get(t, tr, http.MethodGet, addr, "/panic", nil, nil); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("panic: %v", err)
	}
	resp, err := get(t, tr, http.MethodGet, addr, "/after", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "fine" {
		t.Errorf("after the panic: %q", b)
	}
}

// Shutdown answers what is in flight, however long it takes (past
// goawayLinger); what comes after is refused as not sent, so that a
// gateway sends it elsewhere whatever its method.
func TestShutdownRefusesAsNotSent(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	addr, s, _ := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		w.Write([]byte("done " + r.URL.Path))
	}))
	tr := newTransport()
	slow := make(chan string, 1)
	go func() {
		resp, err := get(t, tr, http.MethodPost, addr, "/slow", []byte("x"), nil)
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		slow <- string(b)
	}()
	wait(t, started)
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// The goaway reaches the client with the next frame it reads.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := get(t, tr, http.MethodPost, addr, "/late", []byte("y"), nil)
		if errors.Is(err, ErrNotSent) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a request after shutdown: %v, want not sent", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The request outlives the linger after the goaway: its connection
	// must stay (it was closed then, the answer lost).
	time.Sleep(goawayLinger + 500*time.Millisecond)
	close(release)
	if got := wait(t, slow); got != "done /slow" {
		t.Errorf("in flight at shutdown: %q", got)
	}
	if err := wait(t, shut); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// A node that dies fails what is in flight with an error, at once.
func TestDeadNodeFailsInFlight(t *testing.T) {
	started := make(chan struct{}, 8)
	addr, _, kill := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
	}))
	tr := newTransport()
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := get(t, tr, http.MethodGet, addr, "/", nil, nil)
			errs <- err
		}()
	}
	for range 8 {
		wait(t, started)
	}
	kill()
	for range 8 {
		if err := wait(t, errs); err == nil {
			t.Error("a request in flight on a dead node got an answer")
		}
	}
	if _, err := get(t, tr, http.MethodGet, addr, "/", nil, nil); err == nil {
		t.Error("a request to a dead node got an answer")
	}
}

// Garbage on a connection ends that connection, not the server.
func TestGarbageEndsOnlyItsConnection(t *testing.T) {
	addr, _, _ := serve(t, echo)
	for _, junk := range []string{
		"GET / HTTP/1.1\r\n\r\n",
		Preface + "\xff\xff\xff\xff\x01\x00\x00\x00\x00\x01",
		Preface + "\x00\x00\x00\x01\x63\x00\x00\x00\x00\x01x",
		Preface + "\x00\x00\x00\x03\x01\x00\x00\x00\x00\x01\x05ab",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(junk))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("%q: the server did not close: %v", junk, err)
		}
		c.Close()
	}
	resp, err := get(t, newTransport(), http.MethodGet, addr, "/still", nil, nil)
	if err != nil || resp.Header.Get("X-Uri") != "/still" {
		t.Fatalf("after garbage: %v", err)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	good := appendFrame(nil, frameRequest, 0, 1, func(b []byte) []byte {
		b = appendString(b, "GET")
		b = appendString(b, "/x?y")
		b = appendString(b, "h")
		return appendHeader(b, http.Header{"A": {"1", "2"}})
	})
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Fuzz(func(t *testing.T, b []byte) {
		var head [headSize]byte
		fr, err := readFrame(bytes.NewReader(b), &head)
		if err != nil {
			return
		}
		d := decoder{b: fr.payload}
		d.string()
		d.string()
		d.string()
		h := d.header()
		if d.err == nil && len(h) > len(fr.payload) {
			t.Fatalf("%d header fields from %d bytes", len(h), len(fr.payload))
		}
	})
}

// A connection with nothing in flight for IdleTimeout is sent a goaway
// (the client's next request goes on a new one); one whose request
// outlasts IdleTimeout many times over is not.
func TestIdleConnectionsGoAway(t *testing.T) {
	release := make(chan struct{})
	const idle = 100 * time.Millisecond
	addr, _, _ := serveWith(t, &Server{IdleTimeout: idle, Logger: slog.New(slog.DiscardHandler), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		w.Write([]byte("done " + r.URL.Path))
	})})
	var dials atomic.Int32
	tr := &Transport{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	body := func(resp *http.Response, err error) string {
		if err != nil {
			return err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	slow := make(chan string, 1)
	go func() { slow <- body(get(t, tr, http.MethodPost, addr, "/slow", []byte("x"), nil)) }()
	time.Sleep(5 * idle)
	close(release)
	if got := wait(t, slow); got != "done /slow" {
		t.Fatalf("a request longer than the idle timeout: %q", got)
	}
	if got := body(get(t, tr, http.MethodPost, addr, "/next", []byte("y"), nil)); got != "done /next" || dials.Load() != 1 {
		t.Fatalf("right after it: %q over %d connections, want the first one still", got, dials.Load())
	}
	// Idle for long enough: the node said goaway. A POST is not
	// idempotent: it is sent again only because the node never saw it.
	time.Sleep(3 * idle)
	if got := body(get(t, tr, http.MethodPost, addr, "/later", []byte("z"), nil)); got != "done /later" || dials.Load() != 2 {
		t.Fatalf("after the idle timeout: %q over %d connections, want a second one", got, dials.Load())
	}
}

// TestDialOutlivesItsFirstRequest: the connection to an address is made
// for every request to it; the one whose arrival started the dial may
// leave, and the dial goes on for those waiting on it.
func TestDialOutlivesItsFirstRequest(t *testing.T) {
	addr, _, _ := serve(t, echo)
	proceed := make(chan struct{})
	var dials atomic.Int32
	tr := &Transport{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		select {
		case <-proceed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/first", http.NoBody)
		_, err := tr.RoundTrip(req)
		first <- err
	}()
	for dials.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan string, 1)
	go func() {
		resp, err := get(t, tr, http.MethodPost, addr, "/second", []byte("still here"), nil)
		if err != nil {
			second <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		second <- string(b)
	}()
	time.Sleep(20 * time.Millisecond) // the second waits on the dial
	cancel()
	if err := wait(t, first); !errors.Is(err, context.Canceled) {
		t.Fatalf("the request that left: %v, want its context's error", err)
	}
	close(proceed)
	if got := wait(t, second); got != "still here" || dials.Load() != 1 {
		t.Fatalf("the request waiting on the dial: %q over %d dials, want its echo over the one", got, dials.Load())
	}
}
