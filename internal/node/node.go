// Package node holds a machine's apps and serves their traffic: it maps a
// hostname to an app, enforces the app's limits (concurrency, body size),
// hands the request to the app's current program, and reports how the
// instance booted in Server-Timing and metrics. It also runs deploys:
// validate, compile and initialise the new release, then switch new requests
// to it atomically while in-flight requests finish on the old one.
package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/assets"
	"github.com/frostdev/frost/internal/blob"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/snapshot"
)

// Config configures a node.
type Config struct {
	// Domain: app NAME answers at NAME.Domain.
	Domain string
	// HTTPAddr is the app listener's address, used to print app URLs.
	HTTPAddr string
	// Defaults fill the limits a deploy leaves zero.
	Defaults registry.Limits
	// MaxModuleBytes caps an uploaded module.
	MaxModuleBytes int64
	// LogLines is how many recent log lines are kept per app.
	LogLines int
	Logger   *slog.Logger
	// Now is the clock (tests inject one).
	Now func() time.Time
	// Snapshots stores frozen apps' snapshots (nil: freezing drops the
	// state and every wake boots cold).
	Snapshots *snapshot.Store
	// Idle is the default idle timeout before an app is frozen.
	Idle time.Duration
	// IdleCheck is how often Run looks for idle apps.
	IdleCheck time.Duration
	// ReapEvery is how often Run reaps the snapshot store.
	ReapEvery time.Duration
	// MaxFrozenCode caps frozen apps whose compiled code stays in memory
	// for a fast wake; beyond it the least recently used are closed.
	MaxFrozenCode int
	// Name is the node's name in a cluster, sent on every answer in a
	// Frost-Node header ("" on one machine: no header).
	Name string
	// Replay, in a cluster, names the node a request refused here (the
	// app is at its concurrency limit) should go to instead; the answer
	// carries it in a Frost-Replay header for the gateway. nil or "":
	// none.
	Replay func(app string) string
	// WarmRank, in a cluster, is this node's place (0: the owner) in the
	// app's ring order; a node whose rank is under a release's Warm keeps
	// the app ready. nil: one machine (warm pools do not apply).
	WarmRank func(app string) int
	// Collectors are more metrics for the node's /metrics.
	Collectors []prometheus.Collector
	// Shared, in a cluster with shared storage, uploads the snapshots
	// this node bakes and fetches those it lacks (package replica). nil:
	// snapshots stay on the node that baked them.
	Shared Shared
	// BodyTimeout cuts a request body that goes this long without a byte
	// (or comes slower than front.MinBodyRate): 408 (0:
	// front.DefaultBodyTimeout). ServeHTTP paces those net/http serves
	// (front.PaceBody); the node's front, given the same, its own.
	BodyTimeout time.Duration
}

// Shared is a cluster's shared snapshot storage as a node uses it.
type Shared interface {
	// Baked queues the upload of a snapshot the node just stored.
	Baked(app, release string) error
	// FetchSnapshot pulls the release's shared snapshot into the node's
	// snapshot store and returns it, verified (not to be modified); the
	// error wraps snapshot.ErrNotFound if the cluster has none.
	FetchSnapshot(ctx context.Context, app, release string) (snapshot.Manifest, []snapshot.Part, error)
	// Woke records that the node woke the release from its snapshot.
	Woke(app, release string)
	// AppDeleted queues the deletion of a deleted app's blobs.
	AppDeleted(ap registry.App, rels []registry.Release) error
}

// ErrNameTaken: a tenant deployed to an app name another tenant (or the
// admin) owns.
var ErrNameTaken = errors.New("app name taken")

// maxWarm caps a release's warm pool.
const maxWarm = 16

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Domain:   "localhost",
		HTTPAddr: "127.0.0.1:8080",
		Defaults: registry.Limits{
			MemoryBytes:  128 << 20,
			Timeout:      10 * time.Second,
			Concurrency:  64,
			MaxBodyBytes: 16 << 20,
			FSBytes:      16 << 20,
		},
		MaxModuleBytes: 256 << 20,
		LogLines:       1000,
		Logger:         slog.New(slog.DiscardHandler),
		Now:            time.Now,
		Idle:           5 * time.Minute,
		IdleCheck:      time.Second,
		ReapEvery:      10 * time.Minute,
		MaxFrozenCode:  1024,
	}
}

