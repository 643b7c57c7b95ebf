package front

import (
	"bufio"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// response is the http.ResponseWriter a Handler gets: it writes the
// answer onto the connection's buffered writer. As net/http's does, it
// holds a short body back until the handler returns, so that the answer
// says its length; a longer one, or one flushed early, goes out chunked
// (unless the handler set Content-Length). Content-Type is sniffed and
// Date added when the handler set neither; trailers declared in Trailer,
// or set with http.TrailerPrefix, follow a chunked body.
//
// One response serves a connection's requests one after another; its
// header map is cleared, not reallocated, between them (a handler must
// not touch it after returning, as with net/http).
type response struct {
	s   *Server
	bw  *bufio.Writer
	req *http.Request
	h   http.Header

	status  int   // 0 until WriteHeader (or the first Write)
	length  int64 // the Content-Length the handler set, or -1
	wrote   int64 // body bytes the handler wrote
	buf     []byte
	num     [20]byte // for a Content-Length
	head    bool     // the head is written
	chunked bool
	keep    bool // the head did not say close
	failed  bool // a write to the client failed
}

var errClientGone = errors.New("front: the client connection failed")

func (w *response) reset(req *http.Request) {
	w.req = req
	if w.h == nil {
		w.h = http.Header{}
	} else {
		clear(w.h)
	}
	w.status, w.length, w.wrote = 0, -1, 0
	w.buf = w.buf[:0]
	w.head, w.chunked, w.keep, w.failed = false, false, false, false
}

// Header implements http.ResponseWriter.
func (w *response) Header() http.Header { return w.h }

// WriteHeader implements http.ResponseWriter. An informational status
// (1xx) goes out at once with the header as it stands.
func (w *response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic("front: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if w.status != 0 {
		return // superfluous, as net/http ignores it
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		if w.failed {
			return
		}
		WriteStatus(w.bw, code, "")
		WriteHeader(w.bw, w.h)
		w.bw.WriteString("\r\n")
		w.failed = w.bw.Flush() != nil
		return
	}
	w.status = code
	if cl := w.h["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			w.length = n
		} else {
			delete(w.h, "Content-Length") // as net/http drops an invalid one
		}
	}
}

// Write implements http.ResponseWriter.
func (w *response) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !BodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.failed {
		return 0, errClientGone
	}
	if w.length >= 0 && w.wrote+int64(len(p)) > w.length {
		return 0, http.ErrContentLength
	}
	w.wrote += int64(len(p))
	if !w.head {
		if len(w.buf)+len(p) <= bufferSize {
			w.buf = append(w.buf, p...)
			return len(p), nil
		}
		w.writeHead(false, p)
		if err := w.writeBody(w.buf); err != nil {
			return 0, err
		}
		w.buf = w.buf[:0]
	}
	if err := w.writeBody(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush implements http.Flusher.
func (w *response) Flush() { w.FlushError() }

// FlushError sends the head (if not yet sent) and what was written; it
// is what http.ResponseController's Flush calls.
func (w *response) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.head {
		w.writeHead(false, nil)
		w.writeBody(w.buf)
		w.buf = w.buf[:0]
	}
	if !w.failed && w.bw.Flush() != nil {
		w.failed = true
	}
	if w.failed {
		return errClientGone
	}
	return nil
}

// writeBody writes p as body bytes: discarded for HEAD, framed when
// chunked.
func (w *response) writeBody(p []byte) error {
	if w.failed {
		return errClientGone
	}
	if len(p) == 0 || w.req.Method == http.MethodHead {
		return nil
	}
	if w.chunked {
		w.failed = WriteChunk(w.bw, p) != nil
	} else {
		_, err := w.bw.Write(p)
		w.failed = err != nil
	}
	if w.failed {
		return errClientGone
	}
	return nil
}

