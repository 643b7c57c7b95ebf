package hop

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Transport sends requests over hop connections, a few to each address,
// each shared by up to MaxStreams requests.
type Transport struct {
	// Dial makes a connection. Its context carries the values of the
	// request that needed it but not its cancellation (the connection is
	// for every request to the address): Dial must bound the time itself.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// MaxConns is the most connections to one address (0: 4); a new one
	// is opened when each has Spread requests in flight (0: 32).
	MaxConns, Spread int

	// IdleTimeout closes a connection with nothing in flight for this
	// long (0: 60 s).
	IdleTimeout time.Duration

	mu      sync.Mutex
	conns   map[string][]*clientConn
	dialing map[string]*dial // the dial to an address under way
	sweeper *time.Timer
}

// dial is a connection being made; done is closed when it is.
type dial struct {
	done chan struct{}
	cc   *clientConn // the new connection, or nil and err
	err  error
}

// ErrNotSent wraps the error of a request that never reached the node:
// it can be sent again, elsewhere, whatever its method.
var ErrNotSent = errors.New("hop: request not sent")

type notSent struct{ err error }

func (e notSent) Error() string        { return "hop: request not sent: " + e.err.Error() }
func (e notSent) Is(target error) bool { return target == ErrNotSent }
func (e notSent) Unwrap() error        { return e.err }

// Takes says whether a hop can carry req: a body of known length up to
// MaxBody, no upgrade, no Expect.
func Takes(req *http.Request) bool {
	return req.ContentLength >= 0 && req.ContentLength <= MaxBody &&
		(req.ContentLength == 0 || req.Body != nil && req.Body != http.NoBody) &&
		len(req.TransferEncoding) == 0 && len(req.Trailer) == 0 &&
		req.Header["Upgrade"] == nil && req.Header["Expect"] == nil
}

// RoundTrip sends req to req.URL.Host and returns the answer once its
// head came; the body follows as it is read. req must be one Takes.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !Takes(req) {
		return nil, fmt.Errorf("hop: cannot carry %s %s (body of %d bytes, upgrade or expect)", req.Method, req.URL, req.ContentLength)
	}
	var body []byte
	if req.ContentLength > 0 {
		body = make([]byte, req.ContentLength)
		_, err := io.ReadFull(req.Body, body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("hop: request body: %w", err)
		}
	} else if req.Body != nil {
		req.Body.Close()
	}
	addr := req.URL.Host
	for try := 0; ; try++ {
		cc, err := t.conn(req.Context(), addr)
		if err != nil {
			return nil, err
		}
		resp, err := cc.roundTrip(req, body)
		// A connection that had closed or gone away before the request
		// was sent: once more on another.
		if err != nil && errors.Is(err, ErrNotSent) && try == 0 && req.Context().Err() == nil {
			continue
		}
		return resp, err
	}
}

