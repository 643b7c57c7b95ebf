// Package hop carries the gateway's requests to a node many at a time
// over one TCP connection: framed, multiplexed, with flow control per
// request, so that the system calls of a hop are shared between the
// requests in flight.
//
// Over HTTP/1.1 a proxied request costs the gateway two writes and two
// reads more than it costs the node (read the client, write the node,
// read the node, write the client, with a wasted read before each wait):
// for a small answer, twice the node's CPU per request, so a gateway on
// as many cores as its node forwarded half of what the node answers
// direct. Over a hop connection the requests of many clients go to the
// node in one write and their answers come back in one read.
//
// The protocol. A client opens a TCP connection to the node's HTTP port
// and sends Preface; the node's front (package front) sees it and hands
// the connection to a Server. Then both sides send frames: a 10-byte head
// (payload length uint32, type byte, flags byte, stream uint32, big
// endian) and the payload. The client numbers its requests 1, 2, 3…
//
//	request   client → node: method, target, host, header, then the body
//	          (the whole of it: only bodies of known length up to
//	          MaxBody travel this way)
//	response  node → client: status, header, then the start of the body;
//	          flagEnd when that is all of it (the common case: one frame)
//	data      node → client: more of the body; flagEnd on the last
//	trailers  node → client: the trailer fields; the answer's end
//	reset     either way: the request is abandoned (a message says why)
//	window    client → node: the client took this many more bytes of
//	          the answer's body; the node sends at most Window bytes a
//	          request ahead of what the client took
//	goaway    node → client: no request numbered above the frame's
//	          stream will be served; those were not seen and may be
//	          sent again elsewhere
//
// Strings are a uvarint length and the bytes; a header is a uvarint
// count of fields, each a name and a value.
//
// Writes are combined: a goroutine with a frame to send appends it to the
// connection's buffer and, unless another goroutine is writing already,
// writes the buffer, with the frames others appended meanwhile (when other
// requests are in flight it yields first, so that the goroutines woken
// with it append theirs). Reads are
// led: no goroutine is dedicated to reading; a goroutine waiting for its
// answer reads the connection if no other is, and hands what it reads
// for others to them. A single request in flight thus costs what it does
// over HTTP/1.1: no goroutine wake-ups beyond its own.
package hop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
)

// Preface opens a hop connection.
const Preface = "FROST-HOP/1\r\n\r\n"

// MaxBody is the largest request body a hop carries.
const MaxBody = 1 << 20

// Window is how much of an answer's body the node sends ahead of what
// the client has taken.
const Window = 256 << 10

// MaxStreams is the most requests in flight on one connection.
const MaxStreams = 256

const (
	headSize = 10
	maxFrame = MaxBody + 64<<10 // a request with the largest body and its head
	maxChunk = 32 << 10         // the most body a node puts in one frame
)

const (
	frameRequest byte = 1 + iota
	frameResponse
	frameData
	frameTrailers
	frameReset
	frameWindow
	frameGoaway
)

const flagEnd byte = 1

// frame is one decoded frame.
type frame struct {
	typ, flags byte
	stream     uint32
	payload    []byte // its own: the reader does not reuse it
}

// readFrame reads one frame from r.
func readFrame(r io.Reader, head *[headSize]byte) (frame, error) {
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return frame{}, err
	}
	n := binary.BigEndian.Uint32(head[0:4])
	f := frame{typ: head[4], flags: head[5], stream: binary.BigEndian.Uint32(head[6:10])}
	if n > maxFrame {
		return f, fmt.Errorf("hop: frame of %d bytes (at most %d)", n, maxFrame)
	}
	if f.typ < frameRequest || f.typ > frameGoaway {
		return f, fmt.Errorf("hop: frame type %d", f.typ)
	}
	if n > 0 {
		f.payload = make([]byte, n)
		if _, err := io.ReadFull(r, f.payload); err != nil {
			return f, unexpected(err)
		}
	}
	return f, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendFrame appends a frame of type typ whose payload fill appends.
