package hop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// Server serves hop connections with an http.Handler: each request on a
// goroutine of its own, with a context that ends when the client resets
// it or the connection goes.
type Server struct {
	Handler http.Handler
	Logger  *slog.Logger

	// IdleTimeout closes a connection with nothing in flight for this
	// long (0: 5 minutes; it may stay up to half as long again); a
	// client keeps its connections for less.
	IdleTimeout time.Duration

	mu       sync.Mutex
	conns    map[*serverConn]struct{}
	shutting bool
	sweeper  *time.Timer // while there are connections
}

type serverConn struct {
	s    *Server
	c    net.Conn
	w    writer
	ctx  context.Context
	stop context.CancelFunc

	mu      sync.Mutex
	streams map[uint32]*serverStream
	last    uint32 // the highest request number seen
	goaway  bool   // sent: no more requests are taken
	wg      sync.WaitGroup
	// Idle connections are found by the server's sweeper, not by a read
	// deadline (setting and clearing one around every request wakes the
	// runtime's network poller): active says a request began or ended
	// since its last look, quiet how many looks in a row found none.
	active bool
	quiet  int
}

type serverStream struct {
	id     uint32
	sc     *serverConn
	ctx    context.Context
	cancel context.CancelFunc
	credit int           // bytes of body the client takes ahead; under sc.mu
	wake   chan struct{} // credit came, or the stream was reset
	reset  bool          // under sc.mu
}

// ServeConn serves c until it closes, the client breaks the protocol, or
// Shutdown. br holds what was read from c already, Preface first.
func (s *Server) ServeConn(c net.Conn, br *bufio.Reader) {
	var pre [len(Preface)]byte
	if _, err := io.ReadFull(br, pre[:]); err != nil || string(pre[:]) != Preface {
		c.Close()
		return
	}
	// A larger buffer than the front's: one read takes many requests.
	buffered, _ := br.Peek(br.Buffered())
	r := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), c), 64<<10)
	ctx, stop := context.WithCancel(context.Background())
	sc := &serverConn{s: s, c: c, w: writer{w: c}, ctx: ctx, stop: stop, streams: map[uint32]*serverStream{}}
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[*serverConn]struct{}{}
	}
	s.conns[sc] = struct{}{}
	shutting := s.shutting
	if s.sweeper == nil {
		s.sweeper = time.AfterFunc(s.idleTimeout()/2, s.sweep)
	}
	s.mu.Unlock()
	if shutting {
		// Its requests are refused as unseen: the client sends them
		// elsewhere.
		sc.goAway()
	}
	err := sc.read(r)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.logger().Debug("hop: connection ends", "remote", c.RemoteAddr(), "err", err)
	}
	sc.w.fail(errClosed)
	stop()
	c.Close()
	sc.wg.Wait()
	s.mu.Lock()
	delete(s.conns, sc)
	s.mu.Unlock()
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return 5 * time.Minute
}

