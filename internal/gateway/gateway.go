// Package gateway routes a cluster's traffic to its nodes. It reads where
// a request goes from its hostname (route.go): an app's requests go to the
// node consistent hashing with bounded loads picks for the app's name, so
// they land where the app is warm while that node is not overloaded and
// spill along the ring when it is; a pinned name or a sandbox's ID names
// its node outright. No request reads the registry: membership arrives by
// watch and is kept in memory.
//
// The gateway proxies HTTP/1.1 and HTTP/2 (from clients), streaming
// bodies and WebSocket upgrades to nodes over HTTP/1.1. It retries on the
// next node in ring order only when that is safe: the request never
// reached a node (the dial failed), or it is idempotent and its body could
// be replayed. A node may answer with a Frost-Replay header naming another
// node; the gateway re-sends the request there once. During a TLS
// handshake, the server name tells the gateway which app is coming, and it
// asks the app's node to wake it before the request arrives (Prewarm).
//
// The app listeners are served by a Front (front.go): plain HTTP/1.1
// requests are proxied on their connection's goroutine, any other
// connection is handed, with what was read from it, to net/http.
package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/front"
	"github.com/frostdev/frost/internal/hop"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/ring"
)

// ReplayHeader, on a node's answer, names the node the gateway should
// re-send the request to (once). On requests to nodes, CanReplayHeader
// says the gateway could re-send this one (a node then may ask it to),
// and ReplayedHeader marks the re-sent request (a node then serves it).
const (
	ReplayHeader    = api.ReplayHeader
	CanReplayHeader = "Frost-Can-Replay"
	ReplayedHeader  = "Frost-Replayed"
)

// Members is the source of cluster membership: the registry.
type Members interface {
	WatchNodes(ctx context.Context, fn func([]registry.Node)) error
}

// Config configures a gateway.
type Config struct {
	// Domain is what app and sandbox hostnames end in.
	Domain string
	// Members feeds Run the cluster's membership.
	Members Members
	// Token authorises the gateway's calls to nodes' APIs (prewarm).
	Token string
	// PublicBase is the scheme and host:port apps answer at through this
	// gateway ("http://localhost:8080"). The control-API calls it forwards
	// carry it (api.PublicBaseHeader), so that nodes' answers give app and
	// sandbox-port URLs through the gateway. "" leaves nodes' own URLs.
	PublicBase string
	// PublicTLSBase is the same for the gateway's TLS listener
	// ("https://localhost:8443"), "" without one: sent as the header's
	// second value, it is the domain E2B's SDK is told to reach
	// sandboxes under.
	PublicTLSBase string
	// LoadFactor is the bounded-load factor c: no node takes more than c
	// times the average in-flight load (default 1.25).
	LoadFactor float64
	// MaxReplayBody is the largest request body kept so that the request
	// can be re-sent to another node (default 1 MiB); a larger body is
	// streamed, and its request is retried only if the dial failed.
	MaxReplayBody int64
	// Attempts caps the nodes tried for one request (default 3).
	Attempts int
	// BodyTimeout cuts a request body that goes this long without a byte
	// (or comes slower than front.MinBodyRate): 408 (0:
	// front.DefaultBodyTimeout), its front's and those net/http serves.
	// Cut here, it frees the node's slot too.
	BodyTimeout time.Duration
	// StallTimeout closes a connection of its fronts whose client took
	// none of its answer for this long (0: front.DefaultStallTimeout).
	StallTimeout time.Duration
	// NoHop sends every request over HTTP/1.1 connections, one at a time
	// on each, even to nodes that take hop connections (package hop).
	NoHop bool
	// HopAbove: a request goes over a hop connection when more than
	// HopAbove requests, itself included, are in flight to its node
	// (default 1: every one but a request alone; 0: every one). A
	// request alone gains nothing from sharing a connection, and over a
	// hop costs the node a goroutine and a thread wake-up that its
	// front, answering HTTP/1.1 on the connection's own goroutine, does
	// not.
	HopAbove int
	// Suspect is how long a node that refused a connection is tried last
	// (default 2s): membership drops a dead node only when its lease
	// expires.
	Suspect time.Duration
	// ProbeAfter is how long a member with requests in flight may send
	// no answer before it gets a health check, and that check's bound
	// (default 2s; probe.go).
	ProbeAfter time.Duration
	// Collectors are more metrics for the gateway's /metrics (its
	// fronts' counters).
	Collectors []prometheus.Collector
	Logger     *slog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Domain:        "localhost",
		LoadFactor:    1.25,
		MaxReplayBody: 1 << 20,
		Attempts:      3,
		HopAbove:      1,
		Suspect:       2 * time.Second,
		ProbeAfter:    2 * time.Second,
		Logger:        slog.New(slog.DiscardHandler),
	}
}

