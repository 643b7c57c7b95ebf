package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/frostdev/frost/internal/front"
)

// h1 is the gateway's HTTP/1.1 client for its hop to nodes: a request is
// written, and its response read, on the goroutine that proxies it, over a
// pooled keep-alive connection. http.Transport hands every request to a
// writer goroutine and every response back from a reader goroutine: two
// goroutine wake-ups per request, which on a many-core machine with idle
// cores cost more than the rest of the proxying (through http.Transport a
// hop added 128 µs at p50 with a single client connection).
//
// h1 takes the requests it can send again if a pooled connection turns out
// to be closed (no body, or a body it can get again) and that upgrade
// nothing; fallback takes the rest (streams, WebSocket upgrades, Expect:
// 100-continue).
type h1 struct {
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	fallback http.RoundTripper
	maxIdle  int           // idle connections kept per node
	idleTime time.Duration // an idle connection older than this is closed, not used

	mu      sync.Mutex
	idle    map[string][]*h1conn // by address, most recently used last
	sweeper *time.Timer          // pending sweep, nil when none
}

type h1conn struct {
	c    net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time // when it went idle
}

func newH1(dial func(ctx context.Context, network, addr string) (net.Conn, error), fallback http.RoundTripper) *h1 {
	return &h1{dial: dial, fallback: fallback, maxIdle: 256, idleTime: 60 * time.Second, idle: map[string][]*h1conn{}}
}

// RoundTrip implements http.RoundTripper.
func (t *h1) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" ||
		req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return t.fallback.RoundTrip(req)
	}
	addr := req.URL.Host
	for try := 0; ; try++ {
		pc, reused, err := t.conn(req.Context(), addr)
		if err != nil {
			return nil, err
		}
		resp, err := t.send(req, pc)
		if err == nil {
			return resp, nil
		}
		pc.c.Close()
		if req.Context().Err() != nil {
			return nil, req.Context().Err()
		}
		if wasLost(pc.c) {
			// Closed by the gateway, the node lost: it may have served
			// the request.
			return nil, err
		}
		// A pooled connection the node had closed: send it again on a
		// new one (the request can be: see above).
		if !reused || try > 0 {
			return nil, err
		}
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// send writes req on pc and reads the response head; the body is read from
// pc as the caller reads it.
func (t *h1) send(req *http.Request, pc *h1conn) (*http.Response, error) {
	stop := never
	if req.Context().Done() != nil {
		stop = context.AfterFunc(req.Context(), func() { pc.c.SetDeadline(time.Unix(1, 0)) })
	}
	err := writeRequest(pc.bw, req)
	if err == nil {
		err = pc.bw.Flush()
	}
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(pc.br, req)
		// Informational answers (103 Early Hints) come before the
		// answer: skip them, as http.Transport does by default.
		for n := 0; err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols; n++ {
			if n == maxInformational {
				err = errors.New("gateway: too many informational responses from the node")
				break
			}
			resp, err = http.ReadResponse(pc.br, req)
		}
	}
	if err != nil {
		stop()
		return nil, err
	}
	reusable := !resp.Close && !req.Close
	if resp.Body == http.NoBody || resp.ContentLength == 0 && resp.TransferEncoding == nil {
		// Nothing to read: the connection is free now.
		t.done(pc, req.URL.Host, reusable && stop())
		resp.Body = http.NoBody
		return resp, nil
	}
	resp.Body = &h1body{ReadCloser: resp.Body, t: t, pc: pc, addr: req.URL.Host, reusable: reusable, stop: stop}
	return resp, nil
}

