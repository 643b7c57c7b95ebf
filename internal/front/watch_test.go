package front

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/frostdev/frost/internal/certs"
	"github.com/frostdev/frost/internal/testtool"
)

// waitCause is a handler that waits until its request's context ends (or
// a time limit far past the test's) and reports the cause.
func waitCause(causes chan<- error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
			causes <- context.Cause(r.Context())
		case <-time.After(time.Minute):
			causes <- errors.New("the request's context never ended")
		}
	}
}

// TestClientLeavingEndsContext: a client that hangs up while its request
// runs ends the request's context with ErrClientLeft, with or without a
// body (read to its end).
func TestClientLeavingEndsContext(t *testing.T) {
	causes := make(chan error, 1)
	_, addr := serveFront(t, waitCause(causes), nil)
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, req)
		time.Sleep(100 * time.Millisecond)
		c.Close()
		if err := <-causes; !errors.Is(err, ErrClientLeft) {
			t.Errorf("%q: the context ended with %v, want ErrClientLeft", strings.SplitN(req, "\r\n", 2)[0], err)
		}
	}
}

// TestWatchKeepsPipelinedBytes: a client that sends its next request while
// a long one runs keeps its context alive, and the byte the watcher read
// is the next request's first.
func TestWatchKeepsPipelinedBytes(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-r.Context().Done():
				http.Error(w, "canceled: "+context.Cause(r.Context()).Error(), 500)
				return
			case <-time.After(4 * watchAfter):
			}
		}
		fmt.Fprintf(w, "%s done", r.URL.Path)
	})
	_, addr := serveFront(t, h, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	// Past the point the watcher reads, the next request.
	time.Sleep(3 * watchAfter)
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []string{"/slow done", "/next done"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("want %q: %v", want, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != want {
			t.Errorf("got %d %q, want %q", resp.StatusCode, b, want)
		}
	}
}

// TestUnreadBodyIsNotWatched: a request whose handler has not read its
// body to the end is not watched (the watcher would take the body's
// bytes): a client that sent half its body and shut its side of the
// connection is still answered, its request's context alive.
func TestUnreadBodyIsNotWatched(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(3 * watchAfter)
		ctxErr := r.Context().Err()
		b, err := io.ReadAll(r.Body)
		fmt.Fprintf(w, "read %q (%v), context %v", b, err, ctxErr)
	})
	_, addr := serveFront(t, h, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
	c.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if want := `read "ab" (unexpected EOF), context <nil>`; string(b) != want {
		t.Errorf("got %q, want %q", b, want)
	}
}

// TestWatchOverTLS: over TLS, a watched request whose watcher is stopped
// at its end leaves the connection sound for the next request, and a
// client that leaves ends its request's context.
func TestWatchOverTLS(t *testing.T) {
	causes := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			causes <- context.Cause(r.Context())
			return
		case <-time.After(3 * watchAfter):
		}
		fmt.Fprintf(w, "%s done", r.URL.Path)
	})
	_, addr := serveTLSFront(t, h)
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := dial()
	br := bufio.NewReader(c)
	for _, path := range []string{"/slow", "/next"} {
		_, body := testtool.Exchange(t, c, br, "GET", "GET "+path+" HTTP/1.1\r\nHost: app.test\r\n\r\n")
		if body != path+" done" {
			t.Errorf("%s: %q", path, body)
		}
	}
	c.Close()
	c = dial()
	io.WriteString(c, "GET /leave HTTP/1.1\r\nHost: app.test\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	c.Close()
	if err := <-causes; !errors.Is(err, ErrClientLeft) {
		t.Errorf("a TLS client leaving: the context ended with %v", err)
	}
}