// Gateway routes requests to nodes. It is safe for concurrent use.
type Gateway struct {
	cfg       Config
	transport *http.Transport // streams, upgrades, the gateway's own calls
	h1        *h1             // everything else to nodes
	hop       *hop.Transport  // to nodes that take hop connections: small bodies, no upgrades
	proxy     *httputil.ReverseProxy
	view      atomic.Pointer[view]
	ready     chan struct{}
	readyOnce sync.Once

	mu       sync.Mutex
	loads    map[string]*nodeCount // in-flight requests by node
	suspect  map[string]time.Time  // node → tried last until
	suspects atomic.Int32          // len(suspect): none, no lock
	warming  map[string]time.Time  // app → last prewarm
	// moved: sandboxes whose holder is not the node their ID's tag
	// names (taken over while it was away), as replays taught us.
	moved map[string]string

	// Connections to nodes, and the nodes taken for lost (lost.go).
	conns conns
	// draining: the names of the members that said they are draining,
	// as the last membership had them.
	draining map[string]bool

	// tick is the probe clock (probe.go).
	tick atomic.Int64

	// Counters, read by Stats.
	requests, retries, replays, failures, prewarms, bodyTimeouts, lost, silent atomic.Uint64
}

// view is the membership the gateway routes by.
type view struct {
	ring  *ring.Ring
	nodes map[string]registry.Node
	tags  map[string]string     // sandbox ID tag → node name
	loads map[string]*nodeCount // the members' in-flight counts, from Gateway.loads
}

// New returns a gateway; Run feeds it membership.
func New(cfg Config) *Gateway {
	def := DefaultConfig()
	if cfg.LoadFactor <= 1 {
		cfg.LoadFactor = def.LoadFactor
	}
	if cfg.MaxReplayBody <= 0 {
		cfg.MaxReplayBody = def.MaxReplayBody
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = def.Attempts
	}
	if cfg.Suspect <= 0 {
		cfg.Suspect = def.Suspect
	}
	if cfg.ProbeAfter <= 0 {
		cfg.ProbeAfter = def.ProbeAfter
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if cfg.Domain == "" {
		cfg.Domain = def.Domain
	}
	g := &Gateway{
		cfg:   cfg,
		ready: make(chan struct{}),
		transport: &http.Transport{
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		},
		loads:   map[string]*nodeCount{},
		suspect: map[string]time.Time{},
		warming: map[string]time.Time{},
		moved:   map[string]string{},
	}
	// Every connection to a node is tracked (lost.go); those of the hop
	// and the HTTP/1.1 client make raw reads and writes (package rawio).
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	g.transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return g.dial(ctx, d, network, addr, false)
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return g.dial(ctx, d, network, addr, true)
	}
	g.h1 = newH1(dial, g.transport)
	g.hop = &hop.Transport{Dial: dial}
	g.view.Store(&view{nodes: map[string]registry.Node{}, tags: map[string]string{}, loads: map[string]*nodeCount{}})
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "node" // set per attempt by RoundTrip
			if host := hostOf(pr.In.Context()); host != "" {
				pr.Out.Host = host
			}
			// Only the gateway says these.
			pr.Out.Header.Del(CanReplayHeader)
			pr.Out.Header.Del(ReplayedHeader)
			pr.SetXForwarded()
		},
		Transport: (*attempts)(g),
		// FlushInterval 0: a response of unknown length (a stream, an
		// event stream) is flushed as it is written; one of known length
		// goes out in as few writes as it fits (flushing every write
		// cost a fifth of the gateway's CPU).
		ErrorHandler: g.proxyError,
		// A 32 KiB copy buffer per response was the gateway's largest
		// allocation.
		BufferPool: bufferPool{},
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Del(ReplayHeader)
			return nil
		},
	}
	return g
}

