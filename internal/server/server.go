// Package server assembles a Frost server for one machine: the bbolt
// registry and directory blob store in the data directory, the wasm
// runtime with its compile cache, a node serving app traffic on the HTTP
// listener, and the control API on the API listener. SIGTERM (a cancelled
// context) drains: listeners close, in-flight requests finish.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	wire "github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/api"
	"github.com/frostdev/frost/internal/blob"
	"github.com/frostdev/frost/internal/blob/dir"
	"github.com/frostdev/frost/internal/blob/peer"
	"github.com/frostdev/frost/internal/blob/s3"
	"github.com/frostdev/frost/internal/certs"
	"github.com/frostdev/frost/internal/e2b"
	"github.com/frostdev/frost/internal/front"
	"github.com/frostdev/frost/internal/gateway"
	"github.com/frostdev/frost/internal/hop"
	"github.com/frostdev/frost/internal/node"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/replica"
	"github.com/frostdev/frost/internal/ring"
	"github.com/frostdev/frost/internal/runtime/gvisor"
	"github.com/frostdev/frost/internal/runtime/wasm"
	"github.com/frostdev/frost/internal/sandbox"
	"github.com/frostdev/frost/internal/snapshot"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a server.
type Config struct {
	// DataDir holds all state: registry, blobs, compile cache, admin token.
	DataDir string
	// HTTPAddr is the app traffic listener.
	HTTPAddr string
	// APIAddr is the control API listener.
	APIAddr string
	// Domain: app NAME answers at NAME.Domain.
	Domain string
	// Deploy lists apps to deploy at start, as NAME=FILE.wasm.
	Deploy []string
	// DrainTimeout bounds how long shutdown waits for in-flight requests.
	DrainTimeout time.Duration
	// Version is reported by the health route.
	Version string
	Logger  *slog.Logger
	// Idle is the default idle timeout before an app is frozen to zero.
	Idle time.Duration
	// SnapshotCap caps DATA/snapshots (0: no cap); least recently used
	// snapshots are evicted past it.
	SnapshotCap int64
	// SnapshotTTL removes snapshots unused for this long (0: never).
	SnapshotTTL time.Duration
	// LongRunners is how many guest calls may run past the scheduling
	// slice at once (wasm.Config.LongRunnerSlots: 0 = cores-1, or cores
	// with SpareProcessor; -1 = off).
	LongRunners int
	// SpareProcessor: see wasm.Config.SpareProcessor.
	SpareProcessor bool
	// Runsc enables agent sandboxes (the gvisor runtime); RootFS is the
	// base template's root file system.
	Runsc  string
	RootFS string
	// SandboxSpares is gvisor.Config.Spares.
	SandboxSpares int
	// SandboxNetwork is gvisor.Config.Network: the range sandboxes get
	// addresses in (unset: sandboxes have no network).
	SandboxNetwork netip.Prefix
	// SandboxMetricsEvery is sandbox.Config.MetricsEvery (0: its default).
	SandboxMetricsEvery time.Duration
	// HTTPSAddr, when set, serves the app listener's traffic (apps,
	// sandbox ports, E2B's data plane) over TLS as well. TLSCert and
	// TLSKey are its certificate and key files; without them it uses a
	// development certificate for Domain, *.Domain and localhost signed
	// by a local CA kept in DATA/tls (trust DATA/tls/ca.pem).
	HTTPSAddr string
	TLSCert   string
	TLSKey    string
	// TLSReload is how often the HTTPS listener looks for renewed
	// certificate files (or renews its development certificate) while it
	// serves (0: never).
	TLSReload time.Duration
	// Role is "all" (one machine: the default), "node" (a cluster member
	// serving apps) or "gateway" (routes a cluster's traffic to its
	// nodes). node and gateway need Etcd.
	Role string
	// Etcd lists the etcd client URLs of a cluster's registry; empty: the
	// bbolt registry in DataDir (role all only).
	Etcd []string
	// Name is this node's name in the cluster (role node; default
	// "node-" and the app listener's port).
	Name string
	// MembershipTTL is how long a node that stops heartbeating stays in
	// the cluster (default 3s).
	MembershipTTL time.Duration
	// LoadFactor is the gateway's bounded-load factor c (default 1.25).
	LoadFactor float64
	// NoHop has the gateway reach nodes over HTTP/1.1 only, not over hop
	// connections (package hop).
	NoHop bool
	// Advertise is the host other processes reach this node at (role
	// node); "" advertises the listeners' own addresses, which is right
	// when they listen on a specific address, not on all of them.
	Advertise string
	// S3 is the cluster's shared storage,
	// http[s]://HOST[:PORT]/BUCKET[/PREFIX][?region=R], with credentials
	// from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (roles all and
	// node). Releases and snapshots are uploaded to it and fetched from
	// it by nodes that lack them; DATA/blobs becomes a cache capped at
	// BlobCache, and SnapshotTTL also reaps the shared snapshots.
	S3 string
	// BlobCache caps DATA/blobs when S3 is set (0: no cap).
	BlobCache int64
	// S3RetryTimeout bounds the retries of one S3 request (default 10s).
	S3RetryTimeout time.Duration
	// BodyTimeout cuts a request body on the app listeners, or an upload
	// to the control API, that goes this long without a byte, or comes
	// slower than front.MinBodyRate once past front.BodyGrace: 408 (0:
	// front.DefaultBodyTimeout).
	BodyTimeout time.Duration
	// StallTimeout closes an app connection whose client took none of
	// its answer for this long (0: front.DefaultStallTimeout).
	StallTimeout time.Duration
}