// conn returns the connection to addr with the fewest requests in flight,
// or a new one.
func (t *Transport) conn(ctx context.Context, addr string) (*clientConn, error) {
	maxConns, spread := cmpOr(t.MaxConns, 4), cmpOr(t.Spread, 32)
	t.mu.Lock()
	var best *clientConn
	l := t.conns[addr]
	for i := 0; i < len(l); i++ {
		cc := l[i]
		if !cc.usable() {
			l = append(l[:i], l[i+1:]...)
			i--
			continue
		}
		if best == nil || cc.inFlight() < best.inFlight() {
			best = cc
		}
	}
	if t.conns == nil {
		t.conns = map[string][]*clientConn{}
	}
	t.conns[addr] = l
	dialing := t.dialing[addr]
	if best != nil && (best.inFlight() < spread || len(l) >= maxConns || dialing != nil) {
		t.mu.Unlock()
		return best, nil
	}
	if dialing != nil {
		// The first connection to addr is being made: wait for it.
		t.mu.Unlock()
		select {
		case <-dialing.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if dialing.err != nil {
			return nil, dialing.err
		}
		return t.conn(ctx, addr)
	}
	d := &dial{done: make(chan struct{})}
	if t.dialing == nil {
		t.dialing = map[string]*dial{}
	}
	t.dialing[addr] = d
	t.mu.Unlock()
	// The connection is for every request to addr, not this one's alone:
	// a client that leaves must not end the dial (the others waiting on it
	// would fail, the node taken for unreachable). Dial bounds it.
	go t.dial(context.WithoutCancel(ctx), addr, d)
	select {
	case <-d.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if d.cc == nil {
		if best != nil {
			return best, nil
		}
		return nil, d.err
	}
	return d.cc, nil
}

// dial makes a connection to addr for d and adds it to the pool.
func (t *Transport) dial(ctx context.Context, addr string, d *dial) {
	c, err := t.Dial(ctx, "tcp", addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.dialing, addr)
	defer close(d.done)
	if err != nil {
		d.err = err
		return
	}
	d.cc = &clientConn{t: t, c: c, br: bufio.NewReaderSize(c, 64<<10), w: writer{w: c}, streams: map[uint32]*clientStream{}, used: time.Now()}
	d.cc.w.buf = append(d.cc.w.buf, Preface...)
	t.conns[addr] = append(t.conns[addr], d.cc)
	if t.sweeper == nil {
		t.sweeper = time.AfterFunc(t.idleTimeout(), t.sweep)
	}
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleTimeout > 0 {
		return t.IdleTimeout
	}
	return 60 * time.Second
}

// sweep closes the connections idle for IdleTimeout (a node that left
// would otherwise keep them open), and comes back while any are left.
func (t *Transport) sweep() {
	cutoff := time.Now().Add(-t.idleTimeout())
	t.mu.Lock()
	defer t.mu.Unlock()
	left := 0
	for addr, l := range t.conns {
		keep := l[:0]
		for _, cc := range l {
			if cc.closeIdle(cutoff) {
				continue
			}
			keep = append(keep, cc)
		}
		clear(l[len(keep):])
		if len(keep) == 0 {
			delete(t.conns, addr)
		} else {
			t.conns[addr] = keep
			left += len(keep)
		}
	}
	t.sweeper = nil
	if left > 0 {
		t.sweeper = time.AfterFunc(t.idleTimeout(), t.sweep)
	}
}

// clientConn is one hop connection.
type clientConn struct {
	t  *Transport
	c  net.Conn
	br *bufio.Reader
	w  writer

	mu      sync.Mutex
	streams map[uint32]*clientStream
	next    uint32 // the last request's number
	reading bool   // a goroutine reads the connection
	waiters []*clientStream
	err     error     // the connection failed: every stream ends with it
	goaway  bool      // the node takes no more requests
	last    uint32    // with goaway: the last request the node serves
	used    time.Time // when the last stream ended
}

func (cc *clientConn) usable() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.err == nil && !cc.goaway && cc.next < 1<<31
}

func (cc *clientConn) inFlight() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return len(cc.streams)
}

// closeIdle closes cc if nothing is in flight and it was last used
// before cutoff, or it failed; true when closed.
func (cc *clientConn) closeIdle(cutoff time.Time) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.err == nil && (len(cc.streams) > 0 || cc.used.After(cutoff)) {
		return false
	}
	cc.failLocked(errClosed)
	return true
}

// clientStream is one request's state on its connection, under cc.mu.
type clientStream struct {
	id      uint32
	wake    chan struct{}
	resp    *http.Response // the head, once it came
	data    [][]byte       // body frames not yet read
	end     bool           // the body's last frame came
	err     error
	waiting bool
	taken   int   // body bytes read since the last window frame
	whole   int64 // the body's length when it came with the head, else -1

	// Room for what a stream has one of: allocated with it.
	head    http.Response
	body    clientBody
	dataBuf [1][]byte
}

