// Package front serves HTTP/1.1 connections itself, on each connection's
// own goroutine, and hands every connection it does not take to a
// net/http server.
//
// net/http's server costs a request more than a hello world's handler
// does: a goroutine per request to watch for the client going away, a
// cancellable context, a response buffered twice (bufio over a chunk
// writer over bufio), deadlines reset around each read. A front reads a
// request head into a 4 KiB buffer, parses it with http.ReadRequest, and,
// for a plain HTTP/1.1 request (origin-form, one valid Host, valid header
// names and values, a body of known length, no Upgrade or Expect), has it
// answered straight onto the connection's buffered writer; through a
// front, a node serving a hello world needs a quarter less CPU per
// request than net/http does.
//
// A connection whose request is anything else (HTTP/2 over TLS, HTTP/1.0,
// an upgrade, Expect, a chunked body, a head larger than the buffer,
// anything net/http would refuse) is handed whole, with the bytes already
// read, to the fallback http.Server: from then on it is net/http's. What
// the front does not check, net/http does: a request the front takes is
// one net/http would have accepted.
//
// A request's context is its connection's, made once per connection; it
// ends when the connection closes, or, while a request runs long, when
// the client is found gone (watch.go): no read runs while a request is
// answered, but one still running after a quarter of a second gets a
// watcher that reads the connection, and an end of file ends the
// request's context with ErrClientLeft. Requests that end sooner, nearly
// all of them, pay one atomic store for it (net/http starts a read for
// every request). A client that stops reading its answer is cut after
// Config.StallTimeout without progress, over HTTP/2 too (ServeTLS
// writes for net/http below TLS).
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
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/frostdev/frost/internal/hop"
	"github.com/frostdev/frost/internal/rawio"
)

// Config says what a front serves and how.
type Config struct {
	// Fallback serves the connections the front hands over; its
	// ReadHeaderTimeout and IdleTimeout apply to the front's own
	// connections too. Its Handler sees r.TLS on a TLS connection handed
	// over after the front read from it.
	Fallback *http.Server

	// Takes, if set, says whether the front answers a plain request
	// itself; a request it refuses goes, with its connection, to
	// Fallback.
	Takes func(*http.Request) bool

	// Exactly one of Handler and Serve answers the requests the front
	// takes. Handler gets a response writer that writes onto the
	// connection (http.Flusher and ResponseController's Flush work; so
	// do trailers). Serve writes the answer itself on w and says whether
	// the connection may serve another request; before the answer's head
	// it calls Server.Reusable.
	Handler http.Handler
	Serve   func(w *bufio.Writer, req *http.Request) bool

	// MaxBody is the largest request body the front takes (0: any
	// known length); larger ones go to Fallback.
	MaxBody int64

	// StallTimeout closes a connection whose client took none of its
	// answer for this long (0: DefaultStallTimeout), as nginx's
	// send_timeout does: a client that stops reading holds a goroutine
	// and its answer's buffers (up to a guest's whole response) until
	// then.
	StallTimeout time.Duration

	// BodyTimeout cuts the body of a request the front answers when a
	// read of it waits this long for the client (0: DefaultBodyTimeout),
	// or when it comes slower than MinBodyRate: the body's read fails
	// with ErrBodyTimeout. A handler pacing the bodies net/http serves
	// (PaceBody) should pass it the same.
	BodyTimeout time.Duration

	// Hop, if set, serves the connections that open with hop.Preface
	// (a gateway's multiplexed hop, package hop); Shutdown shuts it
	// down with the front.
	Hop *hop.Server

	Logger *slog.Logger
}

// Server is a front: see the package comment.
type Server struct {
	cfg     Config
	handoff *handoffListener
	log     *slog.Logger

	mu          sync.Mutex
	conns       map[*conn]struct{}
	handedConns map[*conn]struct{} // connections net/http serves now (HTTP/1.x, HTTP/2 under ServeTLS), for the stall cut
	lns         []net.Listener
	draining    atomic.Bool // set once, under mu
	wg          sync.WaitGroup

	// The watch on long requests' clients (watch.go): ticks of the
	// sweeper so far, and whether it runs.
	epoch    atomic.Int64
	sweeping atomic.Bool

	served, handed, stalled atomic.Uint64
}