// Roles.
const (
	RoleAll     = "all"
	RoleNode    = "node"
	RoleGateway = "gateway"
)

// DefaultConfig returns the defaults (DataDir must still be set).
func DefaultConfig() Config {
	return Config{
		HTTPAddr:      "127.0.0.1:8080",
		APIAddr:       "127.0.0.1:7070",
		Domain:        "localhost",
		DrainTimeout:  30 * time.Second,
		Version:       "dev",
		Logger:        slog.New(slog.DiscardHandler),
		Idle:          5 * time.Minute,
		SnapshotCap:   4 << 30,
		SnapshotTTL:   7 * 24 * time.Hour,
		Role:          RoleAll,
		MembershipTTL: 3 * time.Second,
		TLSReload:     10 * time.Second,
		BlobCache:     10 << 30,
	}
}

// Server is a running Frost server.
type Server struct {
	cfg     Config
	Node    *node.Node
	httpLn  net.Listener
	apiLn   net.Listener
	apiSrv  *http.Server
	httpsLn net.Listener // nil without HTTPSAddr
	// httpFront and httpsFront (with HTTPSAddr) serve the app
	// listeners, each with an http.Server behind it.
	httpFront, httpsFront *front.Server
	closers               []func() error
	reg                   registry.Store
	certs                 *certs.Source // with HTTPSAddr
	// Token is the admin token.
	Token string
	// CAFile is the development CA that signed the HTTPS listener's
	// certificate ("" without HTTPS or with the user's own certificate).
	CAFile string
	// Gateway is the gateway (role gateway; Node is nil then).
	Gateway *gateway.Gateway
	// members is the cluster's membership as last watched (role node).
	members atomic.Pointer[[]registry.Node]
	// drain says this node is draining and ends its running membership;
	// left ends the draining one (role node; set by drain).
	drain, left func()
	// ring is the members' ring (role node), for replay targets.
	ring atomic.Pointer[ring.Ring]
	// shared is the link to the cluster's shared storage (nil without --s3).
	shared *replica.Replica
	// sandboxes is the agent sandboxes' manager, once started (nil
	// without --runsc), for /metrics.
	sandboxes atomic.Pointer[sandbox.Manager]
}

// HTTPAddr is the app listener's bound address.
func (s *Server) HTTPAddr() string { return s.httpLn.Addr().String() }

// Name is the node's name in its cluster ("" on one machine).
func (s *Server) Name() string { return s.cfg.Name }

