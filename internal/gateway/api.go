package gateway

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	wire "github.com/frostdev/frost/api"
)

// API returns the gateway's control API handler: GET /v1/health,
// GET /v1/nodes, GET /v1/status (every node's) and GET /metrics are the
// gateway's own;
// every other call goes to a node (calls about app NAME to NAME's node in
// ring order, so that a deploy compiles where the app will run; calls
// about a sandbox to the node that holds it; a new sandbox to a node
// picked at random), retried on the next node as the proxy's rules allow.
// Nodes check the token.
func (g *Gateway) API() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "role": "gateway", "domain": g.cfg.Domain, "nodes": len(g.view.Load().nodes)})
	})
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		if !g.authorized(r) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"code": "unauthorized", "message": "missing or wrong bearer token"})
			return
		}
		writeJSON(w, http.StatusOK, g.Nodes())
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics{g})
	reg.MustRegister(g.cfg.Collectors...)
	prom := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		// The gateway's own, not a node's: those are on each node's API.
		if !g.authorized(r) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"code": "unauthorized", "message": "missing or wrong bearer token"})
			return
		}
		prom.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		if !g.authorized(r) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"code": "unauthorized", "message": "missing or wrong bearer token"})
			return
		}
		writeJSON(w, http.StatusOK, g.status(r.Context()))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		g.requests.Add(1)
		v := g.view.Load()
		if len(v.nodes) == 0 {
			g.failures.Add(1)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"code": "no_nodes", "message": "the gateway knows no live node yet; start one with frost server --role node"})
			return
		}
		var nodes []string
		id := sandboxOfPath(r.URL.Path)
		if id != "" {
			// A sandbox's calls go to the node that holds it.
			nodes, _, _ = g.candidates(Route{Kind: KindSandbox, Sandbox: id, NodeTag: id[:TagLen]}, nil)
		} else {
			key := r.URL.Path
			if rest, ok := strings.CutPrefix(key, "/v1/apps/"); ok {
				key, _, _ = strings.Cut(rest, "/")
			}
			if isSandboxCreate(r) {
				// New sandboxes spread over the nodes: a random place
				// on the ring, not the path's (which is always the
				// same one).
				key = rand.Text()
			}
			nodes = g.demote(slices.Collect(v.ring.Walk(key)))
		}
		if g.cfg.PublicBase != "" {
			r.Header.Set(wire.PublicBaseHeader, g.cfg.PublicBase)
			if g.cfg.PublicTLSBase != "" {
				r.Header.Add(wire.PublicBaseHeader, g.cfg.PublicTLSBase)
			}
		}
		g.send(w, r, &plan{nodes: nodes, api: true, what: r.Method + " " + r.URL.Path, sandbox: id})
	})
	return mux
}

// status asks every live node for its status (GET /v1/status), in
// parallel, each for at most 3 seconds.
func (g *Gateway) status(ctx context.Context) wire.Status {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	nodes := g.Nodes()
	st := wire.Status{Role: "gateway", Nodes: make([]wire.Status, len(nodes))}
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			ns, err := g.nodeStatus(ctx, n.Node.APIAddr)
			if err != nil {
				ns = wire.Status{Role: "node", Error: err.Error()}
			}
			ns.Node = n.Node.Name
			st.Nodes[i] = ns
		})
	}
	wg.Wait()
	return st
}

func (g *Gateway) nodeStatus(ctx context.Context, addr string) (wire.Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/status", nil)
	if err != nil {
		return wire.Status{}, err
	}
	req.Header.Set("Authorization", "Bearer "+g.cfg.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return wire.Status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return wire.Status{}, fmt.Errorf("GET /v1/status: %s", resp.Status)
	}
	var st wire.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return wire.Status{}, fmt.Errorf("GET /v1/status: %w", err)
	}
	return st, nil
}

// isSandboxCreate says whether r creates a sandbox (Frost's API or E2B's).
func isSandboxCreate(r *http.Request) bool {
	switch strings.TrimSuffix(r.URL.Path, "/") {
	case "/v1/sandboxes", "/sandboxes", "/v2/sandboxes":
		return r.Method == http.MethodPost
	}
	return false
}

// sandboxOfPath returns the sandbox ID a control-API path is about
// (Frost's /v1/sandboxes/ID…, E2B's /sandboxes/ID… and /v2/sandboxes/ID…),
// or "".
func sandboxOfPath(p string) string {
	for _, prefix := range []string{"/v1/sandboxes/", "/v2/sandboxes/", "/sandboxes/"} {
		if rest, ok := strings.CutPrefix(p, prefix); ok {
			id, _, _ := strings.Cut(rest, "/")
			if validSandboxID(id) {
				return id
			}
		}
	}
	return ""
}

func (g *Gateway) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && g.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(g.cfg.Token)) == 1
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// TLSConfig returns the gateway's TLS configuration, its certificate
// from getCert: every handshake's server name is handed to Prewarm before
// the certificate is chosen, so the app's node starts waking it while the
// handshake and the request are still on their way.
func (g *Gateway) TLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			g.Prewarm(hello.ServerName)
			return getCert(hello)
		},
	}
}

// maxWarming bounds the apps pre-warmed within one second.
const maxWarming = 4096

// Prewarm asks the node an app's next request will most likely go to
// (the one the ring picks now) to wake the app, without waiting for the
// answer; at most once a second per app. A name that is not an app's is
// ignored.
func (g *Gateway) Prewarm(serverName string) {
	rt := Parse(serverName, g.cfg.Domain)
	if rt.Kind != KindApp && rt.Kind != KindPinned {
		return
	}
	nodes, _, err := g.candidates(rt, nil)
	if err != nil || len(nodes) == 0 {
		return
	}
	now := time.Now()
	g.mu.Lock()
	if last, ok := g.warming[rt.App]; ok && now.Sub(last) < time.Second {
		g.mu.Unlock()
		return
	}
	if len(g.warming) >= maxWarming {
		// Server names are the client's to choose: forget the old ones
		// rather than grow without bound.
		for app, last := range g.warming {
			if now.Sub(last) >= time.Second {
				delete(g.warming, app)
			}
		}
		if len(g.warming) >= maxWarming {
			g.mu.Unlock()
			return
		}
	}
	g.warming[rt.App] = now
	g.mu.Unlock()
	n, ok := g.view.Load().nodes[nodes[0]]
	if !ok {
		return
	}
	g.prewarms.Add(1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+n.APIAddr+"/v1/apps/"+rt.App+"/wake", nil)
		req.Header.Set("Authorization", "Bearer "+g.cfg.Token)
		resp, err := g.transport.RoundTrip(req)
		if err != nil {
			g.cfg.Logger.Debug("gateway: prewarm", "app", rt.App, "node", n.Name, "err", err)
			return
		}
		resp.Body.Close()
	}()
}