// conn is one client connection the front serves.
type conn struct {
	c     net.Conn
	state atomic.Int32 // connActive, connIdle (Shutdown closes it then) or connShut

	// Whether the client is still there while a request runs (watch.go).
	ctx      context.Context // every request's on the connection; ends when the client is found gone
	cancel   context.CancelCauseFunc
	running  atomic.Int64 // 0, or the sweeper's epoch+1 when the running request began, or watching
	writing  atomic.Int64 // 0, or the sweeper's epoch+1 when the write under way began, or cut
	bodyDone atomic.Bool  // the running request's body was read to its end
	mu       sync.Mutex   // orders the watcher's deadline against the end of the request
	ended    bool         // under mu: the request ended, the watcher must not read on
	watched  chan struct{}
	peek     [1]byte // a byte the watcher read: the next request's first
	pending  bool    // peek holds it
}

const (
	connActive = iota // reading or serving a request
	connIdle          // waiting for the next one
	connShut          // closed by Shutdown
)

type ctxKey int

// keyTLS carries the TLS state of a connection the front handed over
// after reading from it: net/http sees a wrapped conn, not a *tls.Conn.
const keyTLS ctxKey = 1

// bufferSize is a connection's read and write buffer: a request head
// that does not fit goes to net/http, which allows MaxHeaderBytes.
const bufferSize = 4 << 10

// maxDiscard is how much of a request body the answer did not read the
// front reads away to keep the connection; past it, it closes.
const maxDiscard = 256 << 10

// New returns a front and starts its fallback server.
func New(cfg Config) *Server {
	if (cfg.Handler == nil) == (cfg.Serve == nil) {
		panic("front: give exactly one of Handler and Serve")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	s := &Server{cfg: cfg, conns: map[*conn]struct{}{}, handedConns: map[*conn]struct{}{}, log: cfg.Logger}
	s.handoff = &handoffListener{conns: make(chan net.Conn), closed: make(chan struct{})}
	srv := cfg.Fallback
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
	h := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			r.TLS, _ = r.Context().Value(keyTLS).(*tls.ConnectionState)
		}
		h.ServeHTTP(w, r)
	})
	go srv.Serve(s.handoff)
	return s
}

// Served counts the requests the front answered itself, Handed the
// connections it gave to net/http.
func (s *Server) Served() uint64 { return s.served.Load() }
func (s *Server) Handed() uint64 { return s.handed.Load() }

// Stalled counts the connections closed because their client took none
// of an answer for Config.StallTimeout.
func (s *Server) Stalled() uint64 { return s.stalled.Load() }

// Serve accepts connections on ln (a plain or a TLS listener) until it
// is closed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.draining.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				// Out of file descriptors, or the like: back off as
				// net/http does rather than spin.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("front: accept", "err", err, "retry", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		fc := &conn{c: rawio.Wrap(c)}
		if !s.track(fc) {
			c.Close()
			return http.ErrServerClosed
		}
		go s.serve(fc)
	}
}

func (s *Server) track(fc *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.conns[fc] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) forget(fc *conn) {
	s.mu.Lock()
	delete(s.conns, fc)
	s.mu.Unlock()
	s.wg.Done()
}

// setIdle marks fc as waiting for its next request (idle) or serving one;
// false if the front is draining or Shutdown closed fc (the connection
// should close). Lock-free: it runs twice a request. A connection that
// goes idle after Shutdown's look at it sees draining set.
func (s *Server) setIdle(fc *conn, idle bool) bool {
	if idle {
		return fc.state.CompareAndSwap(connActive, connIdle) && !s.draining.Load()
	}
	return fc.state.CompareAndSwap(connIdle, connActive)
}

// Shutdown stops accepting, closes idle connections, lets the requests
// in flight finish (their connections close after them) and waits for
// them until ctx ends; then it closes what is left. It shuts the fallback server down too.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	for _, ln := range s.lns {
		ln.Close()
	}
	for fc := range s.conns {
		if fc.state.CompareAndSwap(connIdle, connShut) {
			fc.c.Close()
		}
	}
	s.mu.Unlock()
	s.handoff.Close()
	fallback := make(chan error, 1)
	go func() { fallback <- s.cfg.Fallback.Shutdown(ctx) }()
	hop := make(chan error, 1)
	go func() {
		if s.cfg.Hop != nil {
			hop <- s.cfg.Hop.Shutdown(ctx)
		}
		close(hop)
	}()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		for fc := range s.conns {
			fc.state.Store(connShut)
			fc.c.Close()
		}
		s.mu.Unlock()
	}
	return errors.Join(err, <-fallback, <-hop)
}