// HTTPSAddr is the HTTPS listener's bound address ("" without one).
func (s *Server) HTTPSAddr() string {
	if s.httpsLn == nil {
		return ""
	}
	return s.httpsLn.Addr().String()
}

// APIAddr is the control API listener's bound address.
func (s *Server) APIAddr() string { return s.apiLn.Addr().String() }

// Start opens the data directory, binds both listeners and starts serving.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: no data directory (set --data)")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if cfg.Role == "" {
		cfg.Role = RoleAll
	}
	switch {
	case cfg.Role != RoleAll && cfg.Role != RoleNode && cfg.Role != RoleGateway:
		return nil, fmt.Errorf("--role %q: use all (one machine), node or gateway", cfg.Role)
	case cfg.Role != RoleAll && len(cfg.Etcd) == 0:
		return nil, fmt.Errorf("--role %s needs the cluster's registry: --etcd http://HOST:2379 (scripts/etcd.sh builds etcd)", cfg.Role)
	case cfg.Role == RoleGateway && cfg.S3 != "":
		return nil, errors.New("--s3 is for nodes (--role node or all): a gateway stores nothing")
	}
	if cfg.MembershipTTL <= 0 {
		cfg.MembershipTTL = DefaultConfig().MembershipTTL
	}
	s := &Server{cfg: cfg}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	if err := s.openRegistry(ctx); err != nil {
		return nil, err
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	if cfg.Role == RoleGateway {
		return s, s.startGateway()
	}
	if cfg.Role == RoleNode && cfg.Name == "" {
		cfg.Name = "node-" + portOf(s.HTTPAddr())
		s.cfg.Name = cfg.Name
	}
	if cfg.Role == RoleNode {
		if err := gateway.ValidNodeName(cfg.Name); err != nil {
			return nil, fmt.Errorf("--name: %w", err)
		}
	}
	local, err := dir.New(filepath.Join(cfg.DataDir, "blobs"))
	if err != nil {
		return nil, err
	}
	snaps, err := snapshot.Open(filepath.Join(cfg.DataDir, "snapshots"), snapshot.Options{MaxBytes: cfg.SnapshotCap, TTL: cfg.SnapshotTTL})
	if err != nil {
		return nil, err
	}
	var blobs blob.Store = local
	if cfg.Role == RoleNode {
		// A blob this node lacks comes from a peer (after the shared
		// storage, if there is one).
		ps := peer.New(local, cfg.Name, s.peers, s.Token)
		ps.Refresh = func(ctx context.Context) ([]registry.Node, error) { return s.reg.Nodes(ctx) }
		blobs = ps
	}
	if cfg.S3 != "" {
		if s.shared, err = s.openShared(ctx, local, blobs, snaps); err != nil {
			return nil, err
		}
		blobs = s.shared.Blobs()
	}
	rt, err := wasm.New(wasm.Config{CacheDir: filepath.Join(cfg.DataDir, "cache", "wasm"), Logger: cfg.Logger, LongRunnerSlots: cfg.LongRunners, SpareProcessor: cfg.SpareProcessor})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, rt.Close)

	ncfg := node.DefaultConfig()
	ncfg.Domain = cfg.Domain
	ncfg.HTTPAddr = s.HTTPAddr()
	ncfg.Logger = cfg.Logger
	ncfg.Snapshots = snaps
	ncfg.Name = cfg.Name
	ncfg.BodyTimeout = cfg.BodyTimeout
	ncfg.Collectors = append(ncfg.Collectors, rt.Collectors()...)
	ncfg.Collectors = append(ncfg.Collectors, s.frontCollectors()...)
	ncfg.Collectors = append(ncfg.Collectors, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "frost_sandbox_deaths_total",
		Help: "Agent sandboxes found dead, killed by the host (out of memory); each answered 410 died and boots afresh at its next use.",
	}, func() float64 {
		if m := s.sandboxes.Load(); m != nil {
			return float64(m.Deaths())
		}
		return 0
	}))
	if cfg.Role == RoleNode {
		ncfg.Replay = s.replayTarget
		ncfg.WarmRank = s.warmRank
	}
	if cfg.Idle > 0 {
		ncfg.Idle = cfg.Idle
	}
	if s.shared != nil {
		ncfg.Shared = s.shared
		ncfg.Collectors = append(ncfg.Collectors, s.shared)
	}
	s.Node, err = node.New(ctx, ncfg, s.reg, blobs, rt)
	if err != nil {
		return nil, err
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	go s.Node.Run(runCtx)
	if s.shared != nil {
		go s.shared.Run(runCtx)
	}
	s.closers = append(s.closers, func() error { stopRun(); return nil })
	// Programs close before the runtime.
	s.closers = append(s.closers, func() error { return s.Node.Close(context.Background()) })
	return s, s.serveNode(ctx, runCtx, blobs, ncfg)
}

