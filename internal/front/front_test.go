package front

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/certs"
	"github.com/frostdev/frost/internal/testtool"
)

// serveFront serves h through a front on a loopback listener until the
// test ends.
func serveFront(t testing.TB, h http.Handler, takes func(*http.Request) bool) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	f := New(Config{Fallback: srv, Handler: h, Takes: takes, Logger: slog.New(slog.DiscardHandler)})
	go f.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.Shutdown(ctx)
	})
	return f, ln.Addr().String()
}

// answers are handlers that exercise what a response writer must do
// as net/http's does, by path.
func answers(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/small":
		io.WriteString(w, "<html>hi</html>")
	case "/typed":
		w.Header().Set("Content-Type", "application/x-frost")
		w.WriteHeader(201)
		io.WriteString(w, "typed")
	case "/big":
		w.Write(bytes.Repeat([]byte("0123456789abcdef"), 1000))
	case "/big-length":
		w.Header().Set("Content-Length", "16000")
		w.Write(bytes.Repeat([]byte("0123456789abcdef"), 1000))
	case "/encoded":
		w.Header().Set("Content-Encoding", "gzip")
		w.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0})
	case "/notmodified":
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusNotModified)
	case "/empty":
	case "/nocontent":
		w.Header().Set("Content-Length", "11")
		w.WriteHeader(http.StatusNoContent)
		if _, err := io.WriteString(w, "not allowed"); !errors.Is(err, http.ErrBodyNotAllowed) {
			panic("a 204 body was accepted")
		}
	case "/stream":
		for i := range 3 {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush()
		}
	case "/trailers":
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "body")
		w.Header().Set("X-Sum", "4")
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
	case "/hints":
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "after hints")
	case "/close":
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	case "/short":
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "short")
	case "/echo":
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %q", r.Method, r.Host, b)
	case "/unread":
		io.WriteString(w, "did not read the body")
	case "/inject":
		w.Header()["X-Bad\r\nInjected"] = []string{"1"}
		w.Header().Set("X-Value", "a\r\nInjected: 2")
		io.WriteString(w, "headers")
	case "/panic":
		panic("handler failed")
	case "/abort":
		panic(http.ErrAbortHandler)
	default:
		http.NotFound(w, r)
	}
}

// TestResponseLikeNetHTTP: for each kind of answer, the front's writer
// gives the client what net/http's server gives it: status, body,
// framing (length or chunked), sniffed type, trailers, informational
// answers skipped, whether the connection closes; header injection is
// dropped by both.
func TestResponseLikeNetHTTP(t *testing.T) {
	h := http.HandlerFunc(answers)
	f, addr := serveFront(t, h, nil)
	std := httptest.NewServer(h)
	defer std.Close()
	type answer struct {
		status      int
		body        string
		length      int64
		chunked     bool
		ctype, date bool
		trailer     string
		close       bool
		injected    string
		value       string
		clHeader    string
	}
	get := func(addr, method, path string) answer {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		resp, body := testtool.Exchange(t, conn, bufio.NewReader(conn), method, method+" "+path+" HTTP/1.1\r\nHost: app.test\r\n\r\n")
		if len(body) > 64 {
			body = fmt.Sprintf("%d bytes, sha256 %x", len(body), sha256.Sum256([]byte(body)))
		}
		return answer{resp.StatusCode, body, resp.ContentLength, len(resp.TransferEncoding) > 0,
			resp.Header.Get("Content-Type") != "", resp.Header.Get("Date") != "",
			resp.Trailer.Get("X-Sum") + "," + resp.Trailer.Get("X-Late"), resp.Close,
			resp.Header.Get("Injected"), resp.Header.Get("X-Value"), resp.Header.Get("Content-Length")}
	}
	for _, path := range []string{"/small", "/typed", "/big", "/big-length", "/encoded", "/empty", "/nocontent", "/notmodified", "/stream",
		"/trailers", "/hints", "/close", "/short", "/inject", "/missing"} {
		for _, method := range []string{"GET", "HEAD"} {
			if path == "/short" && method == "GET" {
				continue // a short body: see TestShortBodyCloses
			}
			got, want := get(addr, method, path), get(std.Listener.Addr().String(), method, path)
			if got != want {
				t.Errorf("%s %s: front %+v\nnet/http %+v", method, path, got, want)
			}
		}
	}
	if f.Served() == 0 || f.Handed() != 0 {
		t.Fatalf("front served %d itself, handed %d: the comparison did not test the front", f.Served(), f.Handed())
	}
}

// TestKeepAlive: requests follow one another on a connection, with a
// body read or left unread; a body too large to read away, a short
// answer and Connection: close end the connection, each after its
// answer.
func TestKeepAlive(t *testing.T) {
	f, addr := serveFront(t, http.HandlerFunc(answers), nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	resp, body := testtool.Exchange(t, conn, br, "POST", "POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello")
	if body != `POST app.test "hello"` || resp.Close {
		t.Fatalf("echo: %q close=%v", body, resp.Close)
	}
	resp, body = testtool.Exchange(t, conn, br, "POST", "POST /unread HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc")
	if body != "did not read the body" || resp.Close {
		t.Fatalf("unread: %q close=%v", body, resp.Close)
	}
	resp, body = testtool.Exchange(t, conn, br, "GET", "GET /echo HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if body != `GET app.test ""` || resp.Close {
		t.Fatalf("after an unread body: %q close=%v", body, resp.Close)
	}
	// A body larger than the front reads away: answered, then closed.
	big := strings.Repeat("x", maxDiscard+1)
	go io.WriteString(conn, "POST /unread HTTP/1.1\r\nHost: app.test\r\nContent-Length: "+fmt.Sprint(len(big))+"\r\n\r\n"+big)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if !resp.Close {
		t.Fatal("an unread body past maxDiscard did not close the connection")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open: %v", err)
	}
	for _, path := range []string{"/close", "/short"} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: app.test\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body) // /short ends early
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("%s: close=%v, connection still open: %v", path, resp.Close, err)
		}
		conn.Close()
	}
	if f.Handed() != 0 {
		t.Fatalf("%d connections handed to net/http", f.Handed())
	}
}