// sweep sends a goaway on every connection that had nothing in flight
// and no request for IdleTimeout, and comes back while any are left.
// It looks every half IdleTimeout; two quiet looks in a row make a
// connection idle.
func (s *Server) sweep() {
	s.mu.Lock()
	var idle []*serverConn
	for sc := range s.conns {
		sc.mu.Lock()
		switch {
		case sc.active || len(sc.streams) > 0:
			sc.active, sc.quiet = false, 0
		case !sc.goaway:
			if sc.quiet++; sc.quiet >= 2 {
				idle = append(idle, sc)
			}
		}
		sc.mu.Unlock()
	}
	s.sweeper = nil
	if len(s.conns) > 0 {
		s.sweeper = time.AfterFunc(s.idleTimeout()/2, s.sweep)
	}
	s.mu.Unlock()
	for _, sc := range idle {
		// Said before closing, so that a request on its way is known
		// unseen.
		sc.goAway()
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// read reads the client's frames until the connection ends (after a
// goaway, goawayLinger at most).
func (sc *serverConn) read(r *bufio.Reader) error {
	var head [headSize]byte
	for {
		f, err := readFrame(r, &head)
		if err != nil {
			return err
		}
		switch f.typ {
		case frameRequest:
			if err := sc.request(f); err != nil {
				return err
			}
		case frameWindow:
			d := decoder{b: f.payload}
			n := d.uvarint()
			if d.err != nil || n > Window {
				return fmt.Errorf("hop: window frame: %v", cmpErr(d.err, "too large"))
			}
			sc.mu.Lock()
			if st := sc.streams[f.stream]; st != nil {
				st.credit += int(n)
				signal(st.wake)
			}
			sc.mu.Unlock()
		case frameReset:
			sc.mu.Lock()
			if st := sc.streams[f.stream]; st != nil {
				st.reset = true
				st.cancel()
				signal(st.wake)
			}
			sc.mu.Unlock()
		default:
			return fmt.Errorf("hop: frame type %d from a client", f.typ)
		}
	}
}

func cmpErr(err error, msg string) string {
	if err != nil {
		return err.Error()
	}
	return msg
}

// request starts serving one request frame.
func (sc *serverConn) request(f frame) error {
	d := decoder{b: f.payload}
	method, target, host := d.string(), d.string(), d.string()
	h := d.header()
	if d.err != nil {
		return fmt.Errorf("hop: request %d: %w", f.stream, d.err)
	}
	body := d.b
	u, err := url.ParseRequestURI(target)
	if err != nil || method == "" || strings.ContainsAny(method, " \r\n") {
		return fmt.Errorf("hop: request %d: method %q, target %q", f.stream, method, target)
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if f.stream <= sc.last {
		return fmt.Errorf("hop: request %d after %d", f.stream, sc.last)
	}
	sc.last = f.stream
	if sc.goaway {
		return nil // the client learns it was not seen
	}
	sc.active = true
	if len(sc.streams) >= MaxStreams {
		return fmt.Errorf("hop: more than %d requests in flight", MaxStreams)
	}
	ctx, cancel := context.WithCancel(sc.ctx)
	st := &serverStream{id: f.stream, sc: sc, ctx: ctx, cancel: cancel, credit: Window, wake: make(chan struct{}, 1)}
	sc.streams[f.stream] = st
	req := &http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Host:          host,
		RequestURI:    target,
		RemoteAddr:    sc.c.RemoteAddr().String(),
		ContentLength: int64(len(body)),
		Body:          http.NoBody,
	}
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	sc.wg.Add(1)
	go st.serve(req.WithContext(ctx))
	return nil
}

// serve answers req with the server's handler.
func (st *serverStream) serve(req *http.Request) {
	sc := st.sc
	w := &responseWriter{st: st, req: req, h: http.Header{}}
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				sc.s.logger().Error("hop: handler panicked", "uri", req.RequestURI, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
			st.resetStream("the handler failed")
		}
		sc.mu.Lock()
		delete(sc.streams, st.id)
		sc.active = true
		goaway := sc.goaway && len(sc.streams) == 0
		sc.mu.Unlock()
		st.cancel()
		if goaway {
			// The connection's last answer went.
			sc.finish()
		}
		sc.wg.Done()
	}()
	sc.s.Handler.ServeHTTP(w, req)
	if err := w.finish(); err != nil {
		st.resetStream(err.Error())
	}
}

func (st *serverStream) resetStream(msg string) {
	st.sc.w.send(frameReset, 0, st.id, false, func(b []byte) []byte { return appendString(b, msg) })
}

// take waits for credit to send up to n bytes of body and takes it.
func (st *serverStream) take(n int) (int, error) {
	sc := st.sc
	sc.mu.Lock()
	for st.credit == 0 && !st.reset {
		sc.mu.Unlock()
		select {
		case <-st.wake:
		case <-st.ctx.Done():
		}
		sc.mu.Lock()
		if st.ctx.Err() != nil {
			break
		}
	}
	if st.reset || st.ctx.Err() != nil {
		sc.mu.Unlock()
		return 0, errReset
	}
	n = min(n, st.credit)
	st.credit -= n
	sc.mu.Unlock()
	return n, nil
}

var errReset = errors.New("hop: the client abandoned the request")

// others says whether more than one request is in flight on sc.
func (sc *serverConn) others() bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return len(sc.streams) > 1
}

// goAway tells the client that no request above the last one seen will
// be served.
func (sc *serverConn) goAway() {
	sc.mu.Lock()
	if sc.goaway {
		sc.mu.Unlock()
		return
	}
	sc.goaway = true
	last := sc.last
	idle := len(sc.streams) == 0
	sc.mu.Unlock()
	sc.w.send(frameGoaway, 0, last, false, nil)
	if idle {
		sc.finish()
	}
	// Else the last request's end does: the connection is read while
	// requests are in flight, however long they take (their clients'
	// window updates and resets come on it).
}

// finish ends a connection that went away once its last answer went:
// the node's side closes after that answer, and the client closes once
// it has it; the reading ends after goawayLinger anyway. Closing at once
// could lose the goaway frame to a reset: the client's requests may be
// on their way.
func (sc *serverConn) finish() {
	sc.c.SetReadDeadline(time.Now().Add(goawayLinger))
	sc.closeWrite()
}

// goawayLinger is how long a node reads on after a goaway and its last
// answer.
const goawayLinger = time.Second

// closeWrite ends the node's side of the connection: the client reads
// its end after the last answer.
func (sc *serverConn) closeWrite() {
	sc.w.then(func() {
		if tc, ok := sc.c.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		}
	})
}