// listen binds the app, API and HTTPS listeners.
func (s *Server) listen() error {
	cfg := s.cfg
	var err error
	s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("app listener: %w (is another frost server running? pick another --http)", err)
	}
	s.closers = append(s.closers, func() error { s.httpLn.Close(); return nil })
	s.apiLn, err = net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("API listener: %w (is another frost server running? pick another --api)", err)
	}
	s.closers = append(s.closers, func() error { s.apiLn.Close(); return nil })
	if cfg.HTTPSAddr != "" {
		if err := s.listenTLS(); err != nil {
			return err
		}
	}
	return nil
}

// serveNode serves apps (and sandboxes) on the listeners and, in a
// cluster, joins it.
func (s *Server) serveNode(ctx, runCtx context.Context, blobs blob.Store, ncfg node.Config) error {
	cfg := s.cfg
	var err error
	var sandboxes *sandbox.Manager
	var httpHandler http.Handler = s.Node
	// The node's own requests (apps) are answered by a front on their
	// connection's goroutine; a sandbox's traffic, which may stream or
	// wait on its client, goes through net/http.
	takes := func(*http.Request) bool { return true }
	if cfg.Runsc != "" {
		if sandboxes, err = s.startSandboxes(ctx, runCtx); err != nil {
			return err
		}
		s.sandboxes.Store(sandboxes)
		// E2B's data plane (envd) for the E2B SDK, then sandbox ports,
		// then apps.
		httpHandler = e2b.NewEnvd(sandboxes, cfg.BodyTimeout).Wrap(cfg.Domain, sandboxes.Ports(cfg.Domain, s.Node))
		portHost := sandbox.PortHosts(cfg.Domain)
		takes = func(r *http.Request) bool { return r.Header["E2b-Sandbox-Id"] == nil && !portHost(r.Host) }
	}

	// E2B's SDK reaches a sandbox at https://PORT-ID.DOMAIN (the HTTPS
	// listener) or, in its debug mode, http:// (the app listener).
	e2bDomain := cfg.Domain + portSuffix(s.HTTPAddr(), "80")
	if s.httpsLn != nil {
		e2bDomain = cfg.Domain + portSuffix(s.HTTPSAddr(), "443")
	}
	h := api.New(api.Config{
		AdminToken:     s.Token,
		Version:        cfg.Version,
		Domain:         cfg.Domain,
		E2BDomain:      e2bDomain,
		HTTPAddr:       s.HTTPAddr(),
		MaxModuleBytes: ncfg.MaxModuleBytes,
		Logger:         cfg.Logger,
		Status:         s.Status,
		Registry:       s.reg,
		BodyTimeout:    cfg.BodyTimeout,
	}, s.Node, blobs, sandboxes)

	for _, d := range cfg.Deploy {
		if err := s.deployFile(ctx, d, blobs); err != nil {
			return err
		}
	}

	tc := &tls.Config{GetCertificate: s.certs.GetCertificate, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	s.serveApps(httpHandler, tc, func(srv *http.Server) *front.Server {
		// A gateway's requests come over hop connections, many at once
		// on each, with a context that ends when its client goes.
		hs := &hop.Server{Handler: httpHandler, Logger: cfg.Logger}
		return front.New(front.Config{Fallback: srv, Handler: httpHandler, Takes: takes, BodyTimeout: ncfg.BodyTimeout, StallTimeout: cfg.StallTimeout, Logger: cfg.Logger, Hop: hs})
	})
	// After the fronts: /metrics reads them.
	s.apiSrv = &http.Server{Handler: front.BoundDrain(h, 0), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)}
	go s.apiSrv.Serve(s.apiLn)
	if cfg.Role == RoleNode {
		return s.joinCluster(runCtx)
	}
	return nil
}

