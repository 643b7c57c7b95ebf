package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"

	"github.com/frostdev/frost/api"
)

// TokenHeader carries a sandbox access token on a request to one of its
// ports; the query parameter TokenParam does too (for a browser), and so
// does E2B's traffic token header (for code written for E2B).
const (
	TokenHeader        = "X-Frost-Sandbox-Token"
	TokenParam         = "frost_token"
	TrafficTokenHeader = "E2b-Traffic-Access-Token"
)

// Ports returns the handler of sandbox ports on Frost's HTTP listener: a
// request for PORT-ID.DOMAIN with the sandbox's access token is proxied to
// PORT inside sandbox ID (resuming it if paused); a sandbox created with
// public ports needs no token. Every other request goes to next. HTTP/1.1, streaming and WebSocket upgrades pass through.
func (m *Manager) Ports(domain string, next http.Handler) http.Handler {
	suffix := "." + strings.ToLower(strings.TrimSuffix(domain, "."))
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = pr.In.Host
			q := pr.Out.URL.Query()
			if q.Has(TokenParam) {
				q.Del(TokenParam)
				pr.Out.URL.RawQuery = q.Encode()
			}
			pr.Out.Header.Del(TokenHeader)
			pr.Out.Header.Del(TrafficTokenHeader)
			pr.SetXForwarded()
		},
		Transport: newPortTransport(func(ctx context.Context, _, addr string) (net.Conn, error) {
			id, port, _ := target(addr, suffix)
			return m.Dial(ctx, id, port)
		}),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			status, msg := http.StatusBadGateway, err.Error()
			switch {
			case errors.Is(err, ErrNotFound), errors.Is(err, ErrGone):
				status = http.StatusNotFound
			case errors.Is(err, context.Canceled):
				return
			case errors.Is(err, ErrElsewhere):
				status = http.StatusServiceUnavailable
				if to := Holder(err); to != "" {
					w.Header().Set(api.ReplayHeader, to)
				}
			}
			http.Error(w, "frost: sandbox port: "+msg, status)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, port, ok := target(r.Host, suffix)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if to := m.HolderOf(r.Context(), id); to != "" {
			// In a cluster, another node holds it: the gateway re-sends.
			w.Header().Set(api.ReplayHeader, to)
			http.Error(w, fmt.Sprintf("frost: sandbox %s is held by node %s", id, to), http.StatusServiceUnavailable)
			return
		}
		if m.publicPorts(r.Context(), id) {
			proxy.ServeHTTP(w, r)
			return
		}
		tok := r.Header.Get(TokenHeader)
		if tok == "" {
			tok = r.Header.Get(TrafficTokenHeader)
		}
		if tok == "" {
			tok = r.URL.Query().Get(TokenParam)
		}
		if tok == "" {
			http.Error(w, fmt.Sprintf("frost: sandbox %s port %d needs its access token in the %s header or the %s query parameter", id, port, TokenHeader, TokenParam), http.StatusUnauthorized)
			return
		}
		if err := m.CheckToken(id, tok); err != nil {
			http.Error(w, "frost: "+err.Error(), http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	})
}

// portTransport sends requests to sandbox ports over kept-alive
// connections where a connection found closed costs nothing: a request
// that can be sent again (GET, HEAD, OPTIONS, TRACE, no body) is, by
// http.Transport, on a new connection. The server in the sandbox is
// anyone's, with its own idle timeout (Node's is 5 s, gunicorn's 2 s), and
// may close a connection just as a request goes out on it: a POST sent
// then would fail, so every other request gets a connection of its own,
// as all did before. Dial closes the connections of a sandbox that
// pauses, so none outlives the box it led to.
type portTransport struct {
	pooled, fresh *http.Transport
}

func newPortTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) portTransport {
	return portTransport{
		// A browser opens 6 connections to a host; a connection to a
		// server on the sandbox's loopback is a runsc exec (the agent's
		// relay), so idle ones are few and short-lived.
		pooled: &http.Transport{DialContext: dial, MaxIdleConns: 1024, MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second},
		fresh:  &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}
}

func (t portTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if (r.Body == nil || r.Body == http.NoBody) && (r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions || r.Method == http.MethodTrace) {
		return t.pooled.RoundTrip(r)
	}
	return t.fresh.RoundTrip(r)
}

// PortHosts returns a test for the hosts Ports serves: PORT-ID.DOMAIN,
// with or without a port.
func PortHosts(domain string) func(host string) bool {
	suffix := "." + strings.ToLower(strings.TrimSuffix(domain, "."))
	return func(host string) bool {
		_, _, ok := target(host, suffix)
		return ok
	}
}

// target parses PORT-ID.DOMAIN[:port].
func target(host, suffix string) (id string, port int, ok bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(host)
	label, found := strings.CutSuffix(host, suffix)
	if !found || strings.Contains(label, ".") {
		return "", 0, false
	}
	ps, id, found := strings.Cut(label, "-")
	// Only the exact shape of a sandbox ID (newID), so that an app
	// named like "8000-web" is never taken for a sandbox port.
	if !found || len(id) != idLen || !ValidID(id) {
		return "", 0, false
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 || strconv.Itoa(port) != ps {
		return "", 0, false
	}
	return id, port, true
}

// publicPorts says whether the sandbox's ports need no token. The answer
// never changes after create, so it is read from the registry once per
// sandbox and kept (a registry read per request would be a network round
// trip with etcd). Only sandboxes that exist are remembered.
func (m *Manager) publicPorts(ctx context.Context, id string) bool {
	m.mu.Lock()
	s := m.sbs[id]
	m.mu.Unlock()
	if s != nil {
		if v := s.public.Load(); v != 0 {
			return v == publicYes
		}
	}
	rec, err := m.reg.GetSandbox(ctx, id)
	if err != nil {
		return false
	}
	v := int32(publicNo)
	if rec.PublicPorts {
		v = publicYes
	}
	m.state(id).public.Store(v)
	return v == publicYes
}

// Values of sb.public.
const (
	publicNo  = 1
	publicYes = 2
)
