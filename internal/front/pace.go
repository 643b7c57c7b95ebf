package front

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// DefaultBodyTimeout is how long a request body served by net/http may go
// without a byte arriving before PaceBody cuts it: nginx's
// client_body_timeout.
const DefaultBodyTimeout = 60 * time.Second

// MinBodyRate and BodyGrace: past its first BodyGrace of waiting, a paced
// body must have come at MinBodyRate bytes a second on average over the
// time spent waiting for it (Kestrel's MinRequestBodyDataRate; the time
// the handler spends between reads is not counted). Variables for tests.
var (
	MinBodyRate int64 = 240
	BodyGrace         = 5 * time.Second
)

// ErrBodyTimeout is the error a paced body's Read returns once its client
// sent nothing for the timeout, or sent too slowly: the handler should
// answer 408.
var ErrBodyTimeout = errors.New("the request body stopped coming")

// PaceBody returns r's body, cut with ErrBodyTimeout when a read of it
// waits more than timeout (0: DefaultBodyTimeout) for the client or the
// body comes slower than MinBodyRate, for a request net/http serves (a
// chunked upload, HTTP/1.0, HTTP/2): net/http has no such limit of its
// own, only ReadTimeout, a bound on the whole request that would cut a
// long upload too. Without it a client that starts a body and then sends
// a byte a minute, or none, holds its handler (and the app's concurrency
// slot it took) for as long as it likes. A request the front answers
// itself is paced by the front (Config.BodyTimeout): its body is
// returned as it is, as is any body whose writer cannot set read
// deadlines.
//
// Each read sets a read deadline (a timer); it is cleared once the body
// ends, so that net/http's own read of the connection after the body is
// not cut, and left in the past once the body is cut.
func PaceBody(w http.ResponseWriter, r *http.Request, timeout time.Duration) io.ReadCloser {
	if r.Body == nil || r.Body == http.NoBody {
		return r.Body
	}
	// net/http's writers, HTTP/1.x and HTTP/2, have the method (what
	// http.ResponseController calls); the front's and a hop's do not.
	d, ok := w.(deadliner)
	if !ok {
		return r.Body
	}
	if timeout <= 0 {
		timeout = DefaultBodyTimeout
	}
	return &pacedBody{body: r.Body, rc: d, pace: pace{timeout: timeout}}
}

// pace is a body's progress against the two rules: no read waits more
// than timeout, and past BodyGrace of waiting the body has come at
// MinBodyRate on average over the time spent waiting.
type pace struct {
	timeout time.Duration
	n       int64         // bytes read
	waited  time.Duration // in reads, waiting for them
}

// allow is how long the next read may wait, and whether the rate, not
// the gap, sets it; at most 0: the body is too slow already.
func (p *pace) allow() (time.Duration, bool) {
	credit := BodyGrace + time.Duration(p.n)*time.Second/time.Duration(MinBodyRate) - p.waited
	if credit < p.timeout {
		return credit, true
	}
	return p.timeout, false
}

// cut is the error a read that ran out of what allow gave ends with.
func (p *pace) cut(byRate bool) error {
	if byRate {
		return fmt.Errorf("%w: it came slower than %d bytes a second", ErrBodyTimeout, MinBodyRate)
	}
	return fmt.Errorf("%w: nothing for %v", ErrBodyTimeout, p.timeout)
}

// read reads body with the deadline allow gives, set by setDeadline.
func (p *pace) read(body io.Reader, b []byte, setDeadline func(time.Time) error) (int, error) {
	allow, byRate := p.allow()
	if allow <= 0 {
		return 0, p.cut(byRate)
	}
	start := time.Now()
	setDeadline(start.Add(allow))
	n, err := body.Read(b)
	p.waited += time.Since(start)
	p.n += int64(n)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = p.cut(byRate)
	}
	return n, err
}

type deadliner interface{ SetReadDeadline(time.Time) error }

type pacedBody struct {
	body io.ReadCloser
	rc   deadliner
	pace pace
	done bool
	cut  atomic.Pointer[error] // the error it was cut with, if it was
}

// Cut returns the error body, as PaceBody returned it, was cut with (one
// that wraps ErrBodyTimeout), or nil. A handler that does not read the
// body itself needs it: net/http cancels the request's context when a
// read of its connection fails, so what reads the body for it (a proxy's
// transport) may see only that.
func Cut(body io.Reader) error {
	if b, ok := body.(*pacedBody); ok {
		if err := b.cut.Load(); err != nil {
			return *err
		}
	}
	return nil
}

func (b *pacedBody) Read(p []byte) (int, error) {
	if b.done {
		return b.body.Read(p)
	}
	n, err := b.pace.read(b.body, p, b.rc.SetReadDeadline)
	if err != nil {
		b.done = true
		if errors.Is(err, ErrBodyTimeout) {
			b.cut.Store(&err)
			// The connection is done for: the deadline stays in the
			// past. Cleared, net/http would wait for the rest of the
			// body before it answers (it reads what a handler left
			// unread, up to 256 KiB, to keep the connection), for as
			// long as the client sends nothing.
			b.rc.SetReadDeadline(aLongTimeAgo)
		} else {
			b.rc.SetReadDeadline(time.Time{})
		}
	}
	return n, err
}

func (b *pacedBody) Close() error { return b.body.Close() }

// BoundDrain wraps h, a handler net/http serves, so that what a request
// left unread of its body when h returned is waited for at most d (0:
// BodyGrace). net/http reads up to 256 KiB of an unread body after the
// handler, to keep the connection, before it sends the answer the
// handler wrote: a client that declared a body, sent part of it and
// stalled would get no answer and hold the connection for as long as it
// liked, after any answer that does not read the body (a 503 at an app's
// concurrency limit, a 401, a 400 for a bad path). After d that read
// fails, and net/http answers and closes the connection.
func BoundDrain(h http.Handler, d time.Duration) http.Handler {
	if d <= 0 {
		d = BodyGrace
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.ContentLength != 0 {
			// Hijacked (an upgrade) or HTTP/2 (a stream of its own):
			// an error or nothing to bound, either is fine.
			http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		}
	})
}
