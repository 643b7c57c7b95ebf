package gateway

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Front serves the gateway's app listeners. A plain HTTP/1.1 request is
// read, sent to its node and answered on its connection's goroutine,
// without net/http's server: that server starts a goroutine per request
// to watch for the client going away and hands the response through its
// own buffers, which cost a hop as much CPU as the node spends serving
// the request (a hop took twice the node's CPU per request, so a gateway
// on as many cores as the node did half its throughput).
//
// A connection whose request is anything else (an upgrade, Expect,
// HTTP/1.0, an absolute URI, a head larger than the read buffer, HTTP/2
// over TLS, anything net/http would refuse) is handed whole, with the
// bytes already read, to Fallback, an http.Server serving the gateway:
// from then on it is net/http's. What the front does not check, net/http
// does: a request it takes is one net/http would have accepted.
//
// A request's context is not cancelled when its client goes away before
// the answer's head (no read runs while the node works); the node's
// connection is closed as soon as a write to the client fails.
type Front struct {
	g        *Gateway
	fallback *http.Server
	handoff  *handoffListener
	log      *slog.Logger

	mu       sync.Mutex
	conns    map[*frontConn]struct{}
	lns      []net.Listener
	draining atomic.Bool // set once, under mu
	wg       sync.WaitGroup

	// Requests proxied by the front, connections handed to net/http.
	proxied, handed atomic.Uint64
}

// frontConn is one client connection the front serves.
type frontConn struct {
	c     net.Conn
	state atomic.Int32 // connActive, connIdle (Shutdown closes it then) or connShut
}

const (
	connActive = iota // reading or serving a request
	connIdle          // waiting for the next one
	connShut          // closed by Shutdown
)

// keyTLS carries the TLS state of a connection the front handed over
// after reading from it: net/http sees a wrapped conn, not a *tls.Conn.
const keyTLS ctxKey = 100

// frontBuffer is a connection's read and write buffer: a request head
// that does not fit goes to net/http, which allows MaxHeaderBytes.
const frontBuffer = 4 << 10

// maxDiscard is how much of a request body the node did not read the
// front reads away to keep the connection; past it, it closes.
const maxDiscard = 256 << 10

// NewFront returns a front for g whose fallback is srv (its Handler g);
// srv's ReadHeaderTimeout and IdleTimeout apply to the front too.
func (g *Gateway) NewFront(srv *http.Server) *Front {
	f := &Front{g: g, fallback: srv, conns: map[*frontConn]struct{}{}, log: g.cfg.Logger}
	f.handoff = &handoffListener{conns: make(chan net.Conn), closed: make(chan struct{})}
	next := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if pc, ok := c.(*prefixConn); ok && pc.tls != nil {
			ctx = context.WithValue(ctx, keyTLS, pc.tls)
		}
		if next != nil {
			ctx = next(ctx, c)
		}
		return ctx
	}
	go srv.Serve(f.handoff)
	return f
}

// Serve accepts connections on ln (a plain or a TLS listener) until it
// is closed.
func (f *Front) Serve(ln net.Listener) error {
	f.mu.Lock()
	if f.draining.Load() {
		f.mu.Unlock()
		return http.ErrServerClosed
	}
	f.lns = append(f.lns, ln)
	f.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.draining.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				// Out of file descriptors, or the like: back off as
				// net/http does rather than spin.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				f.log.Warn("gateway: accept", "err", err, "retry", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		fc := &frontConn{c: c}
		if !f.track(fc) {
			c.Close()
			return http.ErrServerClosed
		}
		go f.serve(fc)
	}
}

func (f *Front) track(fc *frontConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.draining.Load() {
		return false
	}
	f.conns[fc] = struct{}{}
	f.wg.Add(1)
	return true
}

func (f *Front) forget(fc *frontConn) {
	f.mu.Lock()
	delete(f.conns, fc)
	f.mu.Unlock()
	f.wg.Done()
}

// setIdle marks fc as waiting for its next request (idle) or serving one;
// false if the front is draining or Shutdown closed fc (the connection
// should close). Lock-free: it runs twice a request. A connection that
// goes idle after Shutdown's look at it sees draining set.
func (f *Front) setIdle(fc *frontConn, idle bool) bool {
	if idle {
		return fc.state.CompareAndSwap(connActive, connIdle) && !f.draining.Load()
	}
	return fc.state.CompareAndSwap(connIdle, connActive)
}

