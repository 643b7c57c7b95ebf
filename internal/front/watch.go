package front

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// A front reads nothing from a connection while its request is answered,
// so a client that goes away is noticed only when the answer is written.
// For an answer that takes long (a guest computing for seconds, a node
// that is slow to answer) that is too late: the node would go on working
// for nobody, holding one of the app's concurrent requests. So a request
// still running after watchAfter (and at most twice that) gets a watcher:
// a goroutine that reads the connection. End of file or an error means
// the client left (one that shut only its sending side counts as gone, as
// with net/http's server), and the request's context ends with
// ErrClientLeft: the runtime stops the guest, a gateway resets the
// request on its hop. A byte means the client sent more (a pipelined
// request): it is kept for the next read, and the request is not watched
// further. The request's body must have been read to its end first, else
// the watcher would take its bytes.
//
// One sweeper goroutine per front finds the requests to watch, every
// watchAfter: a request records the sweeper's tick count when it begins
// (one atomic store), so the many that end sooner cost no goroutine, no
// timer and no read, unlike net/http's server, which starts a read for
// every request.
//
// The same sweeper cuts clients that stop reading: answers are written in
// steps of at most stallStep bytes, each noting the tick it began at, and
// a connection whose write has not moved for Config.StallTimeout is
// closed (counted by Stalled). A client that reads slowly but steadily is
// not cut; one that takes nothing is, and with it what its answer held.
// Connections handed to net/http are written the same way (HTTP/1.x
// through prefixConn, HTTP/2 below TLS through tlsConn) and kept in sight
// until net/http closes them. A write deadline would do it
// too, but costs a timer reset per write.

// watchAfter is how often the sweeper looks for requests to watch.
const watchAfter = 250 * time.Millisecond

// watching marks conn.running while a watcher reads; cut marks
// conn.writing once the sweeper closed a stalled connection.
const (
	watching = -1
	cut      = -1
)

// stallStep is the most a connection's answer is written in one step.
const stallStep = 64 << 10

// DefaultStallTimeout is how long a connection's answer may go without
// its client taking any of it (Config.StallTimeout): nginx's send_timeout.
const DefaultStallTimeout = 60 * time.Second

// ErrClientLeft is the cause (context.Cause) of a request's context that
// ended because its client went away while it ran.
var ErrClientLeft = errors.New("the client went away")

// errConnDone ends the context of a connection that closed.
var errConnDone = errors.New("front: connection closed")

// aLongTimeAgo is a read deadline that stops a read at once.
var aLongTimeAgo = time.Unix(1, 0)

// begin notes that req starts on fc and returns it with fc's context.
func (s *Server) begin(fc *conn, req *http.Request, br *bufio.Reader) *http.Request {
	if fc.ctx == nil {
		fc.ctx, fc.cancel = context.WithCancelCause(context.Background())
		fc.watched = make(chan struct{}, 1)
	}
	if req.Body == nil || req.Body == http.NoBody {
		fc.bodyDone.Store(true)
	} else {
		fc.bodyDone.Store(false)
		req.Body = &watchedBody{ReadCloser: req.Body, fc: fc, br: br, pace: pace{timeout: s.cfg.BodyTimeout}}
	}
	fc.running.Store(s.epoch.Load() + 1)
	s.startSweeper()
	return req.WithContext(fc.ctx)
}

// startSweeper starts the sweeper if it does not run yet.
func (s *Server) startSweeper() {
	if !s.sweeping.Load() && s.sweeping.CompareAndSwap(false, true) {
		go s.sweep()
	}
}

// end notes that fc's request ended, stopping its watcher if it has one;
// true when the client went away (the connection must close).
func (s *Server) end(fc *conn) (gone bool) {
	if fc.running.Swap(0) == watching {
		fc.mu.Lock()
		fc.ended = true
		fc.c.SetReadDeadline(aLongTimeAgo)
		fc.mu.Unlock()
		<-fc.watched
		fc.ended = false
	}
	return fc.ctx.Err() != nil
}

// sweep ticks every watchAfter until the front has drained.
func (s *Server) sweep() {
	t := time.NewTicker(watchAfter)
	defer t.Stop()
	for range t.C {
		if !s.tick(s.epoch.Add(1)) {
			return
		}
	}
}

// tick is the sweeper's look at every connection at tick e: it starts a
// watcher for each request that began before the last tick, and closes
// each connection whose write has not moved for StallTimeout. False once
// the front has drained.
func (s *Server) tick(e int64) bool {
	stall := s.cfg.StallTimeout
	stallTicks := int64((stall + watchAfter - 1) / watchAfter)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() && len(s.conns) == 0 && len(s.handedConns) == 0 {
		return false
	}
	for fc := range s.conns {
		if r := fc.running.Load(); r > 0 && r < e && fc.bodyDone.Load() && fc.running.CompareAndSwap(r, watching) {
			go s.watch(fc)
		}
		s.cutStalled(fc, e, stallTicks, stall)
	}
	for fc := range s.handedConns {
		s.cutStalled(fc, e, stallTicks, stall)
	}
	return true
}

// cutStalled closes fc if its write has not moved for stallTicks ticks.
func (s *Server) cutStalled(fc *conn, e, stallTicks int64, stall time.Duration) {
	if w := fc.writing.Load(); w > 0 && e-w >= stallTicks && fc.writing.CompareAndSwap(w, cut) {
		s.stalled.Add(1)
		s.log.Debug("front: the client took none of its answer for too long", "remote", fc.c.RemoteAddr(), "after", stall)
		fc.c.Close()
	}
}

// watch reads fc until the client sends a byte, leaves, or the request
// ends (end stops the read with a past deadline).
func (s *Server) watch(fc *conn) {
	defer func() { fc.watched <- struct{}{} }()
	fc.mu.Lock()
	if fc.ended {
		fc.mu.Unlock()
		return
	}
	// No deadline while the request runs: its end sets one.
	fc.c.SetReadDeadline(time.Time{})
	fc.mu.Unlock()
	n, err := fc.c.Read(fc.peek[:])
	if n > 0 {
		fc.pending = true
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return
	}
	if errors.Is(err, net.ErrClosed) {
		// Shutdown closed it, not the client.
		fc.cancel(errConnDone)
		return
	}
	s.log.Debug("front: the client went away while its request ran", "remote", fc.c.RemoteAddr(), "err", err)
	fc.cancel(ErrClientLeft)
}

// watchedBody paces a request's body (pace.go) and notes when it was
// read to its end.
type watchedBody struct {
	io.ReadCloser
	fc   *conn
	br   *bufio.Reader // the connection's, the body's source
	pace pace
}

// Read reads the body; a read that must wait for the connection is paced
// (pace.go): its deadline, replacing the one the connection had while
// idle, is what the body's progress allows, so a long upload that keeps
// coming is not cut and one that stops is.
func (b *watchedBody) Read(p []byte) (int, error) {
	var n int
	var err error
	if b.br.Buffered() > 0 {
		n, err = b.ReadCloser.Read(p)
		b.pace.n += int64(n)
	} else {
		n, err = b.pace.read(b.ReadCloser, p, b.fc.c.SetReadDeadline)
	}
	if err == io.EOF {
		b.fc.bodyDone.Store(true)
	}
	return n, err
}

// stallWriter writes a connection's answers in steps of at most
// stallStep bytes, noting when each began for the sweeper.
type stallWriter struct {
	c  net.Conn
	fc *conn
	s  *Server
}

func (w *stallWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		w.fc.writing.Store(w.s.epoch.Load() + 1)
		m, err := w.c.Write(p[n:min(len(p), n+stallStep)])
		w.fc.writing.Store(0)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