// writeRequest writes req on bw as Request.Write would, itself for the
// common case: a body of known length (or none), no trailers, headers
// without line breaks. Request.Write copies and sorts the header and
// probes the body: a tenth of a hop's CPU.
func writeRequest(bw *bufio.Writer, req *http.Request) error {
	if req.ContentLength < 0 || req.ContentLength > 0 && (req.Body == nil || req.Body == http.NoBody) ||
		len(req.TransferEncoding) > 0 || len(req.Trailer) > 0 || req.Close || !plainHeader(req.Header) ||
		strings.ContainsAny(req.Host, "\r\n ") {
		return req.Write(bw)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(req.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	if ua, ok := req.Header["User-Agent"]; !ok {
		bw.WriteString("User-Agent: Go-http-client/1.1\r\n")
	} else if len(ua) > 0 && ua[0] != "" {
		bw.WriteString("User-Agent: ")
		bw.WriteString(ua[0])
		bw.WriteString("\r\n")
	}
	switch m := req.Method; {
	case req.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(req.ContentLength, 10))
		bw.WriteString("\r\n")
	case m == http.MethodPost || m == http.MethodPut || m == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	front.WriteHeader(bw, req.Header, "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer")
	bw.WriteString("\r\n")
	if req.ContentLength == 0 {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil
	}
	n, err := io.Copy(bw, req.Body)
	req.Body.Close()
	if err == nil && n != req.ContentLength {
		err = fmt.Errorf("gateway: request body of %d bytes, not the %d its Content-Length says", n, req.ContentLength)
	}
	return err
}

// plainHeader says whether h's names and values are safe to write as
// they are.
func plainHeader(h http.Header) bool {
	for k, vv := range h {
		if strings.ContainsAny(k, "\r\n: ") {
			return false
		}
		for _, v := range vv {
			if strings.ContainsAny(v, "\r\n") {
				return false
			}
		}
	}
	return true
}

// never is the stop of a request whose context cannot end.
func never() bool { return true }

// maxInformational bounds the 1xx answers skipped before one answer.
const maxInformational = 5

// h1body gives the connection back once the body has been read to its end
// and closed; a body closed early closes the connection.
type h1body struct {
	io.ReadCloser
	t        *h1
	pc       *h1conn
	addr     string
	reusable bool
	stop     func() bool
	eof      bool
	closed   bool
}

func (b *h1body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *h1body) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.ReadCloser.Close()
	stopped := b.stop() // false: the request's context ended and the deadline was set
	b.t.done(b.pc, b.addr, b.reusable && b.eof && stopped && err == nil)
	return err
}

// conn returns an idle connection to addr, or a new one.
func (t *h1) conn(ctx context.Context, addr string) (*h1conn, bool, error) {
	now := time.Now()
	t.mu.Lock()
	for l := t.idle[addr]; len(l) > 0; l = t.idle[addr] {
		pc := l[len(l)-1]
		l[len(l)-1] = nil
		t.idle[addr] = l[:len(l)-1]
		if now.Sub(pc.used) < t.idleTime {
			t.mu.Unlock()
			return pc, true, nil
		}
		pc.c.Close()
	}
	t.mu.Unlock()
	c, err := t.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &h1conn{c: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 16<<10)}, false, nil
}

// done gives pc back to the pool, or closes it.
func (t *h1) done(pc *h1conn, addr string, reuse bool) {
	if reuse && pc.br.Buffered() == 0 {
		pc.used = time.Now()
		t.mu.Lock()
		if len(t.idle[addr]) < t.maxIdle {
			t.idle[addr] = append(t.idle[addr], pc)
			if t.sweeper == nil {
				t.sweeper = time.AfterFunc(t.idleTime, t.sweep)
			}
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
	}
	pc.c.Close()
}

// sweep closes the connections idle for idleTime (a node that left the
// cluster would otherwise keep its connections open here), and comes back
// while any are pooled.
func (t *h1) sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	cutoff := time.Now().Add(-t.idleTime)
	left := 0
	for addr, l := range t.idle {
		keep := slices.DeleteFunc(l, func(pc *h1conn) bool {
			if pc.used.After(cutoff) {
				return false
			}
			pc.c.Close()
			return true
		})
		if len(keep) == 0 {
			delete(t.idle, addr)
		} else {
			t.idle[addr] = keep
			left += len(keep)
		}
	}
	t.sweeper = nil
	if left > 0 {
		t.sweeper = time.AfterFunc(t.idleTime, t.sweep)
	}
}