// Node serves apps. It is safe for concurrent use.
type Node struct {
	cfg     Config
	reg     registry.Store
	blobs   blob.Store
	rt      runtime.Runtime
	log     *slog.Logger
	metrics *metrics
	logs    *logHub
	snaps   *snapshot.Store // nil: no snapshots
	name    []string        // the Frost-Node header's value, or nil

	// froze is set by every freeze; Run then hands the freed memory back
	// to the operating system (see returnMemory).
	froze atomic.Bool

	appsMu sync.Mutex // serialises changes to apps
	apps   atomic.Pointer[map[string]*app]
	// appsChanged is closed (and replaced, under appsMu) when an app is
	// added: requests for one the watch has yet to bring wait on it.
	appsChanged chan struct{}

	// following is set while Follow watches the registry; missNext paces
	// the registry reads of requests for apps this node does not know
	// (see awaitApp).
	following atomic.Bool
	missNext  atomic.Int64

	// changing holds a mutex per app name: deploys and deletes of one app
	// run one at a time, including two first deploys of a new name.
	changing sync.Map // string → *sync.Mutex
}

// lockApp serialises changes to the app name and returns the unlock.
func (n *Node) lockApp(name string) func() {
	mu, _ := n.changing.LoadOrStore(name, &sync.Mutex{})
	m := mu.(*sync.Mutex)
	m.Lock()
	return m.Unlock
}