// writeHead writes the status line and header; final when the handler
// has returned (all of the body is in buf). A Content-Type is sniffed
// from buf, or from next (the write that overflowed it) when buf is
// empty.
func (w *response) writeHead(final bool, next []byte) {
	w.head = true
	h := w.h
	// Framing is the front's to decide.
	delete(h, "Transfer-Encoding")
	if !BodyAllowed(w.status) {
		// As net/http: an answer without a body says no length, and a
		// 304 no type either.
		delete(h, "Content-Length")
		if w.status == http.StatusNotModified {
			delete(h, "Content-Type")
		}
		w.length = -1
	}
	closing := false
	for _, v := range h["Connection"] {
		closing = closing || strings.EqualFold(strings.TrimSpace(v), "close")
	}
	delete(h, "Connection")
	bodyless := w.req.Method == http.MethodHead || !BodyAllowed(w.status)
	_, trailers := h["Trailer"]
	if final {
		// A body read through (or thrown away) lets the connection stay.
		w.keep = w.s.Reusable(w.req) && !closing
	} else {
		// The handler may still read the body; whether the connection
		// stays is settled when it returns.
		w.keep = !w.req.Close && !w.s.draining.Load() && !closing
	}
	length := false // whether the front writes Content-Length itself
	switch {
	case w.length >= 0:
		// The handler's Content-Length goes out as it set it.
	case final && !trailers && BodyAllowed(w.status) && (w.req.Method != http.MethodHead || w.wrote > 0):
		length = true
		w.length = w.wrote
	case !bodyless:
		w.chunked = true
	}
	// As net/http: no sniffing an encoded body.
	if _, ok := h["Content-Type"]; !ok && BodyAllowed(w.status) && h.Get("Content-Encoding") == "" {
		sniff := w.buf
		if len(sniff) == 0 {
			sniff = next
		}
		if len(sniff) > 0 {
			h["Content-Type"] = []string{http.DetectContentType(sniff)}
		}
	}
	WriteStatus(w.bw, w.status, "")
	if w.chunked {
		WriteHeader(w.bw, h) // Trailer announces the trailers
	} else {
		WriteHeader(w.bw, h, "Trailer")
	}
	if _, ok := h["Date"]; !ok {
		w.bw.WriteString("Date: ")
		w.bw.WriteString(date())
		w.bw.WriteString("\r\n")
	}
	if length {
		w.bw.WriteString("Content-Length: ")
		w.bw.Write(strconv.AppendInt(w.num[:0], w.length, 10))
		w.bw.WriteString("\r\n")
	}
	if w.chunked {
		w.bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if !w.keep {
		w.bw.WriteString("Connection: close\r\n")
	}
	w.bw.WriteString("\r\n")
}

// finish completes the answer after the handler returned; false when
// the connection must close.
func (w *response) finish() bool {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.head {
		w.writeHead(true, nil)
		w.writeBody(w.buf)
	} else if !w.s.Reusable(w.req) {
		w.keep = false
	}
	if w.chunked && !w.failed {
		WriteLastChunk(w.bw, w.trailers())
	}
	if w.length >= 0 && w.wrote < w.length && w.req.Method != http.MethodHead && BodyAllowed(w.status) {
		// Shorter than it said: the client can only tell by the close.
		w.keep = false
	}
	if !w.failed && w.bw.Flush() != nil {
		w.failed = true
	}
	return w.keep && !w.failed
}

// trailers returns the trailers the handler declared in Trailer and
// those it set with http.TrailerPrefix.
func (w *response) trailers() http.Header {
	t := http.Header{}
	for _, v := range w.h["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if vv, ok := w.h[k]; ok {
				t[k] = vv
			}
		}
	}
	for k, vv := range w.h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			t[http.CanonicalHeaderKey(name)] = vv
		}
	}
	return t
}

// WriteChunk writes p as one chunk of a chunked body (p not empty).
func WriteChunk(bw *bufio.Writer, p []byte) error {
	bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
	bw.WriteString("\r\n")
	bw.Write(p)
	_, err := bw.WriteString("\r\n")
	return err
}

// WriteLastChunk ends a chunked body with its trailers.
func WriteLastChunk(bw *bufio.Writer, trailers http.Header) {
	bw.WriteString("0\r\n")
	WriteHeader(bw, trailers)
	bw.WriteString("\r\n")
}

// BodyAllowed says whether an answer with status may have a body (RFC
// 9110 6.4.1).
func BodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// WriteStatus writes the status line: status's reason phrase when it
// carries one (as http.Response.Status does), else the standard one.
func WriteStatus(bw *bufio.Writer, code int, status string) {
	if code >= 0 && code < len(statusLines) {
		// The common case: a standard status line, written whole.
		if line := statusLines[code]; line != "" && (status == "" || status == line[len("HTTP/1.1 "):len(line)-len("\r\n")]) {
			bw.WriteString(line)
			return
		}
	}
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

// statusLines holds the status line of every status with a standard
// reason phrase, "HTTP/1.1 200 OK\r\n" and so on.
var statusLines = func() (lines [600]string) {
	for code := range lines {
		if text := http.StatusText(code); text != "" {
			lines[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
		}
	}
	return lines
}()

// WriteHeader writes h's lines in map order (no sort: the order of
// header fields with different names carries no meaning), except those
// named in skip. As net/http's server does, it drops a name that is not
// a valid field name and writes a value's line breaks as spaces: a guest
// cannot inject header lines.
func WriteHeader(bw *bufio.Writer, h http.Header, skip ...string) {
	WriteHeaderExcept(bw, h, func(name string) bool { return slices.Contains(skip, name) })
}

// WriteHeaderExcept is WriteHeader, leaving out the fields whose names
// skip picks.
func WriteHeaderExcept(bw *bufio.Writer, h http.Header, skip func(name string) bool) {
	for k, vv := range h {
		if skip(k) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			if strings.ContainsAny(v, "\r\n") {
				v = newlineToSpace.Replace(v)
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(strings.TrimSpace(v))
			bw.WriteString("\r\n")
		}
	}
}

var newlineToSpace = strings.NewReplacer("\r", " ", "\n", " ")

// dateNow is the Date header's value, refreshed by a clock tick rather
// than a clock read per answer (clock reads are dear on some VMs).
var dateNow atomic.Pointer[string]

var dateOnce atomic.Bool

// date returns the current HTTP date, starting its refresher on first
// use.
func date() string {
	if d := dateNow.Load(); d != nil {
		return *d
	}
	if dateOnce.CompareAndSwap(false, true) {
		go func() {
			for {
				now := time.Now()
				d := now.UTC().Format(http.TimeFormat)
				dateNow.Store(&d)
				time.Sleep(time.Second - time.Duration(now.Nanosecond()))
			}
		}()
	}
	return time.Now().UTC().Format(http.TimeFormat)
}
