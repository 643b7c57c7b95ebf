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
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				id, port, _ := target(addr, suffix)
				return m.Dial(ctx, id, port)
			},
			// A relay ends when its sandbox pauses; a kept-alive one
			// would fail the next request after a resume.
			DisableKeepAlives: true,
		},
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