// openShared connects the node to the cluster's shared storage (--s3).
// S3 being unreachable does not stop the start: the node serves from its
// caches and queues uploads until it answers. A bucket that does not
// exist, or credentials it refuses, do.
func (s *Server) openShared(ctx context.Context, local, fallback blob.Store, snaps *snapshot.Store) (*replica.Replica, error) {
	cfg := s.cfg
	opts, err := s3.ParseURL(cfg.S3)
	if err != nil {
		return nil, fmt.Errorf("--s3: %w", err)
	}
	opts.RetryTimeout = cfg.S3RetryTimeout
	if opts.RetryTimeout <= 0 {
		opts.RetryTimeout = 10 * time.Second
	}
	opts.Logger = cfg.Logger
	remote, err := s3.New(opts)
	if err != nil {
		return nil, fmt.Errorf("--s3: %w", err)
	}
	checkCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err = remote.Check(checkCtx)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, s3.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
		cfg.Logger.Warn("shared storage unreachable at start; serving from the local caches and queueing uploads", "s3", remote.String(), "err", err)
	default:
		return nil, fmt.Errorf("--s3: %w", err)
	}
	if fallback == local {
		fallback = nil
	}
	return replica.New(ctx, replica.Config{
		Dir: filepath.Join(cfg.DataDir, "replica"), Node: cfg.Name, Local: local, Remote: remote, RemoteName: remote.String(),
		Fallback: fallback, Snapshots: snaps, Registry: s.reg, CacheBytes: cfg.BlobCache, TTL: cfg.SnapshotTTL, Logger: cfg.Logger,
	})
}

// Status reports the server's role and, with shared storage, its backlog
// (GET /v1/status).
func (s *Server) Status() wire.Status {
	st := wire.Status{Role: s.cfg.Role, Node: s.cfg.Name, Version: s.cfg.Version}
	if s.shared != nil {
		sh := s.shared.Status()
		st.Shared = &sh
	}
	return st
}

// frontCollectors are the app listeners' fronts' counters, for /metrics.
func (s *Server) frontCollectors() []prometheus.Collector {
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "frost_http_front_requests_total",
			Help: "App requests the app listeners' front answered itself (plain HTTP/1.1), not net/http.",
		}, func() float64 { return s.frontCount((*front.Server).Served) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "frost_http_handed_connections_total",
			Help: "App listener connections the front handed to net/http (HTTP/2, HTTP/1.0, upgrades, chunked bodies, sandbox traffic).",
		}, func() float64 { return s.frontCount((*front.Server).Handed) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "frost_http_stalled_connections_total",
			Help: "App listener connections closed because their client took none of an answer for --stall-timeout (60 s by default).",
		}, func() float64 { return s.frontCount((*front.Server).Stalled) }),
	}
	if s.certs != nil {
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "frost_tls_certificate_expiry_timestamp_seconds",
				Help: "When the HTTPS listener's certificate expires (Unix time).",
			}, func() float64 { return float64(s.certs.NotAfter().Unix()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "frost_tls_certificate_reloads_total",
				Help: "Certificates put in use while serving: --tls-cert/--tls-key files that changed on disk, or the development certificate issued again before its expiry.",
			}, func() float64 { return float64(s.certs.Reloads()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "frost_tls_certificate_reload_failures_total",
				Help: "Changed certificate files that would not load (the certificate in use kept serving).",
			}, func() float64 { return float64(s.certs.Failures()) }),
		)
	}
	return cs
}