// Run keeps the gateway's membership current until ctx ends.
func (g *Gateway) Run(ctx context.Context) error {
	if g.cfg.Members == nil {
		return errors.New("gateway: no membership source")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go g.probeLoop(ctx)
	return g.cfg.Members.WatchNodes(ctx, g.SetNodes)
}

// SetNodes replaces the membership the gateway routes by. A member that
// is draining gets no new requests; one gone without having drained is
// taken for lost (lost.go).
func (g *Gateway) SetNodes(nodes []registry.Node) {
	v := &view{nodes: map[string]registry.Node{}, tags: map[string]string{}, loads: map[string]*nodeCount{}}
	names := make([]string, 0, len(nodes))
	draining := map[string]bool{}
	for _, n := range nodes {
		if n.Draining {
			draining[n.Name] = true
			continue
		}
		g.found(n, errNodeLost) // a silent one stays so until a check passes
		if strings.EqualFold(strings.TrimSuffix(n.Domain, "."), strings.TrimSuffix(g.cfg.Domain, ".")) {
			n.Domain = "" // the gateway's: requests go as they came
		}
		v.nodes[n.Name] = n
		v.tags[SandboxTag(n.Name)] = n.Name
		v.loads[n.Name] = g.counter(n.Name)
		names = append(names, n.Name)
	}
	if len(names) > 0 {
		r, err := ring.New(names, ring.DefaultConfig())
		if err != nil {
			g.cfg.Logger.Error("gateway: membership", "err", err)
			return
		}
		v.ring = r
	}
	old := g.view.Swap(v)
	g.mu.Lock()
	wasDraining := g.draining
	g.draining = draining
	g.mu.Unlock()
	for name, n := range old.nodes {
		if _, member := v.nodes[name]; !member && !draining[name] && !wasDraining[name] {
			g.lose(n)
		}
	}
	if !slices.Equal(slices.Sorted(maps.Keys(old.nodes)), slices.Sorted(maps.Keys(v.nodes))) {
		g.cfg.Logger.Info("gateway: members", "nodes", names, "draining", slices.Sorted(maps.Keys(draining)))
	}
	g.readyOnce.Do(func() { close(g.ready) })
}

// Ready is closed once the gateway has had its first membership.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// Nodes returns the members the gateway routes to, with their in-flight
// requests as the gateway counts them.
func (g *Gateway) Nodes() []NodeLoad {
	v := g.view.Load()
	out := make([]NodeLoad, 0, len(v.nodes))
	for _, name := range slices.Sorted(maps.Keys(v.nodes)) {
		out = append(out, NodeLoad{Node: v.nodes[name], InFlight: g.load(name)})
	}
	return out
}

// NodeLoad is a member and its in-flight requests through this gateway.
type NodeLoad struct {
	registry.Node
	InFlight int `json:"in_flight"`
}

// Stats are the gateway's counters.
type Stats struct {
	Requests, Retries, Replays, Failures, Prewarms uint64
	// BodyTimeouts counts requests answered 408: their body stopped
	// coming (Config.BodyTimeout).
	BodyTimeouts uint64
	// Lost counts members that left without draining (lost.go).
	Lost uint64
	// Silent counts members that stopped answering, found by a failed
	// health check (probe.go).
	Silent uint64
}

// Stats returns the gateway's counters.
func (g *Gateway) Stats() Stats {
	return Stats{g.requests.Load(), g.retries.Load(), g.replays.Load(), g.failures.Load(), g.prewarms.Load(), g.bodyTimeouts.Load(), g.lost.Load(), g.silent.Load()}
}

func (g *Gateway) counter(node string) *nodeCount {
	if c, ok := g.view.Load().loads[node]; ok {
		return c // a member's: read without the lock
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.loads[node]
	if c == nil {
		c = new(nodeCount)
		g.loads[node] = c
	}
	return c
}

func (g *Gateway) load(node string) int { return int(g.counter(node).Load()) }

// candidates appends to buf the nodes to try for r's route, best first,
// and returns them and the host the nodes should see; an error says why
// there are none.
func (g *Gateway) candidates(rt Route, buf []string) ([]string, string, error) {
	v := g.view.Load()
	if len(v.nodes) == 0 {
		return nil, "", errors.New("no live nodes in the cluster")
	}
	switch rt.Kind {
	case KindApp:
		first := v.ring.Pick(rt.App, g.load, g.cfg.LoadFactor)
		out := append(buf, first)
		for n := range v.ring.Walk(rt.App) {
			if n != first {
				out = append(out, n)
			}
		}
		return g.demote(out), "", nil
	case KindPinned:
		if _, ok := v.nodes[rt.Node]; !ok {
			g.mu.Lock()
			draining := g.draining[rt.Node]
			g.mu.Unlock()
			if draining {
				return nil, "", fmt.Errorf("node %q (pinned by the hostname) is draining: it is shutting down and takes no new requests", rt.Node)
			}
			return nil, "", fmt.Errorf("node %q (pinned by the hostname) is not a live member", rt.Node)
		}
		return append(buf, rt.Node), rt.hostUnder(g.cfg.Domain), nil
	case KindSandbox:
		g.mu.Lock()
		to := g.moved[rt.Sandbox]
		g.mu.Unlock()
		if _, ok := v.nodes[to]; ok {
			return append(buf, to), "", nil
		}
		if n, ok := v.tags[rt.NodeTag]; ok {
			return append(buf, n), "", nil
		}
		// Its node is gone: the ring picks one to resume it on.
		return append(buf, v.ring.Owner(rt.Sandbox)), "", nil
	}
	return nil, "", errors.New("not an app or sandbox hostname")
}

// demote moves nodes that recently refused connections to the end.
func (g *Gateway) demote(nodes []string) []string {
	if g.suspects.Load() == 0 {
		return nodes
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	var ok, bad []string
	for _, n := range nodes {
		if until, s := g.suspect[n]; s && now.Before(until) {
			bad = append(bad, n)
		} else {
			ok = append(ok, n)
		}
	}
	maps.DeleteFunc(g.suspect, func(_ string, until time.Time) bool { return !now.Before(until) })
	g.suspects.Store(int32(len(g.suspect)))
	return append(ok, bad...)
}

// maxMoved bounds the sandboxes remembered as moved; past it, an eighth
// are forgotten (each costs a replay the next time).
const maxMoved = 1 << 16

// remember notes that sandbox id is held by node.
func (g *Gateway) remember(id, node string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.moved) >= maxMoved {
		n := 0
		for k := range g.moved {
			delete(g.moved, k)
			if n++; n >= maxMoved/8 {
				break
			}
		}
	}
	g.moved[id] = node
}

// markSuspect has node tried last for cfg.Suspect after a connection to
// it failed with err; logged once each time it becomes suspect, not for
// every request that finds it so.
func (g *Gateway) markSuspect(node string, err error) {
	now := time.Now()
	g.mu.Lock()
	until, was := g.suspect[node]
	g.suspect[node] = now.Add(g.cfg.Suspect)
	g.suspects.Store(int32(len(g.suspect)))
	g.mu.Unlock()
	if !was || !now.Before(until) {
		g.cfg.Logger.Warn("gateway: cannot connect to node; trying it last", "node", node, "for", g.cfg.Suspect, "err", err)
	}
}

type ctxKey int

const (
	keyPlan ctxKey = iota
)

// plan is a request's route through the cluster.
type plan struct {
	nodes []string // candidates, best first
	host  string   // the Host nodes see ("": the client's)
	api   bool     // to the nodes' control API rather than their app listener
	fixed bool     // the hostname names the node: no replay elsewhere
	// sandbox is the sandbox the request is for, if any: a replay
	// names the node that now holds it.
	sandbox string
	what    string // for error messages ("": describe(route))
	route   Route
	tried   []string
	// body is the client's request body as ServeHTTP paced it
	// (front.PaceBody), to tell a body that stopped coming from a
	// client gone (a proxy hands the error handler a copy of the
	// request whose body is wrapped).
	body io.Reader
	// Room for nodes and tried (a request seldom needs more), and for
	// the front's X-Forwarded values: no allocations of their own.
	nodesBuf, triedBuf [4]string
	fwd                [4]string
}

// newPlan returns a plan whose nodes and tried use its own room.
func newPlan() *plan {
	p := new(plan)
	p.nodes, p.tried = p.nodesBuf[:0], p.triedBuf[:0]
	return p
}

// describe says what the request is for, in error messages.
func (p *plan) describe() string {
	if p.what != "" {
		return p.what
	}
	return describe(p.route)
}

func planOf(ctx context.Context) *plan {
	p, _ := ctx.Value(keyPlan).(*plan)
	return p
}

func hostOf(ctx context.Context) string {
	if p := planOf(ctx); p != nil {
		return p.host
	}
	return ""
}

// ServeHTTP routes app and sandbox traffic.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.requests.Add(1)
	p, code, msg := g.route(r)
	if p == nil {
		http.Error(w, msg, code)
		return
	}
	r.Body = front.PaceBody(w, r, g.cfg.BodyTimeout)
	p.body = r.Body
	if r.ProtoMajor == 2 {
		g.forwardH2(w, r, p)
		return
	}
	g.send(w, r, p)
}

// route plans where r goes: its candidate nodes, best first, or the
// status and message to answer with.
func (g *Gateway) route(r *http.Request) (*plan, int, string) {
	rt := Parse(r.Host, g.cfg.Domain)
	if id := r.Header.Get("E2b-Sandbox-Id"); rt.Kind == KindNone && validSandboxID(id) {
		// E2B's SDK with E2B_SANDBOX_URL: one URL for every sandbox,
		// the sandbox in a header.
		rt = Route{Kind: KindSandbox, Sandbox: id, NodeTag: id[:TagLen]}
	}
	if rt.Kind == KindNone {
		return nil, http.StatusNotFound, fmt.Sprintf("frost gateway: %q is not an app or sandbox under %s (NAME.%s, 0-NODE--NAME.%s, PORT-ID.%s)", r.Host, g.cfg.Domain, g.cfg.Domain, g.cfg.Domain, g.cfg.Domain)
	}
	p := newPlan()
	nodes, host, err := g.candidates(rt, p.nodes)
	if err != nil {
		g.failures.Add(1)
		return nil, http.StatusServiceUnavailable, "frost gateway: " + describe(rt) + ": " + err.Error()
	}
	p.nodes, p.host, p.route, p.fixed, p.sandbox = nodes, host, rt, rt.Kind == KindPinned, rt.Sandbox
	return p, 0, ""
}

func describe(rt Route) string {
	switch rt.Kind {
	case KindSandbox:
		return fmt.Sprintf("sandbox %s port %d", rt.Sandbox, rt.Port)
	case KindPinned:
		return fmt.Sprintf("app %s on node %s", rt.App, rt.Node)
	}
	return "app " + rt.App
}

// send proxies r along p.
func (g *Gateway) send(w http.ResponseWriter, r *http.Request, p *plan) {
	g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyPlan, p)))
}