// Shutdown stops accepting, closes idle connections, lets the requests
// in flight finish (their connections close after them) and waits for
// them until ctx ends; then it closes what is left. It shuts the
// fallback server down too.
func (f *Front) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.draining.Store(true)
	for _, ln := range f.lns {
		ln.Close()
	}
	for fc := range f.conns {
		if fc.state.CompareAndSwap(connIdle, connShut) {
			fc.c.Close()
		}
	}
	f.mu.Unlock()
	f.handoff.Close()
	fallback := make(chan error, 1)
	go func() { fallback <- f.fallback.Shutdown(ctx) }()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		f.mu.Lock()
		for fc := range f.conns {
			fc.state.Store(connShut)
			fc.c.Close()
		}
		f.mu.Unlock()
	}
	return errors.Join(err, <-fallback)
}

// serve runs one connection: requests one after another until the
// client closes, a timeout, an error, a request for net/http, or drain.
func (f *Front) serve(fc *frontConn) {
	defer f.forget(fc)
	c := fc.c
	handedOff := false
	defer func() {
		if !handedOff {
			c.Close()
		}
	}()
	hto, ito := f.fallback.ReadHeaderTimeout, f.fallback.IdleTimeout
	if hto <= 0 {
		hto = 10 * time.Second
	}
	if ito <= 0 {
		ito = hto
	}
	var state *tls.ConnectionState
	if tc, ok := c.(*tls.Conn); ok {
		c.SetDeadline(time.Now().Add(hto))
		if err := tc.Handshake(); err != nil {
			f.log.Debug("gateway: TLS handshake", "remote", c.RemoteAddr(), "err", err)
			return
		}
		c.SetDeadline(time.Time{})
		cs := tc.ConnectionState()
		state = &cs
		if cs.NegotiatedProtocol != "" && cs.NegotiatedProtocol != "http/1.1" {
			handedOff = f.handOver(c, nil, nil)
			return
		}
	}
	client, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	in := &gate{Conn: c}
	br := bufio.NewReaderSize(in, frontBuffer)
	bw := bufio.NewWriterSize(c, frontBuffer)
	var read []byte // what br held before a request was parsed, to hand over
	for {
		if !f.setIdle(fc, true) {
			return
		}
		c.SetReadDeadline(time.Now().Add(ito))
		if _, err := br.Peek(1); err != nil {
			return
		}
		if !f.setIdle(fc, false) {
			return
		}
		c.SetReadDeadline(time.Now().Add(hto))
		n, err := fillHead(br)
		if err != nil {
			if err == errHeadTooLarge {
				// net/http reads it (or refuses it).
				buffered, _ := br.Peek(br.Buffered())
				handedOff = f.handOver(c, bytes.NewReader(buffered), state)
			}
			return
		}
		buffered, _ := br.Peek(br.Buffered())
		read = append(read[:0], buffered...)
		// The head is buffered whole: parsing it must read nothing more
		// from the connection, so that read is all there is to hand over.
		in.shut = true
		req, err := http.ReadRequest(br)
		in.shut = false
		if err != nil || !f.takes(req, read[:n]) {
			// net/http answers what it makes of it.
			handedOff = f.handOver(c, bytes.NewReader(read), state)
			return
		}
		c.SetReadDeadline(time.Time{})
		if !f.proxy(req, bw, client, state) {
			return
		}
	}
}

// gate is a connection that can refuse reads for a while.
type gate struct {
	net.Conn
	shut bool
}

var errShut = errors.New("gateway: no reads while the head is parsed")

func (g *gate) Read(p []byte) (int, error) {
	if g.shut {
		return 0, errShut
	}
	return g.Conn.Read(p)
}

var errHeadTooLarge = errors.New("gateway: request head larger than the front's buffer")

// fillHead reads until br's buffer holds a whole request head (up to its
// first empty line), or is full (errHeadTooLarge), and returns the
// head's length.
func fillHead(br *bufio.Reader) (int, error) {
	for {
		buf, _ := br.Peek(br.Buffered())
		if n := headEnd(buf); n >= 0 {
			return n, nil
		}
		if len(buf) == br.Size() {
			return 0, errHeadTooLarge
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return 0, err
		}
	}
}

