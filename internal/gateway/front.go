package gateway

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/frostdev/frost/internal/front"
)

// NewFront returns the front that serves the gateway's app listeners
// (see package front): a plain HTTP/1.1 request is routed, sent to its
// node and answered on its connection's goroutine; any other connection
// goes to srv, an http.Server whose Handler is g. Through net/http's
// server and ReverseProxy a hop took twice the node's CPU per request,
// so a gateway on as many cores as the node did half its throughput.
//
// A request's body must be one the gateway can replay (at most
// MaxReplayBody bytes); a longer one streams through net/http.
func (g *Gateway) NewFront(srv *http.Server) *front.Server {
	var f *front.Server
	f = front.New(front.Config{
		Fallback:     srv,
		MaxBody:      g.cfg.MaxReplayBody,
		BodyTimeout:  g.cfg.BodyTimeout,
		StallTimeout: g.cfg.StallTimeout,
		Logger:       g.cfg.Logger,
		Serve: func(bw *bufio.Writer, req *http.Request) bool {
			return g.serveFront(f, bw, req)
		},
	})
	return f
}

// serveFront sends req to its node and writes the answer on bw; false when
// the connection must close after it.
func (g *Gateway) serveFront(f *front.Server, bw *bufio.Writer, req *http.Request) bool {
	g.requests.Add(1)
	client, _, _ := net.SplitHostPort(req.RemoteAddr)
	p, code, msg := g.route(req)
	if p == nil {
		return writeError(bw, code, msg, req, !f.Reusable(req))
	}
	out := req
	out.URL.Scheme, out.URL.Host = "http", "node"
	p.toNode(out, req, client)
	// The request's own body reads from the connection: it must not be
	// closed (and the connection with it) by the node's side.
	if req.Body != http.NoBody {
		out.Body = io.NopCloser(req.Body)
	}
	resp, inFlight, err := g.roundTrip(out, p)
	if errors.Is(err, front.ErrBodyTimeout) {
		return writeError(bw, http.StatusRequestTimeout, g.bodyTimedOut(err), req, true)
	}
	if err != nil && req.Context().Err() != nil {
		// The client went away while the node worked (the front's
		// watch): the node heard of it through the hop's reset or the
		// closed connection; nobody is left to answer.
		return false
	}
	if err != nil {
		g.failures.Add(1)
		msg := fmt.Sprintf("frost gateway: %s: no node answered (tried %v): %v", p.describe(), p.tried, err)
		return writeError(bw, http.StatusBadGateway, msg, req, !f.Reusable(req))
	}
	defer func() {
		resp.Body.Close()
		inFlight.Add(-1)
	}()
	// The rest of a body the node did not read must go before the next
	// request can be read.
	keep := f.Reusable(req) && !resp.Close
	return writeResponse(bw, req, resp, keep) && keep
}

// toNode turns out, a copy of the client's request req (or req itself),
// into the request its node is sent: its hop-by-hop fields and the
// gateway's own replay marks dropped, the gateway's X-Forwarded-* fields
// (the client's own replaced; their values in one slice of p's), the Host
// the route gives. client is the client's address.
func (p *plan) toNode(out, req *http.Request, client string) {
	out.RequestURI = ""
	removeHopHeaders(out.Header)
	delete(out.Header, CanReplayHeader)
	delete(out.Header, ReplayedHeader)
	proto := "http"
	if req.TLS != nil {
		proto = "https"
	}
	// The Host the client asked for, before a pinned route's rewrite.
	p.fwd = [4]string{req.Host, client, proto, ""}
	fwd := p.fwd[:]
	out.Header["X-Forwarded-Host"] = fwd[0:1:1]
	out.Header["X-Forwarded-For"] = fwd[1:2:2]
	out.Header["X-Forwarded-Proto"] = fwd[2:3:3]
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = fwd[3:4:4] // not Go's own
	}
	out.Host = cmp.Or(p.host, req.Host)
}

// writeResponse writes resp as the answer to req, its body as it comes
// (flushed after every read when its length is unknown); false if the
// client cannot be written to or the body failed midway.
func writeResponse(bw *bufio.Writer, req *http.Request, resp *http.Response, keep bool) bool {
	h := resp.Header
	if _, ok := h["Connection"]; ok {
		removeHopHeaders(h) // and the fields it names
	}
	bodyless := req.Method == http.MethodHead || !front.BodyAllowed(resp.StatusCode)
	chunked := resp.ContentLength < 0 && !bodyless
	front.WriteStatus(bw, resp.StatusCode, resp.Status)
	front.WriteHeaderExcept(bw, h, notForwarded)
	switch cl := h["Content-Length"]; {
	case resp.ContentLength >= 0 && !bodyless:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), resp.ContentLength, 10))
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
	if !chunked {
		return copyBody(bw, resp.Body, resp.ContentLength) && bw.Flush() == nil
	}
	// Unknown length: a stream goes out as it arrives.
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	for {
		n, err := resp.Body.Read(*buf)
		if n > 0 && (front.WriteChunk(bw, (*buf)[:n]) != nil || bw.Flush() != nil) {
			return false
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return false
		}
	}
	front.WriteLastChunk(bw, resp.Trailer)
	return bw.Flush() == nil
}

// copyBody copies body to its end onto bw, reading straight into bw's
// free space; false if it was not n bytes long or failed.
func copyBody(bw *bufio.Writer, body io.Reader, n int64) bool {
	var copied int64
	for copied <= n {
		if bw.Available() == 0 && bw.Flush() != nil {
			return false
		}
		free := bw.AvailableBuffer()[:bw.Available()]
		m, err := body.Read(free)
		bw.Write(free[:m])
		copied += int64(m)
		if err == io.EOF {
			return copied == n
		}
		if err != nil {
			return false
		}
	}
	return false
}

// writeError answers with code and msg as text; false if the client
// cannot be written to.
func writeError(bw *bufio.Writer, code int, msg string, req *http.Request, closing bool) bool {
	front.WriteStatus(bw, code, "")
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

// isHopHeader says whether name is a header of one connection, not to be
// forwarded (RFC 9110, 7.6.1).
func isHopHeader(name string) bool {
	switch name {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// notForwarded says whether an answer's field stays at the gateway: the
// hop-by-hop ones, a replay request, and the length (the gateway frames
// the answer itself).
func notForwarded(name string) bool {
	return isHopHeader(name) || name == "Content-Length" || name == ReplayHeader
}

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
	for k := range h {
		if isHopHeader(k) {
			delete(h, k)
		}
	}
	if trailers {
		h["Te"] = []string{"trailers"}
	}
}