// roundTrip sends req with body on cc and waits for the answer's head.
func (cc *clientConn) roundTrip(req *http.Request, body []byte) (*http.Response, error) {
	st := &clientStream{wake: make(chan struct{}, 1), whole: -1}
	st.data = st.dataBuf[:0]
	cc.mu.Lock()
	if cc.err != nil || cc.goaway || len(cc.streams) >= MaxStreams {
		err := cmp.Or(cc.err, errClosed)
		cc.mu.Unlock()
		return nil, notSent{err}
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	// Numbered and added under cc.mu: the node sees requests in the
	// order of their numbers.
	cc.next++
	st.id = cc.next
	cc.streams[st.id] = st
	added := cc.w.add(frameRequest, 0, st.id, func(b []byte) []byte {
		b = appendString(b, req.Method)
		b = appendString(b, req.URL.RequestURI())
		b = appendString(b, host)
		b = appendHeader(b, req.Header)
		return append(b, body...)
	})
	if !added {
		delete(cc.streams, st.id)
		cc.idleLocked()
		cc.mu.Unlock()
		return nil, notSent{errClosed}
	}
	others := len(cc.streams) > 1
	cc.mu.Unlock()
	if err := cc.w.flush(others); err != nil {
		cc.fail(err)
	}
	stop := func() bool { return true }
	if req.Context().Done() != nil {
		stop = context.AfterFunc(req.Context(), func() { cc.reset(st, req.Context().Err()) })
	}
	cc.wait(st, func() bool { return st.resp != nil || st.err != nil })
	cc.mu.Lock()
	resp, err := st.resp, st.err
	if resp == nil {
		delete(cc.streams, st.id)
		cc.idleLocked()
	}
	cc.mu.Unlock()
	if resp == nil {
		stop()
		return nil, err
	}
	resp.Request = req
	// A HEAD answer keeps the length the GET's body would have.
	if req.Method != http.MethodHead {
		delete(resp.Header, "Content-Length")
		if st.whole >= 0 {
			resp.ContentLength = st.whole
		}
	}
	b := &st.body
	*b = clientBody{cc: cc, st: st, stop: stop}
	if b.empty() {
		b.Close()
		resp.Body = http.NoBody
	} else {
		resp.Body = b
	}
	return resp, nil
}

// wait returns once ready (called under cc.mu) holds, reading the
// connection itself while no other goroutine does.
func (cc *clientConn) wait(st *clientStream, ready func() bool) {
	cc.mu.Lock()
	for !ready() {
		if cc.err != nil {
			// Failed while this stream was not on it (it cannot be:
			// failLocked ends every stream), to be sure of no spin.
			st.err = cmp.Or(st.err, cc.err)
			break
		}
		if !cc.reading {
			cc.reading = true
			cc.read(ready)
			cc.reading = false
			continue
		}
		st.waiting = true
		cc.waiters = append(cc.waiters, st)
		cc.mu.Unlock()
		<-st.wake
		cc.mu.Lock()
		st.waiting = false
	}
	// Someone must read for those still waiting.
	if !cc.reading {
		cc.handOver()
	}
	cc.mu.Unlock()
}

// handOver wakes a waiting stream to read in this one's place; under
// cc.mu.
func (cc *clientConn) handOver() {
	for len(cc.waiters) > 0 {
		st := cc.waiters[0]
		cc.waiters[0] = nil
		cc.waiters = cc.waiters[1:]
		if st.waiting {
			signal(st.wake)
			return
		}
	}
}

// read reads frames and hands them to their streams until ready holds and
// nothing read is left unhandled, or the connection fails; called and
// returns under cc.mu, which it releases while reading.
func (cc *clientConn) read(ready func() bool) {
	var head [headSize]byte
	for cc.err == nil {
		cc.mu.Unlock()
		f, err := readFrame(cc.br, &head)
		cc.mu.Lock()
		if err == nil {
			err = cc.dispatch(f)
		}
		if err != nil {
			cc.failLocked(err)
			return
		}
		if ready() && cc.br.Buffered() == 0 {
			return
		}
	}
}

// dispatch hands f to its stream; under cc.mu.
func (cc *clientConn) dispatch(f frame) error {
	if f.typ == frameGoaway {
		cc.goaway, cc.last = true, f.stream
		for id, st := range cc.streams {
			if id > f.stream {
				st.err = notSent{errors.New("the node is going away")}
				delete(cc.streams, id)
				signal(st.wake)
			}
		}
		cc.idleLocked()
		return nil
	}
	st := cc.streams[f.stream]
	if st == nil {
		// A stream this side abandoned: what was on its way is dropped.
		if f.typ >= frameRequest && f.typ <= frameReset && f.stream <= cc.next {
			return nil
		}
		return fmt.Errorf("hop: %d frame for request %d, not in flight", f.typ, f.stream)
	}
	d := decoder{b: f.payload}
	switch f.typ {
	case frameResponse:
		if st.resp != nil {
			return fmt.Errorf("hop: second response for request %d", f.stream)
		}
		status := d.uvarint()
		h := d.header()
		if d.err != nil || status < 200 || status > 999 {
			return fmt.Errorf("hop: response for request %d: status %d: %v", f.stream, status, d.err)
		}
		resp := &st.head
		*resp = http.Response{
			Status:     statusText(int(status)),
			StatusCode: int(status),
			Proto:      "HTTP/1.1",
			ProtoMajor: 1,
			ProtoMinor: 1,
			Header:     h,
		}
		resp.ContentLength = -1
		if cl := h["Content-Length"]; len(cl) == 1 {
			if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
				resp.ContentLength = n
			}
		}
		if f.flags&flagEnd != 0 {
			st.end = true
			st.whole = int64(len(d.b))
		}
		for _, v := range h["Trailer"] {
			for name := range strings.SplitSeq(v, ",") {
				if name = http.CanonicalHeaderKey(strings.TrimSpace(name)); name != "" {
					if resp.Trailer == nil {
						resp.Trailer = http.Header{}
					}
					resp.Trailer[name] = nil
				}
			}
		}
		if len(d.b) > 0 {
			st.data = append(st.data, d.b)
		}
		st.resp = resp
	case frameData:
		if st.resp == nil || st.end {
			return fmt.Errorf("hop: data for request %d out of turn", f.stream)
		}
		if len(f.payload) > 0 {
			st.data = append(st.data, f.payload)
		}
		st.end = f.flags&flagEnd != 0
	case frameTrailers:
		h := d.header()
		if d.err != nil || st.resp == nil || st.end {
			return fmt.Errorf("hop: trailers for request %d: %v", f.stream, cmp.Or(d.err, errMalformed))
		}
		if st.resp.Trailer == nil {
			st.resp.Trailer = http.Header{}
		}
		for k, vv := range h {
			st.resp.Trailer[k] = vv
		}
		st.end = true
	case frameReset:
		st.err = fmt.Errorf("hop: the node reset request %d: %s", f.stream, d.string())
		delete(cc.streams, f.stream)
		cc.idleLocked()
	default:
		return fmt.Errorf("hop: frame type %d from a node", f.typ)
	}
	if st.end {
		delete(cc.streams, f.stream)
		cc.idleLocked()
	}
	signal(st.wake)
	return nil
}