// headEnd returns where the head in buf ends, after its first empty line
// ("\n" or "\r\n" after a "\n"), or -1 if it does not yet.
func headEnd(buf []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(buf) && buf[i] == '\n' {
			return i + 1
		}
		if i+1 < len(buf) && buf[i] == '\r' && buf[i+1] == '\n' {
			return i + 2
		}
	}
}

// takes says whether the front proxies req itself: an HTTP/1.1 request
// in origin form to a route, with nothing that needs net/http's server
// (an upgrade, Expect) and nothing net/http would refuse.
func (f *Front) takes(req *http.Request, head []byte) bool {
	// A body the gateway may stream goes to net/http: http.Transport may
	// still read it after answering, and the next request needs it read.
	if req.ContentLength < 0 || req.ContentLength > f.g.cfg.MaxReplayBody {
		return false
	}
	if req.ProtoMajor != 1 || req.ProtoMinor != 1 || req.Method == http.MethodConnect ||
		!strings.HasPrefix(req.RequestURI, "/") || !httpguts.ValidHostHeader(req.Host) {
		return false
	}
	if req.Host == "" || hostLines(head) != 1 {
		return false
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
		switch k {
		case "Upgrade", "Expect":
			return false
		}
	}
	return true
}

// hostLines counts the Host header lines in a request head (ReadRequest
// keeps only the first).
func hostLines(head []byte) int {
	n := 0
	for len(head) > 0 {
		line := head
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			head = nil
		}
		if len(line) >= 5 && line[4] == ':' && strings.EqualFold(string(line[:4]), "host") {
			n++
		}
	}
	return n
}

// proxy sends req to its node and writes the answer on bw; false when
// the connection must close after it.
func (f *Front) proxy(req *http.Request, bw *bufio.Writer, client string, state *tls.ConnectionState) bool {
	g := f.g
	g.requests.Add(1)
	f.proxied.Add(1)
	req.TLS = state
	req.RemoteAddr = client
	keep := !req.Close
	p, code, msg := g.route(req)
	if p == nil {
		return discard(req.Body, keep) && writeError(bw, code, msg, req, !keep || f.draining.Load())
	}
	out := req
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = "http", "node"
	// The Host the client asked for, before a pinned route's rewrite.
	out.Header["X-Forwarded-Host"] = []string{req.Host}
	out.Host = cmp.Or(p.host, req.Host)
	removeHopHeaders(out.Header)
	out.Header.Del(CanReplayHeader)
	out.Header.Del(ReplayedHeader)
	out.Header["X-Forwarded-For"] = []string{client}
	if state != nil {
		out.Header["X-Forwarded-Proto"] = []string{"https"}
	} else {
		out.Header["X-Forwarded-Proto"] = []string{"http"}
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // not Go's own
	}
	// The request's own body reads from the connection: it must not be
	// closed (and the connection with it) by the node's side.
	body := req.Body
	out.Body = io.NopCloser(body)
	if body == http.NoBody {
		out.Body = http.NoBody
	}
	resp, err := g.roundTrip(out, p)
	if err != nil {
		g.failures.Add(1)
		msg := fmt.Sprintf("frost gateway: %s: no node answered (tried %v): %v", p.describe(), p.tried, err)
		return discard(body, keep) && writeError(bw, http.StatusBadGateway, msg, req, !keep || f.draining.Load())
	}
	defer resp.Body.Close()
	// The rest of a body the node did not read must go before the next
	// request can be read.
	keep = discard(body, keep)
	keep = keep && !resp.Close && !f.draining.Load()
	return writeResponse(bw, req, resp, keep) && keep
}

// discard reads what is left of a request body, up to maxDiscard; false
// when the connection cannot be kept.
func discard(body io.Reader, keep bool) bool {
	if body == nil || body == http.NoBody {
		return keep
	}
	n, err := io.CopyN(io.Discard, body, maxDiscard+1)
	return keep && err == io.EOF && n <= maxDiscard
}