// bodyTimedOut counts a request whose body was cut (err wraps
// front.ErrBodyTimeout) and says so, for its 408.
func (g *Gateway) bodyTimedOut(err error) string {
	g.bodyTimeouts.Add(1)
	return "frost gateway: reading the request body: " + err.Error()
}

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	p := planOf(r.Context())
	if p != nil {
		// Before the check below: net/http ends the request's context
		// when the read of its body fails.
		if cut := front.Cut(p.body); cut != nil {
			http.Error(w, g.bodyTimedOut(cut), http.StatusRequestTimeout)
			return
		}
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away
	}
	g.failures.Add(1)
	what := "the request"
	var tried []string
	if p != nil {
		what, tried = p.describe(), p.tried
	}
	http.Error(w, fmt.Sprintf("frost gateway: %s: no node answered (tried %v): %v", what, tried, err), http.StatusBadGateway)
}

// attempts is the proxy's transport: it sends a request to the plan's
// nodes in order until one answers, as far as retrying is safe.
type attempts Gateway

func (a *attempts) RoundTrip(req *http.Request) (*http.Response, error) {
	p := planOf(req.Context())
	if p == nil {
		return nil, errors.New("gateway: request without a route")
	}
	resp, inFlight, err := (*Gateway)(a).roundTrip(req, p)
	if err != nil {
		return nil, err
	}
	resp.Body = releaseOnClose(resp.Body, inFlight)
	return resp, nil
}