// New returns a node that knows every app in reg; programs load lazily on
// their first request.
func New(ctx context.Context, cfg Config, reg registry.Store, blobs blob.Store, rt runtime.Runtime) (*Node, error) {
	def := DefaultConfig()
	cfg.Domain = strings.ToLower(strings.TrimSuffix(cfg.Domain, "."))
	if cfg.Domain == "" {
		cfg.Domain = def.Domain
	}
	if cfg.MaxModuleBytes <= 0 {
		cfg.MaxModuleBytes = def.MaxModuleBytes
	}
	if cfg.LogLines <= 0 {
		cfg.LogLines = def.LogLines
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if cfg.Now == nil {
		cfg.Now = def.Now
	}
	if cfg.Idle <= 0 {
		cfg.Idle = def.Idle
	}
	if cfg.IdleCheck <= 0 {
		cfg.IdleCheck = def.IdleCheck
	}
	if cfg.ReapEvery <= 0 {
		cfg.ReapEvery = def.ReapEvery
	}
	if cfg.MaxFrozenCode <= 0 {
		cfg.MaxFrozenCode = def.MaxFrozenCode
	}
	cfg.Defaults = fillLimits(cfg.Defaults, def.Defaults)
	n := &Node{cfg: cfg, reg: reg, blobs: blobs, rt: rt, log: cfg.Logger, logs: newLogHub(cfg.LogLines, cfg.Now), snaps: cfg.Snapshots}
	n.metrics = newMetrics(n.inflight, n.states)
	for _, c := range cfg.Collectors {
		if err := n.metrics.reg.Register(c); err != nil {
			return nil, fmt.Errorf("node metrics: %w", err)
		}
	}
	if cfg.Name != "" {
		n.name = []string{cfg.Name}
	}
	empty := map[string]*app{}
	n.apps.Store(&empty)
	n.appsChanged = make(chan struct{})
	list, err := reg.ListApps(ctx)
	if err != nil {
		return nil, fmt.Errorf("node: list apps: %w", err)
	}
	for _, a := range list {
		if a.Release == "" {
			continue
		}
		rel, err := reg.GetRelease(ctx, a.Name, a.Release)
		if err != nil {
			n.log.Warn("app release missing; app disabled until redeployed", "app", a.Name, "release", a.Release, "err", err)
			continue
		}
		n.putApp(n.newApp(a, rel))
	}
	return n, nil
}

// inflight reports every app's in-flight requests (read at scrape time, so
// the request path pays one atomic add, not a gauge update).
func (n *Node) inflight(fn func(app string, v int64)) {
	for name, a := range *n.apps.Load() {
		fn(name, a.inflight.Load())
	}
}

// states reports every app's state (1 live, 0 frozen) at scrape time.
func (n *Node) states(fn func(app string, v int64)) {
	for name, a := range *n.apps.Load() {
		v := int64(0)
		if a.cur.Load() != nil {
			v = 1
		}
		fn(name, v)
	}
}

// Metrics returns the Prometheus gatherer of the node's series.
func (n *Node) Metrics() prometheus.Gatherer { return n.metrics.reg }

func fillLimits(l, def registry.Limits) registry.Limits {
	if l.MemoryBytes <= 0 {
		l.MemoryBytes = def.MemoryBytes
	}
	if l.Timeout <= 0 {
		l.Timeout = def.Timeout
	}
	if l.Concurrency <= 0 {
		l.Concurrency = def.Concurrency
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = def.MaxBodyBytes
	}
	if l.FSBytes <= 0 {
		l.FSBytes = def.FSBytes
	}
	return l
}

// app is an app's live state on this node.
type app struct {
	name string
	// release is the current release; cur is its program once loaded.
	release atomic.Pointer[registry.Release]
	cur     atomic.Pointer[loaded]
	loadMu  sync.Mutex // one load or freeze at a time

	// frozen is the program frozen by the last freeze, kept (its code
	// compiled) for a fast wake; guarded by loadMu.
	frozen    *loaded
	frozenAt  atomic.Int64 // unix ns of the last freeze
	lastUsed  atomic.Int64 // unix ns of the last request (or deploy)
	freezes   atomic.Uint64
	fallbacks fallbackCounts // guarded by loadMu
	// wakeBoot is the boot of the last wake (1+runtime.Boot; 0 when
	// reported): the first request after a wake reports it, with wakeDur.
	wakeBoot  atomic.Int32
	wakeDur   atomic.Int64
	wakeFetch atomic.Int64 // of wakeDur, the time spent pulling the snapshot from shared storage
	wakeEnd   atomic.Int64 // unix ns when the last wake finished

	// waking is set while a background wake (warm pool) runs.
	waking atomic.Bool

	inflight   atomic.Int64
	requests   atomic.Uint64
	errors     atomic.Uint64
	boots      [3]atomic.Uint64
	limitKills [4]atomic.Uint64

	// env is the app's environment as the registry last had it: what a
	// program loaded or woken now is given. Set by deploys and env
	// changes made through this node.
	env atomic.Pointer[appEnv]

	// cached metric children for the hot path
	req200   prometheus.Counter
	duration prometheus.Observer
	bootCtr  [3]prometheus.Counter
}

// Limit kinds, indexes of app.limitKills.
const (
	limitMemory = iota
	limitCPU
	limitBody
	limitConcurrency
)

var limitNames = [...]string{"memory", "cpu", "body", "concurrency"}

func (n *Node) newApp(ap registry.App, rel registry.Release) *app {
	name := ap.Name
	a := &app{name: name}
	a.release.Store(&rel)
	a.setEnv(ap)
	a.lastUsed.Store(n.cfg.Now().UnixNano())
	a.req200 = n.metrics.requests.WithLabelValues(name, "200")
	a.duration = n.metrics.duration.WithLabelValues(name)
	n.setBootCounters(a, rel.Mode)
	return a
}

// appEnv is an app's environment at one version (registry.App.EnvVersion).
type appEnv struct {
	version int64
	vars    map[string]string
}

// setEnv records ap's environment unless a newer one is recorded already
// (two env changes may finish in either order).
func (a *app) setEnv(ap registry.App) {
	e := &appEnv{version: ap.EnvVersion, vars: ap.Env}
	for {
		old := a.env.Load()
		if old != nil && old.version > e.version {
			return
		}
		if a.env.CompareAndSwap(old, e) {
			return
		}
	}
}

func (n *Node) setBootCounters(a *app, mode registry.Mode) {
	for b := range a.bootCtr {
		a.bootCtr[b] = n.metrics.boots.WithLabelValues(a.name, string(mode), runtime.Boot(b).String())
	}
}

func (n *Node) lookup(name string) *app { return (*n.apps.Load())[name] }

func (n *Node) putApp(a *app) {
	n.appsMu.Lock()
	defer n.appsMu.Unlock()
	m := maps.Clone(*n.apps.Load())
	m[a.name] = a
	n.apps.Store(&m)
	close(n.appsChanged)
	n.appsChanged = make(chan struct{})
}

// changed returns the channel the next putApp closes.
func (n *Node) changed() <-chan struct{} {
	n.appsMu.Lock()
	defer n.appsMu.Unlock()
	return n.appsChanged
}

func (n *Node) removeApp(name string) *app {
	n.appsMu.Lock()
	defer n.appsMu.Unlock()
	old := *n.apps.Load()
	a := old[name]
	m := maps.Clone(old)
	delete(m, name)
	n.apps.Store(&m)
	return a
}

// loaded is a program with a reference count: a retired program closes when
// its last request finishes.
type loaded struct {
	rel     registry.Release
	prog    runtime.Program
	refs    atomic.Int64
	retired atomic.Bool
	once    sync.Once
}

func (l *loaded) release() {
	if l.refs.Add(-1) == 0 && l.retired.Load() {
		l.close()
	}
}

func (l *loaded) retire() {
	l.retired.Store(true)
	if l.refs.Load() == 0 {
		l.close()
	}
}

func (l *loaded) close() {
	l.once.Do(func() { l.prog.Close(context.Background()) })
}

// acquire returns the app's current program with a reference held, loading
// it on first use. The load is not the request's alone: the requests
// waiting behind it need it too, so it goes on when the request's context
// ends (its client left); only ctx's values are kept.
func (n *Node) acquire(ctx context.Context, a *app) (*loaded, error) {
	for {
		l := a.cur.Load()
		if l == nil {
			if err := n.load(context.WithoutCancel(ctx), a); err != nil {
				return nil, err
			}
			continue
		}
		l.refs.Add(1)
		if a.cur.Load() == l && !l.retired.Load() {
			return l, nil
		}
		l.release()
	}
}

// load makes the app's current release serve: the program frozen by the
// last freeze, or one compiled now (from the on-disk cache after a
// restart), woken from the release's snapshot if it is sound, else cold.
func (n *Node) load(ctx context.Context, a *app) error {
	a.loadMu.Lock()
	defer a.loadMu.Unlock()
	if a.cur.Load() != nil {
		return nil
	}
	start := time.Now()
	rel := *a.release.Load()
	env := a.env.Load().vars
	var prog runtime.Program
	var err error
	if l := a.frozen; l != nil {
		a.frozen = nil
		if l.rel.ID == rel.ID {
			prog = l.prog
			prog.SetEnv(env)
		} else {
			l.prog.Close(ctx)
		}
	}
	if prog == nil {
		prog, err = n.loadProgram(ctx, rel, env, true)
		if err != nil {
			return fmt.Errorf("load %s: %w", a.name, err)
		}
	}
	boot := runtime.BootCold
	var fetch time.Duration
	if f, ok := prog.(runtime.Freezer); ok && f.Frozen() {
		if boot, fetch, err = n.wake(ctx, a, rel, prog); err != nil {
			prog.Close(ctx)
			return fmt.Errorf("load %s: %w", a.name, err)
		}
	}
	end := time.Now()
	a.wakeDur.Store(int64(end.Sub(start)))
	a.wakeFetch.Store(int64(fetch))
	a.wakeEnd.Store(end.UnixNano())
	a.wakeBoot.Store(int32(boot) + 1)
	a.cur.Store(&loaded{rel: rel, prog: prog})
	return nil
}

// loadProgram reads a release's module and assets from the blob store and
// loads them.
// With frozen set and a runtime that can, the program is returned frozen,
// for wake.
func (n *Node) loadProgram(ctx context.Context, rel registry.Release, env map[string]string, frozen bool) (runtime.Program, error) {
	code, err := n.readBlob(ctx, "module", rel.Module)
	if err != nil {
		return nil, err
	}
	var tar []byte
	if rel.Assets != "" {
		if tar, err = n.readBlob(ctx, "assets", rel.Assets); err != nil {
			return nil, err
		}
	}
	if t, ok := n.rt.(runtime.Thawer); ok && frozen {
		return t.LoadFrozen(ctx, n.spec(rel, code, tar, env))
	}
	return n.startProgram(ctx, rel, code, tar, env)
}

// startProgram loads a release whose blobs are already read.
func (n *Node) startProgram(ctx context.Context, rel registry.Release, code, tar []byte, env map[string]string) (runtime.Program, error) {
	return n.rt.Load(ctx, n.spec(rel, code, tar, env))
}

// spec is what the runtime needs to load rel.
func (n *Node) spec(rel registry.Release, code, tar []byte, env map[string]string) runtime.Spec {
	name := rel.App
	return runtime.Spec{
		Release: rel,
		Code:    code,
		Assets:  tar,
		Env:     env,
		Logs: func(stream string, line []byte) {
			n.logs.add(api.LogLine{App: name, Release: rel.ID, Stream: stream, Message: string(line)})
		},
	}
}

// readBlob reads a whole blob; what ("module", "assets") names it in errors.
func (n *Node) readBlob(ctx context.Context, what, digest string) ([]byte, error) {
	rc, info, err := n.blobs.Open(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, digest, err)
	}
	defer rc.Close()
	buf := bytes.NewBuffer(make([]byte, 0, info.Size))
	if _, err := io.Copy(buf, rc); err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, digest, err)
	}
	return buf.Bytes(), nil
}