// writeResponse writes resp as the answer to req, its body as it comes
// (flushed after every read when its length is unknown); false if the
// client cannot be written to or the body failed midway.
func writeResponse(bw *bufio.Writer, req *http.Request, resp *http.Response, keep bool) bool {
	h := resp.Header
	removeHopHeaders(h)
	h.Del(ReplayHeader)
	bodyless := req.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified || resp.StatusCode < 200
	chunked := resp.ContentLength < 0 && !bodyless
	writeStatus(bw, resp.StatusCode, resp.Status)
	cl := h["Content-Length"]
	delete(h, "Content-Length")
	writeHeader(bw, h)
	switch {
	case resp.ContentLength >= 0 && !bodyless:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(resp.ContentLength, 10))
		bw.WriteString("\r\n")
	case bodyless && len(cl) == 1:
		// A HEAD answer says how long the GET's body would be.
		bw.WriteString("Content-Length: ")
		bw.WriteString(cl[0])
		bw.WriteString("\r\n")
	case chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(resp.Trailer) > 0 {
			bw.WriteString("Trailer: ")
			bw.WriteString(strings.Join(slices.Sorted(maps.Keys(resp.Trailer)), ", "))
			bw.WriteString("\r\n")
		}
	}
	if !keep {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	if bodyless {
		return bw.Flush() == nil
	}
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	if !chunked {
		n, err := io.CopyBuffer(bw, onlyReader{resp.Body}, *buf)
		return err == nil && n == resp.ContentLength && bw.Flush() == nil
	}
	// Unknown length: a stream goes out as it arrives.
	for {
		n, err := resp.Body.Read(*buf)
		if n > 0 {
			fmt.Fprintf(bw, "%x\r\n", n)
			bw.Write((*buf)[:n])
			bw.WriteString("\r\n")
			if bw.Flush() != nil {
				return false
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return false
		}
	}
	bw.WriteString("0\r\n")
	resp.Trailer.Write(bw)
	bw.WriteString("\r\n")
	return bw.Flush() == nil
}

// onlyReader hides a body's WriteTo, so that CopyBuffer uses the buffer.
type onlyReader struct{ io.Reader }

// writeStatus writes the status line: the node's reason phrase when
// status (as http.Response.Status has it) carries one, else the standard
// one.
func writeStatus(bw *bufio.Writer, code int, status string) {
	num := strconv.Itoa(code)
	text, ok := strings.CutPrefix(status, num+" ")
	if !ok {
		text = http.StatusText(code)
	}
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(num)
	bw.WriteByte(' ')
	bw.WriteString(text)
	bw.WriteString("\r\n")
}

// writeError answers with code and msg as text; false if the client
// cannot be written to.
func writeError(bw *bufio.Writer, code int, msg string, req *http.Request, closing bool) bool {
	writeStatus(bw, code, "")
	bw.WriteString("Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n")
	if closing {
		bw.WriteString("Connection: close\r\n")
	}
	if req.Method == http.MethodHead {
		fmt.Fprintf(bw, "Content-Length: %d\r\n\r\n", len(msg)+1)
	} else {
		fmt.Fprintf(bw, "Content-Length: %d\r\n\r\n%s\n", len(msg)+1, msg)
	}
	return bw.Flush() == nil && !closing
}

// hopHeaders are the headers of one connection, not to be forwarded
// (RFC 9110, 7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopHeaders deletes the hop-by-hop headers and those Connection
// names; "Te: trailers" stays (gRPC needs it).
func removeHopHeaders(h http.Header) {
	trailers := false
	for _, v := range h["Te"] {
		trailers = trailers || strings.EqualFold(strings.TrimSpace(v), "trailers")
	}
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = http.CanonicalHeaderKey(strings.TrimSpace(name)); name != "" {
				delete(h, name)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
	if trailers {
		h["Te"] = []string{"trailers"}
	}
}

// handOver gives c to the fallback server with the bytes already read
// from it (head and then br's buffer); false if the front is closing
// (c is then closed by the caller).
func (f *Front) handOver(c net.Conn, pre io.Reader, state *tls.ConnectionState) bool {
	conn := c
	if pre != nil {
		conn = &prefixConn{Conn: c, r: io.MultiReader(pre, c), tls: state}
	}
	// Counted before net/http has it (it may answer before this goroutine
	// runs again), and taken back if it does not.
	f.handed.Add(1)
	select {
	case f.handoff.conns <- conn:
		return true
	case <-f.handoff.closed:
		f.handed.Add(^uint64(0))
		return false
	}
}

// prefixConn is a connection some of whose bytes were read already.
type prefixConn struct {
	net.Conn
	r   io.Reader
	tls *tls.ConnectionState
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// handoffListener is the fallback server's listener: the connections
// the front hands over.
type handoffListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