// frontCount sums a count over the fronts.
func (s *Server) frontCount(count func(*front.Server) uint64) float64 {
	var n uint64
	for _, f := range []*front.Server{s.httpFront, s.httpsFront} {
		if f != nil {
			n += count(f)
		}
	}
	return float64(n)
}

// serveApps serves the app listener, and the HTTPS one (if any) with tc,
// through fronts newFront makes, each before an http.Server for handler.
func (s *Server) serveApps(handler http.Handler, tc *tls.Config, newFront func(*http.Server) *front.Server) {
	s.httpFront = newFront(s.appServer(handler))
	go s.httpFront.Serve(s.httpLn)
	if s.httpsLn != nil {
		s.httpsFront = newFront(s.appServer(handler))
		go s.httpsFront.ServeTLS(s.httpsLn, tc)
	}
}

// appServer is an http.Server for app traffic.
func (s *Server) appServer(handler http.Handler) *http.Server {
	return &http.Server{Handler: front.BoundDrain(handler, 0), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug)}
}

// listenTLS binds the HTTPS listener with the user's certificate or the
// development one.
func (s *Server) listenTLS() error {
	var err error
	switch {
	case s.cfg.TLSCert != "" && s.cfg.TLSKey != "":
		s.certs, err = certs.Files(s.cfg.TLSCert, s.cfg.TLSKey)
	case s.cfg.TLSCert != "" || s.cfg.TLSKey != "":
		err = errors.New("give both --tls-cert and --tls-key, or neither for a development certificate")
	default:
		s.certs, s.CAFile, err = certs.Dev(filepath.Join(s.cfg.DataDir, "tls"), certs.Names(s.cfg.Domain), time.Now())
	}
	if err != nil {
		return err
	}
	s.httpsLn, err = net.Listen("tcp", s.cfg.HTTPSAddr)
	if err != nil {
		return fmt.Errorf("HTTPS listener: %w (is another frost server running? pick another --https)", err)
	}
	s.closers = append(s.closers, func() error { s.httpsLn.Close(); return nil })
	if s.cfg.TLSReload > 0 {
		// Renewed files (certbot, cert-manager) are served without a
		// restart; the development certificate is issued again before
		// it expires.
		ctx, stop := context.WithCancel(context.Background())
		go s.certs.Run(ctx, s.cfg.TLSReload, s.cfg.Logger)
		s.closers = append(s.closers, func() error { stop(); return nil })
	}
	return nil
}

// deployFile deploys NAME=FILE at start.
// startSandboxes starts the gvisor runtime and the sandbox manager. Their
// state lives under DATA/sandboxes: runsc's state and bundles, checkpoints
// (a snapshot store of their own, with no size cap and no expiry: a paused
// sandbox's checkpoint is the only copy of its state), and scratch space.
func (s *Server) startSandboxes(ctx, runCtx context.Context) (*sandbox.Manager, error) {
	base := filepath.Join(s.cfg.DataDir, "sandboxes")
	rt, err := gvisor.New(gvisor.Config{Runsc: s.cfg.Runsc, StateDir: filepath.Join(base, "runsc"), Spares: s.cfg.SandboxSpares, Network: s.cfg.SandboxNetwork, Logger: s.cfg.Logger})
	if err != nil && s.cfg.SandboxNetwork.IsValid() {
		err = fmt.Errorf("%w (start with --sandbox-network off for sandboxes without a network)", err)
	}
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, rt.Close)
	snaps, err := snapshot.Open(filepath.Join(base, "snapshots"), snapshot.Options{})
	if err != nil {
		return nil, err
	}
	key, err := s.sandboxKey(ctx)
	if err != nil {
		return nil, err
	}
	mcfg := sandbox.DefaultConfig()
	mcfg.Dir = filepath.Join(base, "scratch")
	mcfg.BaseRootFS = s.cfg.RootFS
	mcfg.Key = key
	mcfg.Domain = s.cfg.Domain
	mcfg.HTTPPort = portOf(s.HTTPAddr())
	if s.cfg.Role == RoleNode {
		mcfg.IDTag = gateway.SandboxTag(s.cfg.Name)
		mcfg.Node = s.cfg.Name
		mcfg.Live = s.isMember
		if s.shared != nil {
			mcfg.Shared = s.shared
		}
	}
	mcfg.Logger = s.cfg.Logger
	mcfg.MetricsEvery = s.cfg.SandboxMetricsEvery
	m, err := sandbox.New(mcfg, s.reg, snaps, rt)
	if err != nil {
		return nil, err
	}
	go m.Run(runCtx)
	// Closers run in reverse: this pauses every running sandbox before the
	// runtime and the registry close.
	s.closers = append(s.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return m.Close(ctx)
	})
	return m, nil
}