// serve runs one connection: requests one after another until the
// client closes, a timeout, an error, a request for net/http, or drain.
func (s *Server) serve(fc *conn) {
	defer s.forget(fc)
	c := fc.c
	handedOff := false
	defer func() {
		if !handedOff {
			c.Close()
		}
	}()
	hto, ito := s.cfg.Fallback.ReadHeaderTimeout, s.cfg.Fallback.IdleTimeout
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
			s.log.Debug("front: TLS handshake", "remote", c.RemoteAddr(), "err", err)
			return
		}
		c.SetDeadline(time.Time{})
		cs := tc.ConnectionState()
		state = &cs
		if cs.NegotiatedProtocol != "" && cs.NegotiatedProtocol != "http/1.1" {
			if tcc, ok := tc.NetConn().(*tlsConn); ok {
				// Before net/http has it: from now on its writes go
				// through the stall cut (until it closes).
				tcc.h = new(handedWrites)
				s.watchHanded(tcc.h, tcc.Conn)
			}
			handedOff = s.handOver(c, nil, nil)
			return
		}
	}
	defer func() {
		if fc.cancel != nil {
			fc.cancel(errConnDone)
		}
	}()
	remote := c.RemoteAddr().String()
	in := &gate{Conn: c, fc: fc}
	br := bufio.NewReaderSize(in, bufferSize)
	bw := bufio.NewWriterSize(&stallWriter{c: c, fc: fc, s: s}, bufferSize)
	var w *response
	if s.cfg.Handler != nil {
		w = &response{s: s, bw: bw}
	}
	var read []byte // what br held before a request was parsed, to hand over
	for first := true; ; first = false {
		if !s.setIdle(fc, true) {
			return
		}
		c.SetReadDeadline(time.Now().Add(ito))
		if b, err := br.Peek(1); err != nil {
			return
		} else if first && b[0] == hop.Preface[0] && s.cfg.Hop != nil && state == nil {
			// Every HTTP request is as long as the preface: this
			// waits for no more than a request would send.
			if b, err := br.Peek(len(hop.Preface)); err == nil && string(b) == hop.Preface {
				if s.setIdle(fc, false) {
					c.SetReadDeadline(time.Time{})
					s.cfg.Hop.ServeConn(c, br)
				}
				return
			}
		}
		if !s.setIdle(fc, false) {
			return
		}
		// A head that came whole in one read (the common case) needs no
		// deadline of its own: one deadline per request is set, not
		// three. Its body, if any, is paced once it must be read from
		// the connection (watchedBody).
		buffered, _ := br.Peek(br.Buffered())
		n := headEnd(buffered)
		if n < 0 {
			c.SetReadDeadline(time.Now().Add(hto))
			var err error
			if n, err = fillHead(br); err != nil {
				if err == errHeadTooLarge {
					// net/http reads it (or refuses it).
					buffered, _ := br.Peek(br.Buffered())
					handedOff = s.handOver(c, bytes.NewReader(buffered), state)
				}
				return
			}
			c.SetReadDeadline(time.Now().Add(ito))
			buffered, _ = br.Peek(br.Buffered())
		}
		read = append(read[:0], buffered...)
		// The head is buffered whole: parsing it must read nothing more
		// from the connection, so that read is all there is to hand over.
		in.shut = true
		req, err := http.ReadRequest(br)
		in.shut = false
		if err != nil || !s.takes(req, read[:n]) {
			// net/http answers what it makes of it.
			handedOff = s.handOver(c, bytes.NewReader(read), state)
			return
		}
		req.TLS = state
		req.RemoteAddr = remote
		req = s.begin(fc, req, br)
		s.served.Add(1)
		var keep bool
		if w != nil {
			keep = s.handle(w, req)
		} else {
			keep = s.cfg.Serve(bw, req)
		}
		if gone := s.end(fc); !keep || gone {
			return
		}
	}
}

// Reusable reads away what is left of req's body (up to maxDiscard) and
// says whether the connection can serve another request after req's
// answer: the client did not ask to close, the body was read through,
// and the front is not draining. An answer's head says close when false.
func (s *Server) Reusable(req *http.Request) bool {
	keep := !req.Close
	if body := req.Body; body != nil && body != http.NoBody {
		n, err := io.CopyN(io.Discard, body, maxDiscard+1)
		keep = keep && err == io.EOF && n <= maxDiscard
	}
	return keep && !s.draining.Load()
}