// Shutdown stops taking requests and waits until those in flight are
// answered (or ctx ends: then their connections are closed).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutting = true
	conns := make([]*serverConn, 0, len(s.conns))
	for sc := range s.conns {
		conns = append(conns, sc)
	}
	s.mu.Unlock()
	for _, sc := range conns {
		sc.goAway()
	}
	for _, sc := range conns {
		done := make(chan struct{})
		go func() { sc.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			sc.c.Close()
		}
	}
	return ctx.Err()
}

// responseWriter is a request's http.ResponseWriter: the answer goes out
// in one response frame when it fits in the buffer by the handler's end,
// otherwise as it comes, within the client's window.
type responseWriter struct {
	st     *serverStream
	req    *http.Request
	h      http.Header
	status int         // 0 until the head is written
	snap   http.Header // the head's header until it is encoded
	head   []byte      // the response frame's fields, until it is sent
	sent   bool        // the response frame went
	body   []byte      // body not yet sent
	err    error
}

func (w *responseWriter) Header() http.Header { return w.h }

func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 || code < 200 {
		// 1xx answers do not cross a hop (the gateway skips them too).
		return
	}
	if code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	w.status = code
	// As net/http: the head is the header as it is now; Content-Type
	// is sniffed from the first write if it has none.
	w.snap = w.h.Clone()
}

// encodeHead fixes the head, sniffing the content type from p.
func (w *responseWriter) encodeHead(p []byte) {
	h := w.snap
	w.snap = nil
	if _, ok := h["Content-Type"]; !ok && len(p) > 0 && w.bodyAllowed() {
		h.Set("Content-Type", http.DetectContentType(p))
	}
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			h = h.Clone()
			for k := range h {
				if strings.HasPrefix(k, http.TrailerPrefix) {
					delete(h, k)
				}
			}
			break
		}
	}
	w.head = binary.AppendUvarint(nil, uint64(w.status))
	w.head = appendHeader(w.head, h)
}

func (w *responseWriter) bodyAllowed() bool {
	return w.req.Method != http.MethodHead && w.status != http.StatusNoContent && w.status != http.StatusNotModified
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
		w.snap = w.h // no copy: the head is fixed now
	}
	if w.snap != nil {
		w.encodeHead(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !w.bodyAllowed() {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	w.body = append(w.body, p...)
	if len(w.body) >= maxChunk {
		if err := w.flush(false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (w *responseWriter) Flush() { w.FlushError() }

func (w *responseWriter) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.flush(false)
}

// flush sends the head if not sent yet and the buffered body, within the
// client's window; end marks the answer's last frame.
func (w *responseWriter) flush(end bool) error {
	if w.err != nil {
		return w.err
	}
	if w.snap != nil {
		w.encodeHead(nil)
	}
	st := w.st
	for first := true; first || len(w.body) > 0; first = false {
		n := 0
		if len(w.body) > 0 {
			var err error
			if n, err = st.take(min(len(w.body), maxChunk)); err != nil {
				w.err = err
				return err
			}
		}
		flags := byte(0)
		if end && n == len(w.body) {
			flags = flagEnd
		}
		chunk := w.body[:n]
		typ, fill := frameData, func(b []byte) []byte { return append(b, chunk...) }
		if !w.sent {
			head := w.head
			typ, fill = frameResponse, func(b []byte) []byte { return append(append(b, head...), chunk...) }
			w.sent, w.head = true, nil
		}
		err := st.sc.w.send(typ, flags, st.id, st.sc.others(), fill)
		w.body = w.body[n:]
		if err != nil {
			w.err = err
			return err
		}
	}
	w.body = w.body[:0]
	return nil
}

// finish ends the answer after the handler returned: the rest of the
// body, then the trailers if any.
func (w *responseWriter) finish() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	trailers := w.trailers()
	if err := w.flush(trailers == nil); err != nil {
		return err
	}
	if trailers != nil {
		return w.st.sc.w.send(frameTrailers, flagEnd, w.st.id, false, func(b []byte) []byte { return appendHeader(b, trailers) })
	}
	return nil
}

// trailers are the fields the head announced in Trailer, and those set
// with http.TrailerPrefix; nil when none.
func (w *responseWriter) trailers() http.Header {
	var t http.Header
	for _, v := range w.h["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			name = http.CanonicalHeaderKey(strings.TrimSpace(name))
			if vv, ok := w.h[name]; ok && name != "" {
				if t == nil {
					t = http.Header{}
				}
				t[name] = vv
			}
		}
	}
	for k, vv := range w.h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			if t == nil {
				t = http.Header{}
			}
			t[http.CanonicalHeaderKey(name)] = vv
		}
	}
	return t
}

// signal wakes the goroutine waiting on c, if any, without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