func appendFrame(b []byte, typ, flags byte, stream uint32, fill func([]byte) []byte) []byte {
	at := len(b)
	b = append(b, 0, 0, 0, 0, typ, flags)
	b = binary.BigEndian.AppendUint32(b, stream)
	if fill != nil {
		b = fill(b)
	}
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-headSize))
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendHeader(b []byte, h http.Header) []byte {
	n := 0
	for _, vv := range h {
		n += len(vv)
	}
	b = binary.AppendUvarint(b, uint64(n))
	for k, vv := range h {
		for _, v := range vv {
			b = appendString(b, k)
			b = appendString(b, v)
		}
	}
	return b
}

var errMalformed = errors.New("hop: malformed frame")

// decoder reads a payload's fields.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errMalformed
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errMalformed
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// header reads a header; names are kept as sent (the sender's
// http.Header has them canonical already). Its names and values share
// one string, and its values one slice: three allocations a header.
func (d *decoder) header() http.Header {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	// Each field takes at least two bytes.
	if n > uint64(len(d.b))/2 {
		d.err = errMalformed
		return nil
	}
	// Where the fields end, to copy them at once.
	size := 0
	for range 2 * n {
		l, k := binary.Uvarint(d.b[size:])
		if k <= 0 || l > uint64(len(d.b)-size-k) {
			d.err = errMalformed
			return nil
		}
		size += k + int(l)
	}
	fields := d.b[:size]
	all := string(fields)
	d.b = d.b[size:]
	h := make(http.Header, n)
	values := make([]string, n)
	at := 0
	next := func() string { // lengths read from fields, strings cut from all
		l, k := binary.Uvarint(fields[at:])
		at += k
		s := all[at : at+int(l)]
		at += int(l)
		return s
	}
	for i := range n {
		k, v := next(), next()
		if vv, ok := h[k]; ok {
			h[k] = append(vv, v)
			continue
		}
		values[i] = v
		h[k] = values[i : i+1 : i+1]
	}
	return h
}

// writer sends frames for many goroutines, combining them into as few
// writes as it can (see the package comment).
type writer struct {
	w io.Writer

	mu      sync.Mutex
	buf     []byte
	spare   []byte
	writing bool
	err     error  // the first write error; nothing is sent after it
	after   func() // runs once, after the frames added before it are written
}

// errClosed is what a writer answers after it failed.
var errClosed = errors.New("hop: connection closed")

// send appends one frame and sees it written, by this goroutine or by
// the one writing already (yield as for flush); an error says the frame
// was not sent (or not all of it).
func (w *writer) send(typ, flags byte, stream uint32, yield bool, fill func([]byte) []byte) error {
	if !w.add(typ, flags, stream, fill) {
		return errClosed
	}
	return w.flush(yield)
}

// add appends one frame to be written by the next flush; false when the
// writer failed before.
func (w *writer) add(typ, flags byte, stream uint32, fill func([]byte) []byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return false
	}
	w.buf = appendFrame(w.buf, typ, flags, stream, fill)
	return true
}

// flush writes what was added, unless another goroutine is writing
// already: that one writes it. With yield (other requests are in flight
// on the connection), goroutines made runnable by the same wake-up as
// this one (the requests of one batch of clients, the answers of one
// batch of requests) add theirs before the write. Not for a request
// alone: a yield wakes an idle thread, dear when there is nothing to
// combine.
func (w *writer) flush(yield bool) error {
	w.mu.Lock()
	if w.writing {
		w.mu.Unlock()
		return nil
	}
	w.writing = true
	w.mu.Unlock()
	if yield {
		runtime.Gosched()
	}
	w.mu.Lock()
	for len(w.buf) > 0 && w.err == nil {
		b := w.buf
		w.buf = w.spare[:0]
		w.mu.Unlock()
		_, err := w.w.Write(b)
		w.mu.Lock()
		if cap(b) <= 4*maxChunk {
			w.spare = b[:0]
		} else {
			w.spare = nil
		}
		if err != nil {
			w.err = err
		}
	}
	w.writing = false
	err := w.err
	after := w.after
	w.after = nil
	w.mu.Unlock()
	if after != nil {
		after()
	}
	return err
}

// then runs fn once every frame added so far is written (or the writer
// failed): closing a connection must not overtake frames another
// goroutine is writing.
func (w *writer) then(fn func()) {
	w.mu.Lock()
	w.after = fn
	w.mu.Unlock()
	w.flush(false)
}

// fail makes every later send fail.
func (w *writer) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}
