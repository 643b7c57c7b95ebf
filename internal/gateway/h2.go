package gateway

import (
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/frostdev/frost/internal/front"
)

// An HTTP/2 request (a browser's, over TLS) is forwarded the way the
// front forwards an HTTP/1.1 one: the gateway's own round trip, the
// answer copied onto the stream. httputil.ReverseProxy did the same with
// more work a request (a deep copy of the request, its query parsed
// again, a deeper stack for the stream's new goroutine to grow into
// each time): a sixth of the CPU the gateway spent on an HTTP/2
// request. HTTP/2 has no upgrades and no connection-specific fields, so
// nothing of ReverseProxy's is missed; the HTTP/1 requests net/http
// serves (upgrades above all) still go through it.

// forwardH2 sends r, an HTTP/2 request, along p and answers on w.
func (g *Gateway) forwardH2(w http.ResponseWriter, r *http.Request, p *plan) {
	// The server's request is not ours to change: a copy, with the
	// fields the node sees.
	out := new(http.Request)
	*out = *r
	u := *r.URL
	out.URL = &u
	out.URL.Scheme, out.URL.Host = "http", "node"
	out.Header = make(http.Header, len(r.Header)+4)
	maps.Copy(out.Header, r.Header)
	client, _, _ := net.SplitHostPort(r.RemoteAddr)
	p.toNode(out, r, client)
	out.Close = false
	if r.ContentLength == 0 {
		out.Body = http.NoBody
	} else {
		// Not to be closed by the node's side: the server owns it.
		out.Body = io.NopCloser(r.Body)
	}

	resp, inFlight, err := g.roundTrip(out, p)
	if err != nil {
		g.proxyError(w, r.WithContext(context.WithValue(r.Context(), keyPlan, p)), err)
		return
	}
	defer func() {
		resp.Body.Close()
		inFlight.Add(-1)
	}()
	if _, ok := resp.Header["Connection"]; ok {
		removeHopHeaders(resp.Header)
	}
	h := w.Header()
	for k, v := range resp.Header {
		if !notForwarded(k) {
			h[k] = v
		}
	}
	// The trailers the node declared are announced; any other that
	// comes is sent under http.TrailerPrefix.
	var declared map[string]bool
	if len(resp.Trailer) > 0 {
		declared = make(map[string]bool, len(resp.Trailer))
		for k := range resp.Trailer {
			declared[k] = true
		}
		h["Trailer"] = []string{strings.Join(slices.Sorted(maps.Keys(declared)), ", ")}
	}
	if resp.ContentLength >= 0 && front.BodyAllowed(resp.StatusCode) {
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	w.WriteHeader(resp.StatusCode)
	if err := copyStream(w, resp.Body, resp.ContentLength < 0); err != nil {
		// The client would take a cut answer for a whole one: reset the
		// stream instead.
		if r.Context().Err() == nil {
			g.cfg.Logger.Debug("gateway: the node's answer ended early", "err", err)
		}
		panic(http.ErrAbortHandler)
	}
	for k, v := range resp.Trailer {
		if declared[k] {
			h[k] = v
		} else {
			h[http.TrailerPrefix+k] = v
		}
	}
}

// copyStream copies body to w, flushing after every read when stream
// (its length unknown: an event stream, a long poll), else only at the
// end, when the handler returns.
func copyStream(w http.ResponseWriter, body io.Reader, stream bool) error {
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	rc := http.NewResponseController(w)
	for {
		n, err := body.Read(*buf)
		if n > 0 {
			if _, werr := w.Write((*buf)[:n]); werr != nil {
				return werr
			}
			if stream {
				if ferr := rc.Flush(); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