// handle answers req with the Handler; false when the connection must
// close after it.
func (s *Server) handle(w *response, req *http.Request) (keep bool) {
	w.reset(req)
	defer func() {
		if v := recover(); v != nil {
			// As net/http: ErrAbortHandler ends the connection quietly,
			// anything else is logged; either way the client's answer
			// is cut off.
			if v != http.ErrAbortHandler {
				s.log.Error("front: handler panicked", "uri", req.RequestURI, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
			keep = false
		}
	}()
	s.cfg.Handler.ServeHTTP(w, req)
	return w.finish()
}

// gate is a connection that can refuse reads for a while, and that first
// gives back the byte a watcher read (watch.go).
type gate struct {
	net.Conn
	fc   *conn
	shut bool
}

var errShut = errors.New("front: no reads while the head is parsed")

func (g *gate) Read(p []byte) (int, error) {
	if g.shut {
		return 0, errShut
	}
	if g.fc.pending && len(p) > 0 {
		p[0] = g.fc.peek[0]
		g.fc.pending = false
		return 1, nil
	}
	return g.Conn.Read(p)
}

var errHeadTooLarge = errors.New("front: request head larger than the buffer")

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

// takes says whether the front answers req itself: an HTTP/1.1 request
// in origin form, with a body of known length, nothing that needs
// net/http's server (an upgrade, Expect) and nothing net/http would
// refuse; and Config.Takes agrees.
func (s *Server) takes(req *http.Request, head []byte) bool {
	if req.ContentLength < 0 || s.cfg.MaxBody > 0 && req.ContentLength > s.cfg.MaxBody {
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
	return s.cfg.Takes == nil || s.cfg.Takes(req)
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

// handOver gives c to the fallback server with the bytes already read
// from it (head and then br's buffer); false if the front is closing
// (c is then closed by the caller).
func (s *Server) handOver(c net.Conn, pre io.Reader, state *tls.ConnectionState) bool {
	hc := c
	var pc *prefixConn
	if pre != nil {
		// net/http writes through it: the stall cut goes on (an HTTP/1.0
		// client must not escape it). HTTP/2 is given the *tls.Conn
		// itself, which net/http needs to see (ServeTLS watches its
		// writes below TLS).
		pc = &prefixConn{Conn: c, r: io.MultiReader(pre, c), tls: state}
		s.watchHanded(&pc.handedWrites, c)
		hc = pc
	}
	// Counted before net/http has it (it may answer before this goroutine
	// runs again), and taken back if it does not.
	s.handed.Add(1)
	select {
	case s.handoff.conns <- hc:
		return true
	case <-s.handoff.closed:
		s.handed.Add(^uint64(0))
		if pc != nil {
			pc.forget() // the caller closes c
		}
		return false
	}
}

// prefixConn is a connection some of whose bytes were read already,
// written in steps the stall cut watches.
type prefixConn struct {
	net.Conn
	r   io.Reader
	tls *tls.ConnectionState
	handedWrites
}

func (c *prefixConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *prefixConn) Write(p []byte) (int, error) { return c.w.Write(p) }

func (c *prefixConn) Close() error {
	c.forget()
	return c.Conn.Close()
}

// handedWrites are the writes of a connection net/http serves, made in
// steps the stall cut watches (the connection is in s.handedConns) until
// forget.
type handedWrites struct {
	w    stallWriter
	once sync.Once
}

// watchHanded puts h, writing to c, in the stall cut's sight.
func (s *Server) watchHanded(h *handedWrites, c net.Conn) {
	h.w = stallWriter{c: c, fc: &conn{c: c}, s: s}
	s.mu.Lock()
	s.handedConns[h.w.fc] = struct{}{}
	s.mu.Unlock()
	s.startSweeper()
}

// forget takes h out of the stall cut's sight.
func (h *handedWrites) forget() {
	h.once.Do(func() {
		s := h.w.s
		s.mu.Lock()
		delete(s.handedConns, h.w.fc)
		s.mu.Unlock()
	})
}

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

// ServeTLS serves ln's connections over TLS with tc (whose NextProtos
// say whether HTTP/2 is offered), as Serve does a TLS listener, and keeps
// the stall cut on the HTTP/2 connections it hands to net/http: those
// net/http must see as the *tls.Conn itself, so the front cannot write
// for them above TLS, but it can below.
func (s *Server) ServeTLS(ln net.Listener, tc *tls.Config) error {
	return s.Serve(tls.NewListener(tlsListener{rawio.Listener(ln)}, tc))
}

type tlsListener struct{ net.Listener }

func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tlsConn{Conn: c}, nil
}

// tlsConn is a TLS connection's own connection, under TLS. Once handed
// to net/http as HTTP/2 (h set before net/http has it), its writes go in
// steps the stall cut watches, as a prefixConn's do, until it closes.
type tlsConn struct {
	net.Conn
	h *handedWrites // nil: written as it is
}

func (c *tlsConn) Write(p []byte) (int, error) {
	if c.h != nil {
		return c.h.w.Write(p)
	}
	return c.Conn.Write(p)
}

func (c *tlsConn) Close() error {
	if c.h != nil {
		c.h.forget()
	}
	return c.Conn.Close()
}
