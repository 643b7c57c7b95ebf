package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/testtool"
)

// TestFrontProxiesPlainRequests: the front itself proxies plain HTTP/1.1
// requests (none goes to net/http), as a proxy must: forwarded headers
// set, hop-by-hop ones dropped both ways, bodies, HEAD, streams and
// trailers, several requests on one keep-alive connection.
func TestFrontProxiesPlainRequests(t *testing.T) {
	c := newCluster(t, "n1")
	c.nodes["n1"].handle(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/stream":
			w.Header().Set("Trailer", "X-Sum")
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Sum", "3")
			return
		case "/hop":
			w.Header().Set("Connection", "X-Private")
			w.Header().Set("X-Private", "node only")
			w.Header().Set("Keep-Alive", "timeout=5")
		}
		fmt.Fprintf(w, "%s %s host=%s xff=%s xfh=%s xfp=%s secret=%q te=%q ua=%q body=%q",
			r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Secret"), r.Header.Get("Te"), r.Header.Get("User-Agent"), body)
	})
	conn, err := net.Dial("tcp", c.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)

	resp, body := testtool.Exchange(t, conn, br, "GET", "GET /a?b=c HTTP/1.1\r\nHost: web.frost.test\r\nConnection: X-Secret\r\nX-Secret: client only\r\nTe: trailers\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
	want := `GET /a?b=c host=web.frost.test xff=127.0.0.1 xfh=web.frost.test xfp=http secret="" te="trailers" ua="" body=""`
	if resp.StatusCode != 200 || body != want {
		t.Fatalf("GET: %s %q, want %q", resp.Status, body, want)
	}
	resp, body = testtool.Exchange(t, conn, br, "POST", "POST /form HTTP/1.1\r\nHost: web.frost.test\r\nUser-Agent: curl\r\nContent-Length: 5\r\n\r\nhello")
	if want := `POST /form host=web.frost.test xff=127.0.0.1 xfh=web.frost.test xfp=http secret="" te="" ua="curl" body="hello"`; body != want {
		t.Fatalf("POST: %s %q, want %q", resp.Status, body, want)
	}
	// A pinned route: the node sees the app's name, X-Forwarded-Host
	// what the client asked for (as through net/http's ReverseProxy).
	resp, body = testtool.Exchange(t, conn, br, "GET", "GET /p HTTP/1.1\r\nHost: 0-n1--web.frost.test\r\n\r\n")
	if want := `GET /p host=web.frost.test xff=127.0.0.1 xfh=0-n1--web.frost.test xfp=http secret="" te="" ua="" body=""`; body != want {
		t.Fatalf("pinned: %s %q, want %q", resp.Status, body, want)
	}
	resp, body = testtool.Exchange(t, conn, br, "GET", "GET /hop HTTP/1.1\r\nHost: web.frost.test\r\n\r\n")
	if resp.Header.Get("X-Private") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("Connection") != "" || !strings.HasPrefix(body, "GET /hop") {
		t.Fatalf("hop-by-hop headers of the answer passed: %v %q", resp.Header, body)
	}
	resp, body = testtool.Exchange(t, conn, br, "HEAD", "HEAD / HTTP/1.1\r\nHost: web.frost.test\r\n\r\n")
	if resp.StatusCode != 200 || body != "" || resp.ContentLength <= 0 {
		t.Fatalf("HEAD: %s length %d body %q", resp.Status, resp.ContentLength, body)
	}
	resp, body = testtool.Exchange(t, conn, br, "GET", "GET /stream HTTP/1.1\r\nHost: web.frost.test\r\n\r\n")
	if body != "part0;part1;part2;" || resp.Trailer.Get("X-Sum") != "3" {
		t.Fatalf("stream: %q trailer %v", body, resp.Trailer)
	}
	resp, body = testtool.Exchange(t, conn, br, "GET", "GET / HTTP/1.1\r\nHost: nothing.example\r\n\r\n")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "not an app or sandbox") {
		t.Fatalf("unroutable: %s %q", resp.Status, body)
	}
	if p, h := c.srv.front.Served(), c.srv.front.Handed(); p != 7 || h != 0 {
		t.Fatalf("front proxied %d, handed %d to net/http; want 7 and 0", p, h)
	}
	// The client asks to close: answered, then closed.
	resp, _ = testtool.Exchange(t, conn, br, "GET", "GET / HTTP/1.1\r\nHost: web.frost.test\r\nConnection: close\r\n\r\n")
	if !resp.Close {
		t.Fatal("answer to Connection: close does not say close")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection open after Connection: close: %v", err)
	}
	// Every answer is done: no node counts a request in flight (bounded
	// loads would steer away from a node that seemed busy forever).
	for deadline := time.Now().Add(5 * time.Second); c.g.inflightTotal() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("in flight after every answer: %+v", c.g.Nodes())
		}
	}
}