// roundTrip sends req along p, to at most Attempts of its nodes. req is
// the gateway's own (a proxy's outgoing request): the first attempt goes
// out as it is. The answering node's in-flight count includes the
// answer: the caller decrements it once done with the body.
func (g *Gateway) roundTrip(req *http.Request, p *plan) (*http.Response, *nodeCount, error) {
	if len(p.nodes) > g.cfg.Attempts {
		p.nodes = p.nodes[:g.cfg.Attempts]
	}
	body, replayable, err := g.replayable(req)
	if err != nil {
		return nil, nil, err
	}
	idempotent := isIdempotent(req)
	replayed := false
	var lastErr error
	host := req.Host // a node under another domain gets its own (below)
	for i := 0; i < len(p.nodes); i++ {
		node := p.nodes[i]
		n, ok := g.view.Load().nodes[node]
		if !ok {
			continue
		}
		out := req
		if len(p.tried) > 0 {
			out = req.Clone(req.Context())
		}
		out.URL.Host, out.Host = n.HTTPAddr, host
		if p.api {
			out.URL.Host = n.APIAddr
		} else if n.Domain != "" {
			// A node under another domain than the gateway's.
			if h := p.route.hostUnder(n.Domain); h != "" {
				out.Host = h
			}
		}
		if replayable && len(body) > 0 {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		} else if replayable {
			// No body: nothing for Request.Write to probe.
			out.Body, out.GetBody, out.ContentLength = http.NoBody, nil, 0
		}
		if i > 0 && !replayed {
			g.retries.Add(1)
		}
		switch {
		case replayed:
			out.Header.Del(CanReplayHeader)
			out.Header[ReplayedHeader] = one
		case !p.fixed && replayable:
			out.Header[CanReplayHeader] = one
		}
		p.tried = append(p.tried, node)
		c := g.counter(node)
		inFlight := c.Add(1)
		var resp *http.Response
		if n.Hop && !p.api && !g.cfg.NoHop && inFlight > int64(g.cfg.HopAbove) && hop.Takes(out) {
			resp, err = g.hop.RoundTrip(out)
		} else {
			resp, err = g.h1.RoundTrip(out)
		}
		if err != nil {
			c.Add(-1)
			err = g.lostErr(node, out.URL.Host, err)
			lastErr = err
			if req.Context().Err() != nil {
				// The client left (or its deadline passed): a dial it
				// cut short says nothing of the node.
				return nil, nil, err
			}
			dialFailed := isDialError(err)
			if dialFailed {
				g.markSuspect(node, err)
			}
			// Safe to go on: the request never reached the node, or it
			// may be sent twice and can be sent again.
			unsent := dialFailed || errors.Is(err, hop.ErrNotSent)
			if replayable && (unsent || idempotent) {
				continue
			}
			return nil, nil, err
		}
		c.answered.Store(g.tick.Load())
		if to := resp.Header.Get(ReplayHeader); to != "" && !replayed && !p.fixed && replayable {
			if _, ok := g.view.Load().nodes[to]; ok && to != node {
				// The node asks for the request to go elsewhere: once.
				io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
				c.Add(-1)
				g.replays.Add(1)
				replayed = true
				if p.sandbox != "" {
					g.remember(p.sandbox, to)
				}
				p.nodes = append(p.nodes[:i+1], to)
				continue
			}
		}
		return resp, c, nil
	}
	if lastErr == nil {
		lastErr = errors.New("no live node to send it to")
	}
	return nil, nil, lastErr
}