// statusText is an http.Response's Status for code: "200 OK".
func statusText(code int) string {
	if code < len(statusTexts) && statusTexts[code] != "" {
		return statusTexts[code]
	}
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

// statusTexts holds the Status of every code with a standard reason
// phrase.
var statusTexts = func() (texts [600]string) {
	for code := range texts {
		if text := http.StatusText(code); text != "" {
			texts[code] = strconv.Itoa(code) + " " + text
		}
	}
	return texts
}()

// idleLocked notes when cc fell idle, and closes it once a goaway's last
// answer came.
func (cc *clientConn) idleLocked() {
	if len(cc.streams) == 0 {
		cc.used = time.Now()
		if cc.goaway {
			cc.failLocked(errClosed)
		}
	}
}

// fail ends cc and every stream on it with err.
func (cc *clientConn) fail(err error) {
	cc.mu.Lock()
	cc.failLocked(err)
	cc.mu.Unlock()
}

func (cc *clientConn) failLocked(err error) {
	if cc.err != nil {
		return
	}
	cc.err = err
	cc.w.fail(err)
	cc.c.Close()
	for id, st := range cc.streams {
		if !st.end {
			st.err = err
		}
		delete(cc.streams, id)
		signal(st.wake)
	}
}

// reset abandons st: the node hears of it, its waiter ends with err.
func (cc *clientConn) reset(st *clientStream, err error) {
	cc.mu.Lock()
	_, live := cc.streams[st.id]
	if live {
		delete(cc.streams, st.id)
		st.err = err
		signal(st.wake)
		cc.idleLocked()
	}
	cc.mu.Unlock()
	if live {
		cc.w.send(frameReset, 0, st.id, false, func(b []byte) []byte { return appendString(b, err.Error()) })
	}
}

// clientBody is an answer's body as it comes.
type clientBody struct {
	cc     *clientConn
	st     *clientStream
	stop   func() bool
	closed bool
}

func (b *clientBody) empty() bool {
	b.cc.mu.Lock()
	defer b.cc.mu.Unlock()
	return b.st.end && len(b.st.data) == 0
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errors.New("hop: read on a closed body")
	}
	cc, st := b.cc, b.st
	cc.wait(st, func() bool { return len(st.data) > 0 || st.end || st.err != nil })
	cc.mu.Lock()
	if len(st.data) == 0 {
		err := io.EOF
		if !st.end {
			err = cmp.Or(st.err, io.ErrUnexpectedEOF)
		}
		cc.mu.Unlock()
		return 0, err
	}
	n := copy(p, st.data[0])
	if n == len(st.data[0]) {
		st.data[0] = nil
		st.data = st.data[1:]
	} else {
		st.data[0] = st.data[0][n:]
	}
	update := 0
	if !st.end {
		st.taken += n
		if st.taken >= Window/2 {
			update, st.taken = st.taken, 0
		}
	}
	cc.mu.Unlock()
	if update > 0 {
		cc.w.send(frameWindow, 0, st.id, false, func(b []byte) []byte { return binary.AppendUvarint(b, uint64(update)) })
	}
	return n, nil
}

// Close ends the body; one closed before its end abandons the request.
func (b *clientBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	b.cc.mu.Lock()
	done := b.st.end || b.st.err != nil
	b.cc.mu.Unlock()
	if !done {
		b.cc.reset(b.st, errors.New("hop: body closed before its end"))
	}
	b.stop()
	return nil
}