// TestFrontHandsOver: what the front does not proxy itself goes, with
// the bytes it has read, to net/http, which answers as it would have
// without the front.
func TestFrontHandsOver(t *testing.T) {
	c := newCluster(t, "n1")
	c.nodes["n1"].handle(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d %q", r.Method, r.Proto, len(r.Header.Get("X-Big")), body)
	})
	big := strings.Repeat("b", 8<<10)
	cases := []struct {
		name, method, request string
		code                  int
		body                  string
	}{
		{"HTTP/1.0", "GET", "GET / HTTP/1.0\r\nHost: web.frost.test\r\n\r\n", 200, `GET HTTP/1.1 0 ""`},
		{"chunked body", "POST", "POST / HTTP/1.1\r\nHost: web.frost.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, `POST HTTP/1.1 0 "abc"`},
		{"Expect", "PUT", "PUT / HTTP/1.1\r\nHost: web.frost.test\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", 200, `PUT HTTP/1.1 0 "hi"`},
		{"head over 4 KiB", "GET", "GET / HTTP/1.1\r\nHost: web.frost.test\r\nX-Big: " + big + "\r\n\r\n", 200, fmt.Sprintf(`GET HTTP/1.1 %d ""`, len(big))},
		{"two Host headers", "GET", "GET / HTTP/1.1\r\nHost: web.frost.test\r\nHost: other.frost.test\r\n\r\n", 400, ""},
		{"no Host", "GET", "GET / HTTP/1.1\r\n\r\n", 400, ""},
		{"malformed", "GET", "GET / HTTP/1.1\r\nHost: web.frost.test\r\nBad Header\r\n\r\n", 400, ""},
		{"absolute URI", "GET", "GET http://web.frost.test/ HTTP/1.1\r\nHost: web.frost.test\r\n\r\n", 200, `GET HTTP/1.1 0 ""`},
	}
	for i, tc := range cases {
		conn, err := net.Dial("tcp", c.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		resp, body := testtool.Exchange(t, conn, bufio.NewReader(conn), tc.method, tc.request)
		conn.Close()
		if resp.StatusCode != tc.code || tc.body != "" && body != tc.body {
			t.Errorf("%s: %s %q, want %d %q", tc.name, resp.Status, body, tc.code, tc.body)
		}
		if h := c.srv.front.Handed(); h != uint64(i+1) {
			t.Errorf("%s: %d connections handed to net/http, want %d", tc.name, h, i+1)
		}
	}
	if p := c.srv.front.Served(); p != 0 {
		t.Errorf("front proxied %d itself", p)
	}
}

// TestFrontTLS: HTTP/1.1 over TLS is proxied by the front and says
// https to the node; HTTP/2 goes to net/http; both reach the node.
func TestFrontTLS(t *testing.T) {
	c := newCluster(t, "n1")
	c.nodes["n1"].handle(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s", r.Header.Get("X-Forwarded-Proto"))
	})
	ln := c.serveTLS(t)
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "web.frost.test"}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		}
		req, _ := http.NewRequest("GET", "https://"+ln.Addr().String()+"/", nil)
		req.Host = "web.frost.test"
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if resp.StatusCode != 200 || string(b) != "https" || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
			t.Fatalf("h2 %v: %s %s %q", h2, resp.Proto, resp.Status, b)
		}
	}
}

// TestFrontDrains: Shutdown closes idle connections at once, lets a
// request in flight finish (its answer says close) and refuses new
// connections.
func TestFrontDrains(t *testing.T) {
	c := newCluster(t, "n1")
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	c.nodes["n1"].handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "done")
	})
	addr := c.srv.Listener.Addr().String()
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	ibr := bufio.NewReader(idle)
	testtool.Exchange(t, idle, ibr, "GET", "GET / HTTP/1.1\r\nHost: web.frost.test\r\n\r\n")
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: web.frost.test\r\n\r\n")
	<-started
	shut := make(chan error, 1)
	go func() { shut <- c.srv.front.Shutdown(context.Background()) }()
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection not closed by Shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("new connection accepted while draining")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned with a request in flight: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "done" || !resp.Close {
		t.Fatalf("in-flight answer: %q close=%v", b, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}