// sandboxKey is the key that signs sandbox access tokens: on one
// machine DATA/sandbox.key; in a cluster one key for every node, kept in
// etcd (made by the first node to start), so that a token stays good when
// another node resumes the sandbox.
func (s *Server) sandboxKey(ctx context.Context) ([]byte, error) {
	sec, ok := s.reg.(interface {
		Secret(ctx context.Context, name string, make func() string) (string, error)
	})
	if !ok {
		return secretKey(filepath.Join(s.cfg.DataDir, "sandbox.key"))
	}
	v, err := sec.Secret(ctx, "sandbox-key", func() string {
		b := make([]byte, 32)
		rand.Read(b)
		return hex.EncodeToString(b)
	})
	if err != nil {
		return nil, fmt.Errorf("cluster sandbox key: %w", err)
	}
	key, err := hex.DecodeString(v)
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("cluster sandbox key in etcd is not 32 bytes of hex")
	}
	return key, nil
}

// secretKey reads a 32-byte key from path, creating it (mode 0600) on
// first use.
func secretKey(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) == 32 {
		return b, nil
	} else if err == nil {
		return nil, fmt.Errorf("%s is %d bytes, want 32: remove it to make a new one (outstanding sandbox tokens stop working)", path, len(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	b := make([]byte, 32)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	return b, nil
}

// portSuffix returns ":PORT" of addr, or "" when PORT is the scheme's
// default port dflt.
func portSuffix(addr, dflt string) string {
	if p := portOf(addr); p != "" && p != dflt {
		return ":" + p
	}
	return ""
}

// portOf returns the port of host:port.
func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return p
}

func (s *Server) deployFile(ctx context.Context, spec string, blobs blob.Store) error {
	name, path, ok := strings.Cut(spec, "=")
	if !ok {
		return fmt.Errorf("--deploy %q: want NAME=FILE.wasm", spec)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--deploy %s: %w", name, err)
	}
	defer f.Close()
	info, err := blobs.Put(ctx, "", f, 0)
	if err != nil {
		return fmt.Errorf("--deploy %s: %w", name, err)
	}
	if _, err := s.Node.Deploy(ctx, name, wire.DeployRequest{Module: info.Digest}); err != nil {
		return fmt.Errorf("--deploy %s: %w", name, err)
	}
	return nil
}

// Shutdown drains: it stops accepting, waits for in-flight requests (up to
// the drain timeout), then closes programs and stores.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.drain != nil {
		s.drain()
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DrainTimeout)
	defer cancel()
	errs := []error{}
	// Both app listeners drain at once.
	var tlsErr error
	var wg sync.WaitGroup
	if s.httpsFront != nil {
		wg.Go(func() { tlsErr = s.httpsFront.Shutdown(ctx) })
	}
	if s.httpFront != nil {
		errs = append(errs, s.httpFront.Shutdown(ctx))
	}
	wg.Wait()
	errs = append(errs, tlsErr)
	if s.left != nil {
		// Drained: out of the membership now.
		s.left()
	}
	if s.apiSrv != nil {
		// Log followers hold API connections open: close rather than wait.
		s.apiSrv.Close()
	}
	s.closeAll()
	return errors.Join(errs...)
}

func (s *Server) closeAll() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// adminToken reads the token file or creates it (mode 0600) on first start.
func adminToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("admin token file %s is empty; delete it to make a new token", path)
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("admin token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := "frost_" + hex.EncodeToString(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	return tok, f.Close()
}