// one is the value of the gateway's flag fields, shared by every request
// (its capacity makes an append copy it).
var one = []string{"1"}[:1:1]

// replayable reads a small request body so that the request can be sent
// again; a large or unknown-length one stays a stream.
func (g *Gateway) replayable(req *http.Request) ([]byte, bool, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, true, nil
	}
	if req.ContentLength < 0 || req.ContentLength > g.cfg.MaxReplayBody {
		return nil, false, nil
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, req.ContentLength+1))
	req.Body.Close()
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}

// isIdempotent: methods RFC 9110 calls idempotent, or a request that
// carries an Idempotency-Key.
func isIdempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return req.Header.Get("Upgrade") == ""
	}
	return req.Header.Get("Idempotency-Key") != ""
}

// isDialError says whether err happened before the request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// bufferPool recycles the proxy's copy buffers.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// releaseOnClose decrements a node's in-flight count when the response
// body is done; an upgraded connection's body stays writable.
func releaseOnClose(body io.ReadCloser, c *nodeCount) io.ReadCloser {
	if rwc, ok := body.(io.ReadWriteCloser); ok {
		return &releasingRWC{ReadWriteCloser: rwc, release: release{c: c}}
	}
	return &releasing{ReadCloser: body, release: release{c: c}}
}

// release decrements c once.
type release struct {
	c    *nodeCount
	done atomic.Bool
}

func (r *release) release() {
	if r.done.CompareAndSwap(false, true) {
		r.c.Add(-1)
	}
}

type releasing struct {
	io.ReadCloser
	release
}

func (r *releasing) Close() error { r.release.release(); return r.ReadCloser.Close() }

type releasingRWC struct {
	io.ReadWriteCloser
	release
}

func (r *releasingRWC) Close() error { r.release.release(); return r.ReadWriteCloser.Close() }