// readAssets reads and checks the uploaded assets archive with SHA-256
// digest; a missing blob or a bad archive is ErrInvalid.
func (n *Node) readAssets(ctx context.Context, digest string) (blob.Info, []byte, error) {
	info, err := n.blobs.Stat(ctx, digest)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrInvalidDigest) {
			return blob.Info{}, nil, fmt.Errorf("%w: assets %q have not been uploaded (PUT /v1/blobs/{sha256} first; frost deploy --assets DIR does it)", ErrInvalid, digest)
		}
		return blob.Info{}, nil, err
	}
	tar, err := n.readBlob(ctx, "assets", info.Digest)
	if err != nil {
		return blob.Info{}, nil, err
	}
	if _, err := assets.Parse(tar); err != nil {
		return blob.Info{}, nil, fmt.Errorf("%w: assets %s: %v", ErrInvalid, shortID(info.Digest), err)
	}
	return info, tar, nil
}

// ErrInvalid wraps deploy input errors (bad name, bad limits, missing blob,
// a bad assets archive).
var ErrInvalid = errors.New("invalid deploy")

// ValidAppName reports whether name can be an app (a DNS label); the rule
// and its messages are the public client's, api.ValidAppName.
func ValidAppName(name string) error {
	if err := api.ValidAppName(name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// Deploy creates a release of app name from an uploaded module and switches
// new requests to it. Nothing changes if any step fails.
func (n *Node) Deploy(ctx context.Context, name string, req api.DeployRequest) (registry.Release, error) {
	rel, err := n.deploy(ctx, name, req)
	result := "ok"
	switch {
	case errors.Is(err, ErrInvalid), errors.Is(err, runtime.ErrInvalidCode), errors.Is(err, runtime.ErrUnsupportedShape), errors.Is(err, runtime.ErrInit),
		errors.Is(err, runtime.ErrMemoryLimit):
		result = "invalid"
	case err != nil:
		result = "error"
	}
	n.metrics.deploys.WithLabelValues(result).Inc()
	return rel, err
}

func (n *Node) deploy(ctx context.Context, name string, req api.DeployRequest) (registry.Release, error) {
	if err := ValidAppName(name); err != nil {
		return registry.Release{}, err
	}
	mode := registry.Mode(req.Mode)
	switch mode {
	case "":
		mode = registry.ModeRequest
	case registry.ModeRequest, registry.ModeSession:
	default:
		return registry.Release{}, fmt.Errorf("%w: mode %q: must be request or session", ErrInvalid, req.Mode)
	}
	for k, v := range req.Env {
		if err := validEnv(k, v); err != nil {
			return registry.Release{}, err
		}
	}
	limits := registry.Limits{
		MemoryBytes:  req.Limits.MemoryBytes,
		Timeout:      time.Duration(req.Limits.Timeout),
		Concurrency:  req.Limits.Concurrency,
		MaxBodyBytes: req.Limits.MaxBodyBytes,
		FSBytes:      req.Limits.FSBytes,
	}
	if limits.MemoryBytes < 0 || limits.Timeout < 0 || limits.Concurrency < 0 || limits.MaxBodyBytes < 0 || limits.FSBytes < 0 {
		return registry.Release{}, fmt.Errorf("%w: limits must not be negative", ErrInvalid)
	}
	idle := time.Duration(req.Idle)
	switch {
	case idle < 0:
		return registry.Release{}, fmt.Errorf("%w: idle must not be negative", ErrInvalid)
	case idle == 0:
		idle = n.cfg.Idle
	case idle < 100*time.Millisecond:
		return registry.Release{}, fmt.Errorf("%w: idle %s is too short; use at least 100ms", ErrInvalid, idle)
	}
	if req.Warm < 0 || req.Warm > maxWarm {
		return registry.Release{}, fmt.Errorf("%w: warm %d: a warm pool is 0 to %d nodes", ErrInvalid, req.Warm, maxWarm)
	}
	limits = fillLimits(limits, n.cfg.Defaults)
	info, err := n.blobs.Stat(ctx, req.Module)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrInvalidDigest) {
			return registry.Release{}, fmt.Errorf("%w: module %q has not been uploaded (PUT /v1/blobs/{sha256} first)", ErrInvalid, req.Module)
		}
		return registry.Release{}, err
	}
	code, err := n.readBlob(ctx, "module", req.Module)
	if err != nil {
		return registry.Release{}, err
	}
	shape, err := n.rt.Inspect(code)
	if err != nil {
		return registry.Release{}, err
	}
	var assetsInfo blob.Info
	var tar []byte
	if req.Assets != "" {
		if assetsInfo, tar, err = n.readAssets(ctx, req.Assets); err != nil {
			return registry.Release{}, err
		}
	}

	unlock := n.lockApp(name)
	defer unlock()

	cur, err := n.reg.GetApp(ctx, name)
	if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return registry.Release{}, err
	}
	env := maps.Clone(cur.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, req.Env)

	rel := registry.Release{
		App:        name,
		Runtime:    n.rt.Name(),
		Module:     info.Digest,
		ModuleSize: info.Size,
		Shape:      shape,
		Mode:       mode,
		Limits:     limits,
		Assets:     assetsInfo.Digest,
		AssetsSize: assetsInfo.Size,
		Idle:       idle,
		Warm:       req.Warm,
	}
	rel.ID = releaseID(rel)
	rel.Version = cur.Version + 1
	rel.CreatedAt = n.cfg.Now().UTC()
	if old, err := n.reg.GetRelease(ctx, name, rel.ID); err == nil {
		rel = old // the same code and config: redeploying it makes it current again
	}

	// Compile and initialise before anything is stored: a guest that fails
	// here changes nothing.
	prog, err := n.startProgram(ctx, rel, code, tar, env)
	if err != nil {
		return registry.Release{}, err
	}
	if req.Bake {
		if err := n.bake(ctx, rel, prog); err != nil {
			prog.Close(ctx)
			return registry.Release{}, err
		}
	}

	tenant, scoped := registry.TenantOf(ctx)
	if _, err := n.reg.UpdateApp(ctx, name, true, func(ap *registry.App) error {
		switch {
		case ap.CreatedAt.IsZero():
			ap.CreatedAt = rel.CreatedAt
			ap.Tenant = tenant
		case scoped && ap.Tenant != tenant:
			return fmt.Errorf("%w: the app name %q is taken; pick another", ErrNameTaken, name)
		}
		return nil
	}); err != nil {
		prog.Close(ctx)
		return registry.Release{}, err
	}
	if err := n.reg.PutRelease(ctx, rel); err != nil && !errors.Is(err, registry.ErrExists) {
		prog.Close(ctx)
		return registry.Release{}, err
	}
	ap, err := n.reg.UpdateApp(ctx, name, false, func(ap *registry.App) error {
		ap.Release = rel.ID
		if rel.Version > ap.Version {
			ap.Version = rel.Version
		}
		if len(req.Env) > 0 {
			ap.Env = env
			ap.EnvVersion++
		}
		ap.UpdatedAt = n.cfg.Now().UTC()
		return nil
	})
	if err != nil {
		prog.Close(ctx)
		return registry.Release{}, err
	}

	// Switch: new requests take the new program; the old one closes when its
	// last in-flight request ends. Snapshots of other releases are worthless.
	if a := n.lookup(name); a == nil {
		fresh := n.newApp(ap, rel)
		fresh.cur.Store(&loaded{rel: rel, prog: prog})
		n.putApp(fresh)
	} else {
		a.loadMu.Lock()
		a.release.Store(&rel)
		a.setEnv(ap)
		n.setBootCounters(a, rel.Mode)
		old := a.cur.Swap(&loaded{rel: rel, prog: prog})
		if old != nil {
			old.retire()
		}
		if f := a.frozen; f != nil {
			a.frozen = nil
			f.prog.Close(ctx)
		}
		a.lastUsed.Store(n.cfg.Now().UnixNano())
		a.loadMu.Unlock()
	}
	if n.snaps != nil {
		if _, err := n.snaps.DeleteApp(name, rel.ID); err != nil {
			n.log.Warn("deleting old snapshots", "app", name, "err", err)
		}
	}
	n.logs.add(api.LogLine{App: name, Release: rel.ID, Stream: "frost", Level: "info",
		Message: fmt.Sprintf("deployed release v%d (%s, %s, %s)", rel.Version, shortID(rel.ID), shape, mode)})
	n.log.Info("deployed", "app", name, "version", rel.Version, "release", rel.ID, "shape", shape)
	return rel, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// releaseID derives a release's ID from its app, code, assets and config:
// the same deploy of the same app gives the same release back, and two apps
// never share a release (snapshots and, in a cluster, routes are keyed by
// release).
func releaseID(r registry.Release) string {
	b, _ := json.Marshal(struct {
		App, Runtime, Module, Mode string
		Limits                     registry.Limits
		Assets                     string        `json:",omitempty"`
		Idle                       time.Duration `json:",omitempty"`
		Warm                       int           `json:",omitempty"`
	}{r.App, r.Runtime, r.Module, string(r.Mode), r.Limits, r.Assets, r.Idle, r.Warm})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// validEnv checks one environment variable: WASI (and every libc) cannot
// carry a name with '=' or NUL, nor a value with NUL.
func validEnv(k, v string) error {
	if k == "" || strings.ContainsAny(k, "=\x00") {
		return fmt.Errorf("%w: environment variable name %q must be non-empty and contain no '=' or NUL", ErrInvalid, k)
	}
	if strings.ContainsRune(v, 0) {
		return fmt.Errorf("%w: the value of environment variable %s contains a NUL byte", ErrInvalid, k)
	}
	return nil
}

// Delete removes an app: its registry entry, its releases and its program.
func (n *Node) Delete(ctx context.Context, name string) error {
	unlock := n.lockApp(name)
	defer unlock()
	var ap registry.App
	var rels []registry.Release
	if n.cfg.Shared != nil {
		// What the app refers to, for the shared store's clean-up.
		var err error
		if ap, err = n.reg.GetApp(ctx, name); err != nil {
			return err
		}
		if rels, err = n.reg.ListReleases(ctx, name); err != nil {
			return err
		}
	}
	if err := n.reg.DeleteApp(ctx, name); err != nil {
		return err
	}
	n.forgetApp(ctx, name)
	if n.cfg.Shared != nil {
		if err := n.cfg.Shared.AppDeleted(ap, rels); err != nil {
			n.log.Error("queueing the deletion of a deleted app's blobs", "app", name, "err", err)
		}
	}
	return nil
}

// forgetApp drops a deleted app: its program closes when its last request
// ends, its snapshots, metrics and logs go. The caller holds lockApp.
func (n *Node) forgetApp(ctx context.Context, name string) {
	if a := n.removeApp(name); a != nil {
		a.loadMu.Lock()
		if l := a.cur.Swap(nil); l != nil {
			l.retire()
		}
		if f := a.frozen; f != nil {
			a.frozen = nil
			f.prog.Close(ctx)
		}
		a.loadMu.Unlock()
	}
	if n.snaps != nil {
		if _, err := n.snaps.DeleteApp(name, ""); err != nil {
			n.log.Warn("deleting snapshots", "app", name, "err", err)
		}
	}
	n.metrics.forget(name)
	n.logs.drop(name)
}

// SetEnv changes an app's environment; new instances see it, no redeploy.
func (n *Node) SetEnv(ctx context.Context, name string, req api.EnvRequest) (registry.App, error) {
	for k, v := range req.Set {
		if err := validEnv(k, v); err != nil {
			return registry.App{}, err
		}
	}
	ap, err := n.reg.UpdateApp(ctx, name, false, func(ap *registry.App) error {
		if ap.Env == nil {
			ap.Env = map[string]string{}
		}
		maps.Copy(ap.Env, req.Set)
		for _, k := range req.Unset {
			delete(ap.Env, k)
		}
		ap.EnvVersion++
		ap.UpdatedAt = n.cfg.Now().UTC()
		return nil
	})
	if err != nil {
		return ap, err
	}
	if a := n.lookup(name); a != nil {
		// Under loadMu: a load in progress finishes first and is then
		// given the new environment, or starts after and reads it.
		a.loadMu.Lock()
		a.setEnv(ap)
		if l := a.cur.Load(); l != nil {
			l.prog.SetEnv(a.env.Load().vars)
		}
		a.loadMu.Unlock()
	}
	return ap, nil
}

// Apps lists every app.
func (n *Node) Apps(ctx context.Context) ([]api.App, error) {
	list, err := n.reg.ListApps(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.App, 0, len(list))
	for _, ap := range list {
		var rel registry.Release
		if a := n.lookup(ap.Name); a != nil {
			rel = *a.release.Load()
		}
		out = append(out, n.wireApp(ap, rel))
	}
	return out, nil
}

func (n *Node) wireApp(ap registry.App, rel registry.Release) api.App {
	return api.App{
		Name:       ap.Name,
		URL:        n.AppURL(ap.Name),
		Release:    ap.Release,
		Version:    rel.Version,
		Mode:       string(rel.Mode),
		Shape:      rel.Shape,
		EnvKeys:    slices.Sorted(maps.Keys(ap.Env)),
		EnvVersion: ap.EnvVersion,
		CreatedAt:  ap.CreatedAt,
		UpdatedAt:  ap.UpdatedAt,
		Tenant:     ap.Tenant,
	}
}

// AppURL is where an app answers.
func (n *Node) AppURL(name string) string {
	port := ""
	if _, p, err := net.SplitHostPort(n.cfg.HTTPAddr); err == nil && p != "80" {
		port = ":" + p
	}
	return "http://" + name + "." + n.cfg.Domain + port + "/"
}

// App returns an app's details.
func (n *Node) App(ctx context.Context, name string) (api.AppDetail, error) {
	ap, err := n.reg.GetApp(ctx, name)
	if err != nil {
		return api.AppDetail{}, err
	}
	rels, err := n.reg.ListReleases(ctx, name)
	if err != nil {
		return api.AppDetail{}, err
	}
	var cur registry.Release
	for _, r := range rels {
		if r.ID == ap.Release {
			cur = r
		}
	}
	d := api.AppDetail{App: n.wireApp(ap, cur), Limits: wireLimits(cur.Limits), State: "frozen", Idle: api.Duration(cur.Idle), Warm: cur.Warm}
	if n.snaps != nil && cur.ID != "" {
		if m, size, used, err := n.snaps.Stat(cur.ID); err == nil {
			d.Snapshot = &api.Snapshot{Release: cur.ID, Size: size, Created: m.Created, LastUsed: used}
		}
	}
	if s := ap.Snapshot; s != nil && s.Release == cur.ID {
		d.SharedSnapshot = &api.SharedSnapshot{Release: s.Release, Blob: s.Blob, Size: s.Size, Bytes: s.Bytes, Node: s.Node, Uploaded: s.Uploaded, Used: s.Used}
	}
	for _, r := range rels {
		d.Releases = append(d.Releases, WireRelease(r))
	}
	d.Counters = api.Counters{Boots: map[string]uint64{}, LimitKills: map[string]uint64{}}
	if a := n.lookup(name); a != nil {
		d.Counters.Requests = a.requests.Load()
		d.Counters.Errors = a.errors.Load()
		d.Counters.InFlight = a.inflight.Load()
		for b := range a.boots {
			d.Counters.Boots[runtime.Boot(b).String()] = a.boots[b].Load()
		}
		for k := range a.limitKills {
			d.Counters.LimitKills[limitNames[k]] = a.limitKills[k].Load()
		}
		if l := a.cur.Load(); l != nil {
			d.Counters.Instances = l.prog.Stats().Instances
			d.State = "live"
		}
		d.Counters.Freezes = a.freezes.Load()
		a.loadMu.Lock()
		d.Counters.Fallbacks = a.fallbacks.snapshot()
		a.loadMu.Unlock()
	}
	return d, nil
}

func wireLimits(l registry.Limits) api.Limits {
	return api.Limits{MemoryBytes: l.MemoryBytes, Timeout: api.Duration(l.Timeout), Concurrency: l.Concurrency, MaxBodyBytes: l.MaxBodyBytes, FSBytes: l.FSBytes}
}

// WireRelease converts a release to its wire form.
func WireRelease(r registry.Release) api.Release {
	return api.Release{ID: r.ID, App: r.App, Version: r.Version, Runtime: r.Runtime, Module: r.Module, ModuleSize: r.ModuleSize,
		Shape: r.Shape, Mode: string(r.Mode), Limits: wireLimits(r.Limits), Assets: r.Assets, AssetsSize: r.AssetsSize,
		CreatedAt: r.CreatedAt}
}

// Logs streams an app's recent log lines (and new ones when follow is set).
func (n *Node) Logs(ctx context.Context, name string, tail int, follow bool, fn func(api.LogLine) error) error {
	if _, err := n.reg.GetApp(ctx, name); err != nil {
		return err
	}
	if !follow {
		for _, l := range n.logs.tail(name, tail) {
			if err := fn(l); err != nil {
				return err
			}
		}
		return nil
	}
	return n.logs.follow(ctx, name, tail, fn)
}

// Close closes every program.
func (n *Node) Close(ctx context.Context) error {
	for _, a := range *n.apps.Load() {
		a.loadMu.Lock()
		if l := a.cur.Swap(nil); l != nil {
			l.retire()
		}
		if f := a.frozen; f != nil {
			a.frozen = nil
			f.prog.Close(ctx)
		}
		a.loadMu.Unlock()
	}
	return nil
}

// itoa3 formats small status codes without allocating for common ones.
func itoa3(code int) string {
	switch code {
	case 200:
		return "200"
	case 404:
		return "404"
	case 500:
		return "500"
	}
	return strconv.Itoa(code)
}