// TestShortBodyCloses: an answer shorter than the Content-Length its
// handler set can only be told by the connection closing: the client
// sees an unexpected EOF, as from net/http.
func TestShortBodyCloses(t *testing.T) {
	_, addr := serveFront(t, http.HandlerFunc(answers), nil)
	resp, err := http.Get("http://" + addr + "/short")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short body read: %v, want unexpected EOF", err)
	}
}

// TestPanics: a handler's panic closes its connection without an
// answer; the front goes on serving others.
func TestPanics(t *testing.T) {
	_, addr := serveFront(t, http.HandlerFunc(answers), nil)
	for _, path := range []string{"/panic", "/abort"} {
		if _, err := http.Get("http://" + addr + path); err == nil {
			t.Errorf("%s: answered", path)
		}
	}
	resp, err := http.Get("http://" + addr + "/small")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after panics: %s", resp.Status)
	}
}

// TestHandsOver: what the front does not take (HTTP/1.0, a chunked
// body, Expect, a head over its buffer, two Hosts, an absolute URI, and
// what Takes refuses) goes, with its connection, to net/http, which
// answers it as before.
func TestHandsOver(t *testing.T) {
	f, addr := serveFront(t, http.HandlerFunc(answers), func(r *http.Request) bool { return r.Host != "elsewhere.test" })
	for i, req := range []string{
		"GET /echo HTTP/1.0\r\nHost: app.test\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
		"GET /echo HTTP/1.1\r\nHost: app.test\r\nX-Big: " + strings.Repeat("b", 8<<10) + "\r\n\r\n",
		"GET /echo HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n\r\n",
		"GET http://app.test/echo HTTP/1.1\r\nHost: app.test\r\n\r\n",
		"GET /echo HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n",
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		method, _, _ := strings.Cut(req, " ")
		resp, body := testtool.Exchange(t, conn, bufio.NewReader(conn), method, req)
		conn.Close()
		want := 200
		if strings.Contains(req, "other.test") {
			want = 400 // net/http refuses two Hosts
		}
		if resp.StatusCode != want || want == 200 && !strings.HasPrefix(body, method+" ") {
			t.Errorf("%d: %s %q", i, resp.Status, body)
		}
		if h := f.Handed(); h != uint64(i+1) {
			t.Errorf("%d: %d connections handed over, want %d", i, h, i+1)
		}
	}
	if s := f.Served(); s != 0 {
		t.Fatalf("front served %d itself", s)
	}
}

// TestTLS: over TLS, a request the front answers and one it hands to
// net/http after reading it (HTTP/1.0) both see the connection's TLS
// state.
// serveTLSFront serves h through a front on a loopback TLS listener (a
// development certificate for app.test) until the test ends.
func serveTLSFront(t *testing.T, h http.Handler) (*Server, string) {
	t.Helper()
	cert, _, err := certs.Development(t.TempDir(), certs.Names("app.test"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	f := New(Config{Fallback: &http.Server{Handler: h}, Handler: h, Logger: slog.New(slog.DiscardHandler)})
	go f.Serve(ln)
	t.Cleanup(func() { f.Shutdown(context.Background()) })
	return f, ln.Addr().String()
}

func TestTLS(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s tls=%v", r.Proto, r.TLS != nil && r.TLS.HandshakeComplete)
	})
	f, addr := serveTLSFront(t, h)
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		_, body := testtool.Exchange(t, conn, bufio.NewReader(conn), "GET", "GET / "+proto+"\r\nHost: app.test\r\n\r\n")
		conn.Close()
		if body != proto+" tls=true" {
			t.Errorf("%s: %q", proto, body)
		}
	}
	if f.Served() != 1 || f.Handed() != 1 {
		t.Fatalf("served %d, handed %d; want 1 and 1", f.Served(), f.Handed())
	}
}

// FuzzHead: the front parses a request once headEnd says the head is
// buffered whole; the parse must then need nothing past it (reads are
// refused meanwhile, and a refused read hands the connection to
// net/http instead of serving it), and hostLines must see every Host
// line.
func FuzzHead(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\nHost: a\nhost: b\n\nbody"))
	f.Add([]byte("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n X: folded\r\n\r\nabc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := headEnd(b)
		if n < 0 {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:n])))
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("head %q (end %d): the parse wants more: %v", b, n, err)
		}
		if err == nil && strings.HasPrefix(req.RequestURI, "/") && req.Host != "" && hostLines(b[:n]) == 0 {
			t.Fatalf("head %q: Host %q but no Host line counted", b[:n], req.Host)
		}
	})
}