// TestStallRule: the sweeper closes a connection whose write began
// StallTimeout ago and has not moved since, not one whose writes move.
func TestStallRule(t *testing.T) {
	s := New(Config{Fallback: &http.Server{}, Handler: http.NotFoundHandler(), StallTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	defer s.Shutdown(context.Background())
	stuck, moving := &conn{}, &conn{}
	var peers []net.Conn
	for _, fc := range []*conn{stuck, moving} {
		var peer net.Conn
		fc.c, peer = net.Pipe()
		peers = append(peers, peer)
		s.conns[fc] = struct{}{}
		fc.writing.Store(1) // a write began at tick 0
	}
	// A second is four ticks.
	for e := int64(1); e <= 5; e++ {
		if e == 3 {
			moving.writing.Store(e + 1) // its next step began
		}
		s.tick(e)
		if cutNow := stuck.writing.Load() == cut; cutNow != (e == 5) {
			t.Fatalf("tick %d: stuck writer cut = %v", e, cutNow)
		}
	}
	if moving.writing.Load() == cut {
		t.Error("a writer that moved was cut")
	}
	if s.Stalled() != 1 {
		t.Errorf("Stalled = %d, want 1", s.Stalled())
	}
	if _, err := stuck.c.Write([]byte("x")); err == nil {
		t.Error("the stalled connection is still open")
	}
	go io.Copy(io.Discard, peers[1])
	if _, err := moving.c.Write([]byte("x")); err != nil {
		t.Errorf("the moving connection was closed: %v", err)
	}
}

// TestStalledClientIsCut: a client that asks for a large answer and reads
// none of it is cut after StallTimeout, its handler's write failing, and
// counted; one whose connection went to net/http (HTTP/1.0) does not
// escape the cut, and is forgotten once net/http closes it.
func TestStalledClientIsCut(t *testing.T) {
	for _, c := range []struct {
		proto  string
		handed uint64
	}{{"HTTP/1.1", 0}, {"HTTP/1.0", 1}} {
		t.Run(c.proto, func(t *testing.T) {
			wrote := make(chan error, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, err := w.Write(make([]byte, 64<<20))
				wrote <- err
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			f := New(Config{Fallback: &http.Server{Handler: h}, Handler: h, StallTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
			go f.Serve(ln)
			defer f.Shutdown(context.Background())
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.(*net.TCPConn).SetReadBuffer(4 << 10)
			io.WriteString(conn, "GET / "+c.proto+"\r\nHost: x\r\n\r\n")
			select {
			case err := <-wrote:
				if err == nil {
					t.Error("64 MiB written to a client that reads nothing")
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the handler is still writing to a client that reads nothing")
			}
			if f.Handed() != c.handed || f.Stalled() != 1 {
				t.Errorf("Handed = %d, Stalled = %d; want %d and 1", f.Handed(), f.Stalled(), c.handed)
			}
			// net/http closes a connection it had: the cut forgets it.
			waitForgotten(t, f)
		})
	}
}

// TestStalledHTTP2ClientIsCut: an HTTP/2 client that opens a large flow
// control window, asks for a large answer and reads none of it is cut
// after StallTimeout (its connection is net/http's, written through the
// front below TLS) and counted as stalled; the cut forgets it once closed.
func TestStalledHTTP2ClientIsCut(t *testing.T) {
	wrote := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			wrote <- fmt.Errorf("served over %s", r.Proto)
			return
		}
		_, err := w.Write(make([]byte, 64<<20))
		wrote <- err
	})
	cert, _, err := certs.Development(t.TempDir(), certs.Names("app.test"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := New(Config{Fallback: &http.Server{Handler: h}, Handler: h, StallTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	go f.ServeTLS(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
	defer f.Shutdown(context.Background())

	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw.(*net.TCPConn).SetReadBuffer(4 << 10)
	conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	defer conn.Close()
	if err := conn.Handshake(); err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	fr.WriteWindowUpdate(0, 1<<31-1-65535)
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":path", "/"}, {":authority", "app.test"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-wrote:
		if err == nil {
			t.Error("64 MiB written to an HTTP/2 client that reads nothing")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the handler is still writing to an HTTP/2 client that reads nothing")
	}
	if f.Handed() != 1 || f.Stalled() != 1 {
		t.Errorf("Handed = %d, Stalled = %d; want 1 and 1", f.Handed(), f.Stalled())
	}
	waitForgotten(t, f)
}

// waitForgotten waits until the stall cut tracks no handed connection
// (net/http closed them).
func waitForgotten(t *testing.T, f *Server) {
	t.Helper()
	waitUntil := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		n := len(f.handedConns)
		f.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(waitUntil) {
			t.Fatalf("%d handed connections still tracked after net/http closed them", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPaceBodyLeavesTheFrontsOwn: a request the front answers itself
// keeps its body as it is (its connection's deadline bounds it: no timer
// a read); one net/http serves gets a paced body.
func TestPaceBodyLeavesTheFrontsOwn(t *testing.T) {
	paced := make(chan bool, 2)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paced <- PaceBody(w, r, time.Second) != r.Body
		io.Copy(io.Discard, r.Body)
	})
	_, addr := serveFront(t, h, nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for _, head := range []string{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"} {
		testtool.Exchange(t, conn, br, "POST", head)
	}
	if own, handed := <-paced, <-paced; own || !handed {
		t.Errorf("paced: the front's own request %v, net/http's %v; want false, true", own, handed)
	}
}

// TestPaceBodyRate: a chunked body that comes slower than MinBodyRate
// past the grace is cut, one at a faster pace is not.
func TestPaceBodyRate(t *testing.T) {
	defer func(r int64, g time.Duration) { MinBodyRate, BodyGrace = r, g }(MinBodyRate, BodyGrace)
	MinBodyRate, BodyGrace = 100, 300*time.Millisecond
	read := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, PaceBody(w, r, time.Minute))
		read <- err
	})
	_, addr := serveFront(t, h, nil)
	for _, c := range []struct {
		chunk string
		cut   bool
	}{{"x", true}, {strings.Repeat("x", 100), false}} { // 10 and 1000 bytes a second
		t.Run(fmt.Sprintf("%d bytes a tenth", len(c.chunk)), func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
			var got error
			sent := 0
		send:
			for range 15 {
				fmt.Fprintf(conn, "%x\r\n%s\r\n", len(c.chunk), c.chunk)
				sent++
				select {
				case got = <-read:
					break send
				case <-time.After(100 * time.Millisecond):
				}
			}
			if got == nil && !c.cut {
				io.WriteString(conn, "0\r\n\r\n")
				got = <-read
			}
			if cut := errors.Is(got, ErrBodyTimeout); cut != c.cut {
				t.Fatalf("after %d chunks: %v, want cut %v", sent, got, c.cut)
			}
			if c.cut && !strings.Contains(got.Error(), "slower than 100 bytes a second") {
				t.Errorf("cut with %v", got)
			}
		})
	}
}

// TestFrontBodyPaced: the body of a request the front answers itself is
// paced, not bounded by the idle timeout: an upload that keeps coming
// for longer than it completes, one that stops is cut after BodyTimeout.
func TestFrontBodyPaced(t *testing.T) {
	read := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err == nil && n != 64<<10 {
			err = fmt.Errorf("read %d bytes", n)
		}
		read <- err
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second, IdleTimeout: time.Second}
	f := New(Config{Fallback: srv, Handler: h, BodyTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	go f.Serve(ln)
	defer f.Shutdown(context.Background())
	for _, stop := range []bool{false, true} {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n")
		// 4 KiB every 100 ms: 1.6 s, past the 1 s idle timeout.
		for i := 0; i < 16 && !(stop && i == 4); i++ {
			conn.Write(make([]byte, 4<<10))
			time.Sleep(100 * time.Millisecond)
		}
		select {
		case err := <-read:
			if stop && !errors.Is(err, ErrBodyTimeout) || !stop && err != nil {
				t.Errorf("stopped %v: the body read ended with %v", stop, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stopped %v: the handler is still reading", stop)
		}
		if f.Served() == 0 {
			t.Error("the front did not answer it itself")
		}
		conn.Close()
	}
}
