// Package sandbox manages agent sandboxes: full Linux environments that a
// coding agent creates, runs commands in, reads and writes files of,
// reaches the ports of, pauses to storage and resumes. A
// runtime.BoxRuntime (gvisor) runs them; this package owns everything
// around that: IDs, records in the registry, templates, per-sandbox access
// tokens, timeouts, and checkpoints in a snapshot store.
//
// Lifecycle: create (boot from the template's root file system, or restore
// the template's built snapshot) → running → pause (checkpoint: memory,
// processes and the writable layer, as files in the snapshot store, with
// the same manifest and SHA-256 verification as every snapshot) → paused
// (no process, no memory) → resume (verify, restore) → running … → kill
// (everything removed). Anything that needs a paused sandbox running —
// exec, files, a request to one of its ports — resumes it first. A
// checkpoint that fails verification is never restored: it is quarantined,
// counted, and the sandbox boots afresh from its template (Boot "cold"),
// which the API reports.
//
// Files and ports go through the agent (package agent): the frost binary,
// mounted read-only into every sandbox at AgentPath and run with Exec.
package sandbox

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/snapshot"
)

// AgentPath is where the frost binary is mounted in every sandbox.
const AgentPath = "/.frost/frost"

// Errors, checked with errors.Is.
var (
	ErrNotFound = errors.New("no such sandbox")
	ErrInvalid  = errors.New("invalid request")
	// ErrGone: the sandbox was killed while the call waited.
	ErrGone = errors.New("sandbox was killed")
	// ErrDied: the sandbox ended on its own during the call (the host
	// killed it: out of memory); its next use boots it afresh.
	ErrDied = errors.New("the sandbox died")
	// ErrElsewhere: in a cluster, the sandbox belongs to another node (its
	// ID carries that node's tag), which holds its state; this node will
	// not run a copy of it.
	ErrElsewhere = errors.New("sandbox is held by another node")
	// ErrForbidden: a tenant asked to change what is the admin's.
	ErrForbidden = errors.New("forbidden")
)

// Config configures a Manager. Zero fields take DefaultConfig's values.
type Config struct {
	// Dir holds scratch space for checkpoints on their way to and from
	// the snapshot store.
	Dir string
	// BaseRootFS is the root file system of the "base" template, which
	// exists whenever it is set.
	BaseRootFS string
	// Key signs access tokens; it must stay the same across restarts.
	Key []byte
	// TokenTTL is how long an access token is valid.
	TokenTTL time.Duration
	// Domain and HTTPPort make each sandbox's port URL.
	Domain   string
	HTTPPort string
	// IDTag starts every new sandbox ID (in a cluster, the node's tag:
	// gateway.SandboxTag), so that PORT-ID.DOMAIN names the node that
	// holds the sandbox. Lower-case letters and digits, under 20.
	IDTag string
	// Node is this node's name in a cluster ("" on one machine): the
	// holder new sandboxes record (registry.Sandbox.Node). Live says
	// whether a node is a live member (nil: none is, but this one).
	Node string
	Live func(node string) bool
	// Shared, if set, is the cluster's shared storage: every checkpoint
	// is uploaded there after its pause, so that another node can resume
	// the sandbox if this one leaves (cluster.go).
	Shared Shared
	// Defaults fill a create request's zero fields.
	Limits    registry.SandboxLimits
	Timeout   time.Duration
	OnTimeout string
	// MaxTimeout caps a requested timeout.
	MaxTimeout time.Duration
	// Check is how often Run applies timeouts.
	Check time.Duration
	// MetricsEvery is how often Run samples what each running sandbox
	// uses; MetricsKept how long samples are kept (metrics.go; 0: the
	// defaults).
	MetricsEvery, MetricsKept time.Duration
	Logger                    *slog.Logger
	Now                       func() time.Time
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		TokenTTL:   24 * time.Hour,
		Domain:     "localhost",
		HTTPPort:   "8080",
		Limits:     registry.SandboxLimits{MemoryBytes: 512 << 20, CPUs: 1, Pids: 512},
		Timeout:    5 * time.Minute,
		OnTimeout:  "pause",
		MaxTimeout: 24 * time.Hour,
		Check:      time.Second,
		Logger:     slog.New(slog.DiscardHandler),
		Now:        time.Now,
	}
}

// Manager runs agent sandboxes. Safe for concurrent use.
type Manager struct {
	cfg   Config
	reg   registry.Store
	snaps *snapshot.Store
	rt    runtime.BoxRuntime

	mu   sync.Mutex
	sbs  map[string]*sb // every sandbox this process has touched
	done bool           // Close ran
	// sharing: uploads of checkpoints under way; shareAfter: when to
	// try again after a failed one. uploads waits for them at Close.
	sharing    map[string]bool
	shareAfter map[string]time.Time
	uploads    sync.WaitGroup
	// spent: removals of checkpoints resumes used, waited for at Close;
	// pinned: checkpoints a fork or snapshot still reads (fork.go), whose
	// removal waits for it.
	spent  sync.WaitGroup
	pinned map[string]*pin

	shares, tookOver atomic.Int64
	// deaths counts the boxes found dead (Deaths).
	deaths atomic.Int64
}

// sb is one sandbox's in-memory state.
type sb struct {
	id string
	// life is held exclusively to change the sandbox (create, pause,
	// resume, kill) and shared by everything that uses a running one
	// (exec, files, ports), so a pause waits for calls in flight. A pause
	// or kill first interrupts them (lock): a command may run for ever.
	// A pause only detaches the calls (runtime.ErrDetach): their commands
	// are checkpointed with the sandbox and run on after its resume, as
	// on a machine that was suspended; a kill ends them with it.
	life sync.RWMutex
	um   sync.Mutex
	// users is the context of every call in flight; a pause or kill
	// cancels it with errPaused or errKilled as its cause, and makes a
	// new one when done.
	users     context.Context
	stopUsers context.CancelCauseFunc
	box       runtime.Box // nil while paused or not yet resumed; guarded by life
	boot      string      // how box came up: cold, restore, resume
	// fallback says why the last start could not use its snapshot.
	fallback string
	gone     bool // killed; guarded by life
	// died says why its box ended on its own (bury), until its next
	// start; guarded by life.
	died string
	// metrics is what it used while it ran here (metrics.go).
	metrics series
	// capture serialises forks and snapshots of it (fork.go).
	capture sync.Mutex
	// netMu serialises changes of its network limits (network.go), so
	// that the last recorded is the box's.
	netMu sync.Mutex
	// public caches whether its ports are public (publicPorts): 0 not
	// read yet, publicNo, publicYes.
	public atomic.Int32
}

// New returns a manager. snaps holds sandbox checkpoints only: it must
// have no size cap and no TTL, since a paused sandbox's checkpoint is the
// only copy of its state.
func New(cfg Config, reg registry.Store, snaps *snapshot.Store, rt runtime.BoxRuntime) (*Manager, error) {
	def := DefaultConfig()
	if cfg.Dir == "" {
		return nil, errors.New("sandbox: no scratch directory")
	}
	if len(cfg.Key) < 16 {
		return nil, errors.New("sandbox: token key shorter than 16 bytes")
	}
	if err := checkMetrics(&cfg); err != nil {
		return nil, err
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = def.TokenTTL
	}
	if cfg.Domain == "" {
		cfg.Domain = def.Domain
	}
	if cfg.HTTPPort == "" {
		cfg.HTTPPort = def.HTTPPort
	}
	if len(cfg.IDTag) >= idLen || !ValidID(cfg.IDTag+"0000") {
		return nil, fmt.Errorf("sandbox: ID tag %q: want fewer than %d lower-case letters and digits", cfg.IDTag, idLen)
	}
	if cfg.Limits.MemoryBytes <= 0 {
		cfg.Limits.MemoryBytes = def.Limits.MemoryBytes
	}
	if cfg.Limits.CPUs <= 0 {
		cfg.Limits.CPUs = def.Limits.CPUs
	}
	if cfg.Limits.Pids <= 0 {
		cfg.Limits.Pids = def.Limits.Pids
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = def.Timeout
	}
	if cfg.OnTimeout == "" {
		cfg.OnTimeout = def.OnTimeout
	}
	if cfg.MaxTimeout <= 0 {
		cfg.MaxTimeout = def.MaxTimeout
	}
	if cfg.Check <= 0 {
		cfg.Check = def.Check
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	if cfg.Now == nil {
		cfg.Now = def.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	// Scratch left by a crash is worthless: checkpoints are committed to
	// the snapshot store or not at all.
	if entries, err := os.ReadDir(cfg.Dir); err == nil {
		for _, e := range entries {
			os.RemoveAll(filepath.Join(cfg.Dir, e.Name()))
		}
	}
	m := &Manager{cfg: cfg, reg: reg, snaps: snaps, rt: rt, sbs: map[string]*sb{}, pinned: map[string]*pin{}, sharing: map[string]bool{}, shareAfter: map[string]time.Time{}}
	if err := m.adopt(context.Background()); err != nil {
		return nil, err
	}
	if cfg.BaseRootFS != "" {
		if err := m.reg.PutTemplate(context.Background(), registry.Template{
			Name: "base", Runtime: rt.Name(), RootFS: cfg.BaseRootFS, CreatedAt: cfg.Now().UTC(),
		}); err != nil {
			return nil, fmt.Errorf("sandbox: base template: %w", err)
		}
	}
	return m, nil
}

// adopt takes over the boxes a previous server left running (it crashed
// or was killed before it could pause them): a record that says running
// on this node and a box the runtime still runs are joined again, with
// nothing lost. Boxes no such record claims are removed, and so are local
// checkpoints no sandbox this node holds is paused at (tidyLocal).
func (m *Manager) adopt(ctx context.Context) error {
	recs, err := m.reg.ListSandboxes(ctx)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	m.tidyLocal(recs)
	m.tidyTemplates(ctx, templateGrace)
	at, ok := m.rt.(runtime.Attacher)
	if !ok {
		return nil
	}
	running := map[string]bool{}
	for _, r := range recs {
		if r.State != registry.SandboxRunning || !m.mine(r) {
			continue
		}
		if box, ok := at.Attach(ctx, r.ID); ok {
			s := m.state(r.ID)
			m.started(s, box, "reattach")
			running[r.ID] = true
			m.cfg.Logger.Info("re-attached a sandbox left running", "sandbox", r.ID)
		}
	}
	at.Sweep(func(id string) bool { return running[id] })
	return nil
}

// owns says whether the sandbox is this manager's to time out: in a
// cluster, the one whose ID carries this node's tag (the registry is
// shared; every node sees every sandbox).
func (m *Manager) owns(id string) bool { return strings.HasPrefix(id, m.cfg.IDTag) }

// state returns the in-memory state of id, creating it.
func (m *Manager) state(id string) *sb {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sbs[id]
	if s == nil {
		s = &sb{id: id}
		s.users, s.stopUsers = context.WithCancelCause(context.Background())
		m.sbs[id] = s
	}
	return s
}

// lock ends every call in flight on the sandbox for why (errPaused or
// errKilled), so that a pause or a kill does not wait for commands that
// may never end, and takes life once they have let go; unlock lets new
// calls in.
func (s *sb) lock(why error) {
	s.um.Lock()
	s.stopUsers(why)
	s.um.Unlock()
	s.life.Lock()
}

func (s *sb) unlock() {
	s.um.Lock()
	if s.users.Err() != nil {
		s.users, s.stopUsers = context.WithCancelCause(context.Background())
	}
	s.um.Unlock()
	s.life.Unlock()
}

// usersCtx is the context of calls in flight.
func (s *sb) usersCtx() context.Context {
	s.um.Lock()
	defer s.um.Unlock()
	return s.users
}

// idLen is the length of a sandbox ID.
const idLen = 20

// newID returns a fresh sandbox ID: 20 characters of [a-z0-9], so it fits
// in a hostname label next to a port number, starting with the IDTag.
func (m *Manager) newID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, idLen)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	copy(b, m.cfg.IDTag)
	return string(b)
}

// ValidID reports whether id has the shape of a sandbox ID.
func ValidID(id string) bool {
	if len(id) < 4 || len(id) > 40 {
		return false
	}
	for _, c := range id {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Create starts a new sandbox from the template req names as the caller
// sees it (Template): its record keeps the template's key, so that a fork
// or a cold boot later finds the same one.
func (m *Manager) Create(ctx context.Context, req api.SandboxCreateRequest) (api.Sandbox, error) {
	if req.Template == "" {
		req.Template = "base"
	}
	_, key, err := m.template(ctx, req.Template)
	if errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("%w: no template %q; list them with GET /v1/templates", ErrInvalid, req.Template)
	}
	if err != nil {
		return api.Sandbox{}, err
	}
	req.Template = key
	return m.create(ctx, req, "")
}

// template finds the template ctx's caller means by ref, NAME or
// TENANT/NAME, and its registry key. A tenant's NAME is its own template
// of that name, else the admin's; the admin's is the admin's. A template
// the caller may not see is not found (ErrNotFound), as one that does
// not exist: a tenant learns nothing of another's names.
func (m *Manager) template(ctx context.Context, ref string) (registry.Template, string, error) {
	owner, name, qualified := strings.Cut(ref, "/")
	if !qualified {
		owner, name = "", ref
	}
	if !api.ValidTemplateRef(ref) {
		return registry.Template{}, "", fmt.Errorf("%w: template %q: a name is 1-63 lower-case letters, digits and '-' (TENANT/NAME for a tenant's)", ErrInvalid, ref)
	}
	tenant, isTenant := registry.TenantOf(ctx)
	if isTenant && !qualified {
		owner = tenant
	}
	// The owner's key, then the plain name: the admin's template, or
	// the owner's recorded before names were per tenant.
	keys := []string{registry.TemplateKey(owner, name)}
	if owner != "" {
		keys = append(keys, name)
	}
	for _, key := range keys {
		t, err := m.reg.GetTemplate(ctx, key)
		if errors.Is(err, registry.ErrNotFound) {
			continue
		}
		if err != nil {
			return t, "", err
		}
		if visible(ctx, t) && (t.Tenant == owner || t.Tenant == "" && !qualified) {
			return t, key, nil
		}
	}
	return registry.Template{}, "", fmt.Errorf("%w: no template %q", ErrNotFound, ref)
}

// create starts a new sandbox from its template or, given image (a
// directory of checkpoint files, verified: a fork's), by restoring that,
// with no fallback: a fork that cannot restore fails.
func (m *Manager) create(ctx context.Context, req api.SandboxCreateRequest, image string) (api.Sandbox, error) {
	rec, err := m.recordFor(req)
	rec.Tenant, _ = registry.TenantOf(ctx)
	if err != nil {
		return api.Sandbox{}, err
	}
	tpl, err := m.reg.GetTemplate(ctx, rec.Template)
	if errors.Is(err, registry.ErrNotFound) || err == nil && !visible(ctx, tpl) {
		return api.Sandbox{}, fmt.Errorf("%w: no template %q; list them with GET /v1/templates", ErrInvalid, rec.Template)
	}
	if err != nil {
		return api.Sandbox{}, err
	}
	rec.Runtime, rec.Node = tpl.Runtime, m.cfg.Node
	s := m.state(rec.ID)
	s.life.Lock()
	defer s.life.Unlock()
	if _, err := m.reg.UpdateSandbox(ctx, rec.ID, true, func(r *registry.Sandbox) error { *r = rec; return nil }); err != nil {
		return api.Sandbox{}, err
	}
	var err2 error
	if image != "" {
		var box runtime.Box
		if box, err2 = m.rt.Restore(ctx, spec(rec, tpl), image); err2 == nil {
			m.started(s, box, "fork")
		}
	} else {
		err2 = m.start(ctx, s, &rec, tpl)
	}
	if err2 != nil {
		m.reg.DeleteSandbox(context.Background(), rec.ID)
		m.forget(rec.ID)
		return api.Sandbox{}, err2
	}
	return m.view(rec, s.boot), nil
}

// recordFor checks a create request and fills in the defaults.
func (m *Manager) recordFor(req api.SandboxCreateRequest) (registry.Sandbox, error) {
	now := m.cfg.Now().UTC()
	rec := registry.Sandbox{
		ID: m.newID(), Template: req.Template, State: registry.SandboxRunning,
		Limits: m.cfg.Limits, Env: maps.Clone(req.Env), Metadata: maps.Clone(req.Metadata),
		Timeout: time.Duration(req.Timeout), OnTimeout: req.OnTimeout, PublicPorts: req.PublicPorts, CreatedAt: now, UpdatedAt: now,
	}
	if rec.Template == "" {
		rec.Template = "base"
	}
	switch {
	case req.MemoryBytes < 0, req.CPUs < 0, req.Pids < 0, req.Timeout < 0:
		return rec, fmt.Errorf("%w: limits and timeout must not be negative", ErrInvalid)
	case req.MemoryBytes > 0 && req.MemoryBytes < 32<<20:
		return rec, fmt.Errorf("%w: memory_bytes %d is under the 32 MiB a Linux sandbox needs", ErrInvalid, req.MemoryBytes)
	case req.Pids > 0 && req.Pids < 8:
		return rec, fmt.Errorf("%w: pids %d is too few to run a shell", ErrInvalid, req.Pids)
	}
	if req.MemoryBytes > 0 {
		rec.Limits.MemoryBytes = req.MemoryBytes
	}
	if req.CPUs > 0 {
		rec.Limits.CPUs = req.CPUs
	}
	if req.Pids > 0 {
		rec.Limits.Pids = req.Pids
	}
	if rec.Timeout == 0 {
		rec.Timeout = m.cfg.Timeout
	}
	if rec.Timeout > m.cfg.MaxTimeout {
		return rec, fmt.Errorf("%w: timeout %v is over the server's maximum %v", ErrInvalid, rec.Timeout, m.cfg.MaxTimeout)
	}
	switch rec.OnTimeout {
	case "":
		rec.OnTimeout = m.cfg.OnTimeout
	case "pause", "kill":
	default:
		return rec, fmt.Errorf("%w: on_timeout %q: want pause or kill", ErrInvalid, rec.OnTimeout)
	}
	for k := range rec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(rec.Env[k], 0) {
			return rec, fmt.Errorf("%w: environment variable %q: names must be non-empty without '=' or NUL, values without NUL", ErrInvalid, k)
		}
	}
	var err error
	if rec.Egress, err = egressOf(req.Network); err != nil {
		return rec, err
	}
	rec.ExpiresAt = now.Add(rec.Timeout)
	return rec, nil
}

// spec is what the runtime needs to start rec.
func spec(rec registry.Sandbox, tpl registry.Template) runtime.BoxSpec {
	return runtime.BoxSpec{ID: rec.ID, RootFS: tpl.RootFS, Limits: rec.Limits, Env: rec.Env, Egress: rec.Egress}
}

// start brings s up for a create or a cold fallback: from the template's
// snapshot if it has a sound one, else by booting its root file system.
// s.life is held.
func (m *Manager) start(ctx context.Context, s *sb, rec *registry.Sandbox, tpl registry.Template) error {
	sp := spec(*rec, tpl)
	if tpl.Snapshot != "" {
		if err := m.fetchTemplate(ctx, tpl); err != nil {
			return err
		}
		box, err := m.restore(ctx, sp, tpl.Snapshot, templateOwner(tpl.Name))
		if err == nil {
			m.started(s, box, "restore")
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		s.fallback = m.fallback(tpl.Snapshot, "template "+tpl.Name, err)
	}
	box, err := m.rt.Boot(ctx, sp)
	if err != nil {
		return fmt.Errorf("boot sandbox: %w", err)
	}
	m.started(s, box, "cold")
	return nil
}

// fallback records a snapshot that could not be restored and returns the
// reason, for the API.
func (m *Manager) fallback(key, what string, err error) string {
	reason := "corrupt"
	switch {
	case errors.Is(err, snapshot.ErrNotFound):
		reason = "missing"
	case errors.Is(err, snapshot.ErrIncompatible):
		reason = "incompatible"
	case errors.Is(err, snapshot.ErrWrongRelease):
		reason = "wrong_release"
	case !errors.Is(err, snapshot.ErrCorrupt):
		reason = "restore_failed"
	}
	if reason != "missing" {
		if qerr := m.snaps.Quarantine(key, err.Error()); qerr != nil && !errors.Is(qerr, snapshot.ErrNotFound) {
			m.cfg.Logger.Error("quarantine failed", "snapshot", key, "err", qerr)
		}
	}
	m.cfg.Logger.Warn("snapshot not used; booting cold", "of", what, "reason", reason, "err", err)
	return reason
}

// key is the snapshot-store key of a sandbox's n-th checkpoint.
func key(id string, n int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("sandbox/%s/%d", id, n)))
	return hex.EncodeToString(sum[:])
}

// restore fetches and verifies a checkpoint and starts a box from it.
func (m *Manager) restore(ctx context.Context, sp runtime.BoxSpec, key, owner string) (runtime.Box, error) {
	dir, err := os.MkdirTemp(m.cfg.Dir, "restore-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if _, err := m.snaps.GetFiles(ctx, m.want(owner, key), dir); err != nil {
		return nil, err
	}
	return m.rt.Restore(ctx, sp, dir)
}

// checkpoint stops box into the snapshot store under key.
func (m *Manager) checkpoint(ctx context.Context, box runtime.Box, key, owner string, meta map[string]string) (snapshot.Manifest, error) {
	dir, err := os.MkdirTemp(m.cfg.Dir, "checkpoint-")
	if err != nil {
		return snapshot.Manifest{}, err
	}
	defer os.RemoveAll(dir)
	if err := box.Checkpoint(ctx, dir); err != nil {
		return snapshot.Manifest{}, fmt.Errorf("checkpoint: %w", err)
	}
	return m.putCheckpoint(ctx, dir, owner, key, meta)
}

// putCheckpoint stores the checkpoint files in dir under owner and key.
func (m *Manager) putCheckpoint(ctx context.Context, dir, owner, key string, meta map[string]string) (snapshot.Manifest, error) {
	files := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return snapshot.Manifest{}, err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			return snapshot.Manifest{}, fmt.Errorf("checkpoint: %s is not a regular file", e.Name())
		}
		files[e.Name()] = filepath.Join(dir, e.Name())
	}
	return m.snaps.PutFiles(ctx, snapshot.Manifest{
		Runtime: m.rt.Name(), RuntimeVersion: m.rt.ImageVersion(), App: owner, Release: key, Meta: meta,
	}, files)
}

// owner is the manifest "app" of a sandbox's checkpoints, templateOwner
// of a template's.
func owner(id string) string { return "sandbox-" + id }

func templateOwner(name string) string { return "template-" + name }

// want names checkpoint key of owner, restorable by this runtime.
func (m *Manager) want(owner, key string) snapshot.Want {
	return snapshot.Want{App: owner, Release: key, Runtime: m.rt.Name(), RuntimeVersion: m.rt.ImageVersion()}
}

// Get returns a sandbox.
func (m *Manager) Get(ctx context.Context, id string) (api.Sandbox, error) {
	rec, err := m.record(ctx, id)
	if err != nil {
		return api.Sandbox{}, err
	}
	return m.viewOf(rec, m.state(id)), nil
}

// record reads a sandbox's record.
func (m *Manager) record(ctx context.Context, id string) (registry.Sandbox, error) {
	rec, err := m.reg.GetSandbox(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return rec, fmt.Errorf("%w %q; list sandboxes with GET /v1/sandboxes", ErrNotFound, id)
	}
	return rec, err
}

// Owned fails with ErrNotFound, as for a sandbox that does not exist,
// when ctx's caller is a tenant and sandbox id is another's; it passes
// one that does not exist (the call itself says so) and the admin's
// calls. One registry read, none for the admin.
func (m *Manager) Owned(ctx context.Context, id string) error {
	tenant, ok := registry.TenantOf(ctx)
	if !ok {
		return nil
	}
	if rec, err := m.reg.GetSandbox(ctx, id); err == nil && rec.Tenant != tenant {
		return fmt.Errorf("%w %q", ErrNotFound, id)
	}
	return nil
}

// List returns every sandbox.
func (m *Manager) List(ctx context.Context) ([]api.Sandbox, error) {
	recs, err := m.reg.ListSandboxes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Sandbox, 0, len(recs))
	for _, r := range recs {
		out = append(out, m.viewOf(r, m.state(r.ID)))
	}
	return out, nil
}

// viewOf is view for a caller that does not hold s.life.
func (m *Manager) viewOf(rec registry.Sandbox, s *sb) api.Sandbox {
	s.life.RLock()
	boot := s.boot
	s.life.RUnlock()
	return m.view(rec, boot)
}

// view is the API's picture of a sandbox, with a fresh access token; boot
// is how it last came up.
func (m *Manager) view(rec registry.Sandbox, boot string) api.Sandbox {
	v := api.Sandbox{
		ID: rec.ID, Tenant: rec.Tenant, Template: rec.Template, State: string(rec.State),
		Limits:   api.SandboxLimits{MemoryBytes: rec.Limits.MemoryBytes, CPUs: rec.Limits.CPUs, Pids: rec.Limits.Pids},
		EnvKeys:  slices.Sorted(maps.Keys(rec.Env)),
		Metadata: rec.Metadata, Timeout: api.Duration(rec.Timeout), OnTimeout: rec.OnTimeout,
		ExpiresAt: rec.ExpiresAt, CreatedAt: rec.CreatedAt, Pauses: rec.Pauses,
		Token:       m.Token(rec.ID),
		PortURL:     fmt.Sprintf("http://{port}-%s.%s:%s/", rec.ID, m.cfg.Domain, m.cfg.HTTPPort),
		PublicPorts: rec.PublicPorts,
		Network:     networkView(rec.Egress),
	}
	v.Boot, v.Node = boot, rec.Node
	if rec.State == registry.SandboxPaused && rec.Snapshot != "" {
		v.Snapshot = m.snapshotView(rec.Snapshot, rec.Shared)
	}
	return v
}

// snapshotView is the API's picture of checkpoint key, whose shared copy
// ref may be: from the local store, else (asked of a node that does not
// have it) from the shared copy; nil if neither.
func (m *Manager) snapshotView(key string, ref *registry.SharedSnapshot) *api.Snapshot {
	shared := copyOf(ref, key)
	if man, size, used, err := m.snaps.Stat(key); err == nil {
		return &api.Snapshot{Release: key, Size: size, Created: man.Created, LastUsed: used, Shared: shared}
	}
	if shared {
		return &api.Snapshot{Release: key, Size: ref.Bytes, Created: ref.Uploaded, Shared: true}
	}
	return nil
}

// Token returns a signed access token for the sandbox's ports, valid for
// the configured TTL: base64url(expiry) "." base64url(HMAC-SHA256).
func (m *Manager) Token(id string) string {
	exp := m.cfg.Now().Add(m.cfg.TokenTTL).Unix()
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], uint64(exp))
	return base64.RawURLEncoding.EncodeToString(e[:]) + "." + base64.RawURLEncoding.EncodeToString(m.mac(id, e[:]))
}

func (m *Manager) mac(id string, exp []byte) []byte {
	h := hmac.New(sha256.New, m.cfg.Key)
	h.Write([]byte("frost-sandbox-token\x00"))
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write(exp)
	return h.Sum(nil)
}

// CheckToken reports whether tok authorises access to sandbox id now.
func (m *Manager) CheckToken(id, tok string) error {
	es, ms, ok := strings.Cut(tok, ".")
	e, err1 := base64.RawURLEncoding.DecodeString(es)
	mac, err2 := base64.RawURLEncoding.DecodeString(ms)
	if !ok || err1 != nil || err2 != nil || len(e) != 8 {
		return errors.New("malformed sandbox access token")
	}
	if !hmac.Equal(mac, m.mac(id, e)) {
		return errors.New("the access token is not this sandbox's")
	}
	if exp := time.Unix(int64(binary.BigEndian.Uint64(e)), 0); m.cfg.Now().After(exp) {
		return fmt.Errorf("the access token expired at %s; get a fresh one with GET /v1/sandboxes/%s", exp.UTC().Format(time.RFC3339), id)
	}
	return nil
}

// use returns the sandbox's running box, resuming it if it is paused, with
// s.life held shared; the caller calls the returned release when done.
//
// The returned context is ctx, ended too when a pause or kill interrupts
// the call (see sb.lock); interrupted says whether that is why it ended.
func (m *Manager) use(ctx context.Context, id string) (runtime.Box, context.Context, func(), error) {
	if !ValidID(id) {
		return nil, nil, nil, fmt.Errorf("%w %q", ErrNotFound, id)
	}
	s := m.state(id)
	for {
		s.life.RLock()
		if s.gone {
			s.life.RUnlock()
			return nil, nil, nil, fmt.Errorf("%w: %s", ErrGone, id)
		}
		users := s.usersCtx()
		if users.Err() != nil {
			// A pause or kill is under way: wait for it, then look again.
			s.life.RUnlock()
			s.life.Lock()
			//lint:ignore SA2001 the wait is the point: the pause or kill holds life until it is done
			s.life.Unlock()
			continue
		}
		if s.box != nil {
			cctx, cancel := context.WithCancelCause(ctx)
			stop := context.AfterFunc(users, func() { cancel(context.Cause(users)) })
			return s.box, cctx, func() { stop(); cancel(nil); s.life.RUnlock() }, nil
		}
		s.life.RUnlock()
		if _, err := m.resume(ctx, id); err != nil {
			return nil, nil, nil, err
		}
	}
}

// errInterrupted is what a call's context ending because its sandbox was
// paused (errPaused) or killed (errKilled) under it wraps.
var (
	errInterrupted = errors.New("the sandbox was paused or killed during the call")
	errPaused      = fmt.Errorf("%w: paused, %w", errInterrupted, runtime.ErrDetach)
	errKilled      = fmt.Errorf("%w: killed", errInterrupted)
)

// interrupted maps a call's failure after its sandbox was paused or
// killed under it to ErrGone.
func interrupted(ctx context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(ctx), errInterrupted) {
		return fmt.Errorf("%w: %v", ErrGone, errInterrupted)
	}
	return err
}

// failed tells a call on sandbox id's box that failed because the box
// died (the host killed it: out of memory) from one that failed: it asks
// the runtime, and if the box ended on its own, has it buried and says
// so (ErrDied). Errors that come from the sandbox's agent, or from the
// call's own end, are the call's.
func (m *Manager) failed(ctx context.Context, id string, box runtime.Box, err error) error {
	if err == nil || ctx.Err() != nil {
		return err
	}
	for _, own := range []error{ErrGone, ErrInvalid, ErrNoFile, ErrPortClosed, ErrNoProcess, ErrInputClosed, ErrNoTerminal, ErrNoSpace} {
		if errors.Is(err, own) {
			return err
		}
	}
	why, died := ended(box)
	if !died {
		return err
	}
	m.cfg.Logger.Warn("a call found its sandbox dead", "sandbox", id, "why", why, "err", err)
	go m.bury(id, box, why)
	return diedError(id, why)
}

// Deaths counts the sandboxes whose box this manager found dead (the
// host killed it: out of memory), for /metrics.
func (m *Manager) Deaths() int64 { return m.deaths.Load() }

// ended asks box's runtime whether it ended on its own, and why.
func ended(box runtime.Box) (string, bool) {
	e, ok := box.(runtime.Ender)
	if !ok {
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.Ended(ctx)
}

func diedError(id, why string) error {
	return fmt.Errorf("%w: sandbox %s %s; its files and processes are lost, and its next use boots it afresh from its template", ErrDied, id, why)
}

// bury lets go of sandbox id's dead box once the calls on it have
// ended: its next use boots it afresh (resume), saying why it died.
func (m *Manager) bury(id string, box runtime.Box, why string) {
	m.mu.Lock()
	s := m.sbs[id]
	m.mu.Unlock()
	if s == nil {
		return // killed meanwhile
	}
	s.lock(errKilled)
	defer s.unlock()
	if s.box != box {
		return // paused, killed or buried meanwhile
	}
	box.Kill(context.Background()) // runsc's state of it, its network
	m.letGo(s, why)
}

// letGo forgets s's box, which died (why) and has been killed: s's next
// use boots it afresh (resume), saying why. s.life is held.
func (m *Manager) letGo(s *sb, why string) {
	s.box, s.boot, s.died = nil, "", why
	m.deaths.Add(1)
	m.cfg.Logger.Warn("sandbox died", "sandbox", s.id, "why", why)
}

// Resume brings a paused sandbox back.
func (m *Manager) Resume(ctx context.Context, id string) (api.Sandbox, error) {
	return m.resume(ctx, id)
}

func (m *Manager) resume(ctx context.Context, id string) (api.Sandbox, error) {
	s := m.state(id)
	s.life.Lock()
	defer s.life.Unlock()
	rec, err := m.record(ctx, id)
	if err != nil {
		return api.Sandbox{}, err
	}
	if s.box != nil {
		return m.view(rec, s.boot), nil // already running: nothing to do
	}
	// Another node's: never run a copy of it here (it would fork), but
	// take a paused one over when its node has left.
	for tries := 0; !m.mine(rec); tries++ {
		if err := m.elsewhere(rec); err != nil {
			return api.Sandbox{}, err
		}
		rec, err = m.takeOver(ctx, rec)
		if errors.Is(err, errMoved) && tries < 3 {
			if rec, err = m.record(ctx, id); err != nil {
				return api.Sandbox{}, err
			}
			continue
		}
		if err != nil {
			return api.Sandbox{}, err
		}
	}
	tpl, err := m.reg.GetTemplate(ctx, rec.Template)
	if err != nil {
		return api.Sandbox{}, fmt.Errorf("sandbox %s: template %q: %w", id, rec.Template, err)
	}
	s.fallback = ""
	died := s.died
	s.died = ""
	if rec.Snapshot != "" {
		err := m.fetch(ctx, rec)
		var box runtime.Box
		if err == nil {
			box, err = m.restore(ctx, spec(rec, tpl), rec.Snapshot, owner(id))
		} else if errors.Is(err, ErrElsewhere) {
			return api.Sandbox{}, err
		}
		if err == nil {
			m.started(s, box, "resume")
		} else if ctx.Err() != nil {
			return api.Sandbox{}, err
		} else {
			s.fallback = m.fallback(rec.Snapshot, "sandbox "+id, err)
		}
	} else if died != "" {
		// Its box died (bury): its state is lost.
		s.fallback = "died: " + died
		m.cfg.Logger.Warn("sandbox died; booting it afresh", "sandbox", id, "why", died)
	} else {
		// Running in the registry but not in this process: the server
		// stopped without pausing it (a crash). Its state is lost.
		s.fallback = "lost"
		m.cfg.Logger.Warn("sandbox was running when the server stopped; booting it afresh", "sandbox", id)
	}
	if s.box == nil {
		if err := m.start(ctx, s, &rec, tpl); err != nil {
			return api.Sandbox{}, err
		}
	}
	old, oldShared := rec.Snapshot, rec.Shared
	now := m.cfg.Now().UTC()
	rec, err = m.reg.UpdateSandbox(ctx, id, false, func(r *registry.Sandbox) error {
		if !m.mine(*r) {
			return errMoved // taken over meanwhile (this node was thought gone)
		}
		r.State, r.Snapshot, r.Shared, r.ExpiresAt, r.UpdatedAt = registry.SandboxRunning, "", nil, now.Add(r.Timeout), now
		return nil
	})
	if err != nil {
		s.box.Kill(context.Background())
		s.box = nil
		if errors.Is(err, errMoved) {
			m.snaps.Delete(old)
			return api.Sandbox{}, &ElsewhereError{ID: id, Why: "another node took it over while this one resumed it"}
		}
		return api.Sandbox{}, err
	}
	if old != "" {
		// The checkpoint is spent: the sandbox's state moves on from it.
		// Removed beside the answer: unlinking it is ~10 ms a resume
		// need not wait for (Close waits for it).
		m.spent.Go(func() { m.dropSpent(old) })
	}
	if oldShared != nil && m.cfg.Shared != nil {
		m.cfg.Shared.ForgetCheckpoint(owner(id), *oldShared)
	}
	return m.view(rec, s.boot), nil
}

// Pause checkpoints a running sandbox to the snapshot store and frees
// everything it held. Pausing a paused sandbox does nothing.
func (m *Manager) Pause(ctx context.Context, id string) (api.Sandbox, error) {
	s := m.state(id)
	s.lock(errPaused)
	defer s.unlock()
	rec, err := m.record(ctx, id)
	if err != nil {
		return api.Sandbox{}, err
	}
	if !m.mine(rec) {
		if rec.State == registry.SandboxPaused && !m.live(rec.Node) {
			return m.view(rec, ""), nil // paused already; nobody holds it now
		}
		return api.Sandbox{}, m.elsewhere(rec)
	}
	if s.box == nil {
		if rec.State == registry.SandboxPaused {
			return m.view(rec, s.boot), nil
		}
		// Running in the registry, absent here (lost in a crash, or its
		// box died): nothing to checkpoint. Recorded paused with no
		// checkpoint, its resume boots it afresh; left running, its
		// timeout would come round again at every pass.
		now := m.cfg.Now().UTC()
		rec, err = m.reg.UpdateSandbox(ctx, id, false, func(r *registry.Sandbox) error {
			r.State, r.Snapshot, r.Shared, r.UpdatedAt = registry.SandboxPaused, "", nil, now
			return nil
		})
		if err != nil {
			return api.Sandbox{}, err
		}
		return m.view(rec, s.boot), nil
	}
	k := key(id, rec.Pauses+1)
	m.sample(s, s.box) // its last reading, for its history while it sleeps
	if _, err := m.checkpoint(ctx, s.box, k, owner(id), map[string]string{"template": rec.Template}); err != nil {
		// The box may or may not have stopped; a sandbox that cannot be
		// paused is killed rather than left half alive.
		why, died := ended(s.box)
		s.box.Kill(context.Background())
		if died {
			m.letGo(s, why)
			return api.Sandbox{}, diedError(id, why)
		}
		s.box = nil
		return api.Sandbox{}, fmt.Errorf("pause sandbox %s: %w", id, err)
	}
	s.box, s.boot = nil, ""
	now := m.cfg.Now().UTC()
	rec, err = m.reg.UpdateSandbox(ctx, id, false, func(r *registry.Sandbox) error {
		r.State, r.Snapshot, r.Shared, r.UpdatedAt = registry.SandboxPaused, k, nil, now
		r.Pauses++
		return nil
	})
	if err != nil {
		return api.Sandbox{}, err
	}
	m.startShare(id, k, true)
	return m.view(rec, s.boot), nil
}

// Kill stops a sandbox and deletes it with its checkpoint.
func (m *Manager) Kill(ctx context.Context, id string) error {
	s := m.state(id)
	s.lock(errKilled)
	defer s.unlock()
	rec, err := m.record(ctx, id)
	if err != nil {
		return err
	}
	if !m.mine(rec) && m.live(rec.Node) {
		return m.elsewhere(rec) // it runs there
	}
	if s.box != nil {
		if err := s.box.Kill(ctx); err != nil {
			m.cfg.Logger.Warn("kill sandbox", "sandbox", id, "err", err)
		}
		s.box = nil
	}
	if rec.Snapshot != "" {
		m.snaps.Delete(rec.Snapshot)
	}
	if err := m.reg.DeleteSandbox(ctx, id); err != nil {
		return err
	}
	if rec.Shared != nil && m.cfg.Shared != nil {
		m.cfg.Shared.ForgetCheckpoint(owner(id), *rec.Shared)
	}
	s.gone = true
	s.metrics.reset()
	m.forget(id)
	return nil
}

func (m *Manager) forget(id string) {
	m.mu.Lock()
	delete(m.sbs, id)
	m.mu.Unlock()
}

// SetTimeout restarts a running sandbox's timeout at d from now.
func (m *Manager) SetTimeout(ctx context.Context, id string, d time.Duration) (api.Sandbox, error) {
	if d <= 0 || d > m.cfg.MaxTimeout {
		return api.Sandbox{}, fmt.Errorf("%w: timeout %v must be positive and at most %v", ErrInvalid, d, m.cfg.MaxTimeout)
	}
	now := m.cfg.Now().UTC()
	rec, err := m.reg.UpdateSandbox(ctx, id, false, func(r *registry.Sandbox) error {
		r.Timeout, r.ExpiresAt, r.UpdatedAt = d, now.Add(d), now
		return nil
	})
	if errors.Is(err, registry.ErrNotFound) {
		return api.Sandbox{}, fmt.Errorf("%w %q", ErrNotFound, id)
	}
	if err != nil {
		return api.Sandbox{}, err
	}
	return m.viewOf(rec, m.state(id)), nil
}

// Run applies timeouts until ctx ends: a running sandbox past its expiry
// is paused, or killed if it asked for that. Now and then it also deletes
// the fetched checkpoints of templates rebuilt since (tidyTemplates).
func (m *Manager) Run(ctx context.Context) {
	tick := time.NewTicker(m.cfg.Check)
	defer tick.Stop()
	tidy := time.NewTicker(tidyTemplatesEvery)
	defer tidy.Stop()
	sample := time.NewTicker(m.cfg.MetricsEvery)
	defer sample.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sample.C:
			m.sampleAll()
		case <-tick.C:
			m.expire(ctx)
		case <-tidy.C:
			m.tidyTemplates(ctx, templateGrace)
		}
	}
}

// expire handles every running sandbox past its expiry once.
func (m *Manager) expire(ctx context.Context) {
	recs, err := m.reg.ListSandboxes(ctx)
	if err != nil {
		m.cfg.Logger.Warn("sandbox timeouts", "err", err)
		return
	}
	now := m.cfg.Now()
	for _, r := range recs {
		if !m.mine(r) {
			continue
		}
		if r.State == registry.SandboxPaused && r.Snapshot != "" && !copyOf(r.Shared, r.Snapshot) {
			m.startShare(r.ID, r.Snapshot, false) // a failed or interrupted upload
		}
		if r.State != registry.SandboxRunning || now.Before(r.ExpiresAt) {
			continue
		}
		var err error
		if r.OnTimeout == "kill" {
			err = m.Kill(ctx, r.ID)
		} else {
			_, err = m.Pause(ctx, r.ID)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			m.cfg.Logger.Warn("sandbox timeout", "sandbox", r.ID, "on_timeout", r.OnTimeout, "err", err)
		} else {
			m.cfg.Logger.Info("sandbox timed out", "sandbox", r.ID, "on_timeout", r.OnTimeout)
		}
	}
}

// Close pauses every running sandbox, so that nothing an agent wrote is
// lost across a server restart; they resume on demand. With shared
// storage it then waits (within ctx) for the checkpoints' uploads, so
// that a node leaving the cluster for good leaves every sandbox it held
// resumable elsewhere.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.done = true
	ids := slices.Collect(maps.Keys(m.sbs))
	m.mu.Unlock()
	var errs []error
	for _, id := range ids {
		s := m.state(id)
		s.life.RLock()
		running := s.box != nil
		s.life.RUnlock()
		if !running {
			continue
		}
		if _, err := m.Pause(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	m.spent.Wait()
	uploaded := make(chan struct{})
	go func() { m.uploads.Wait(); close(uploaded) }()
	select {
	case <-uploaded:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("checkpoint uploads to shared storage: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// Fallback reports why the sandbox's last start could not use its
// snapshot ("" if it did, or had none).
func (m *Manager) Fallback(id string) string {
	s := m.state(id)
	s.life.RLock()
	defer s.life.RUnlock()
	return s.fallback
}

// BuildTemplate makes a template: a sandbox booted from rootfs runs the
// setup commands, one after another (each must exit 0), and is
// checkpointed; sandboxes created from the template then restore that
// checkpoint rather than boot, with what the setup installed and started
// already there. Building a template of an existing name replaces it.
func (m *Manager) BuildTemplate(ctx context.Context, name, rootfs string, setup []string, log io.Writer) (api.Template, error) {
	if !api.ValidTemplateName(name) {
		return api.Template{}, fmt.Errorf("%w: template name %q: use 1-63 lower-case letters, digits and '-'", ErrInvalid, name)
	}
	old, err := m.reg.GetTemplate(ctx, name)
	if err == nil && old.Tenant != "" {
		// Recorded under its plain name before names were per tenant.
		return api.Template{}, fmt.Errorf("%w: template %q is tenant %s's; pick another name", ErrInvalid, name, old.Tenant)
	}
	if rootfs == "" {
		if err != nil {
			return api.Template{}, fmt.Errorf("%w: give the template a root file system (from_rootfs)", ErrInvalid)
		}
		rootfs = old.RootFS
	}
	if fi, err := os.Stat(rootfs); err != nil || !fi.IsDir() {
		return api.Template{}, fmt.Errorf("%w: root file system %q is not a directory on the server", ErrInvalid, rootfs)
	}
	id := m.newID()
	box, err := m.rt.Boot(ctx, runtime.BoxSpec{ID: id, RootFS: rootfs, Limits: m.cfg.Limits})
	if err != nil {
		return api.Template{}, fmt.Errorf("build template %s: boot: %w", name, err)
	}
	for _, cmd := range setup {
		fmt.Fprintf(log, "$ %s\n", cmd)
		code, err := box.Exec(ctx, runtime.Cmd{Args: []string{"/bin/sh", "-c", cmd}, Cwd: "/root", Stdout: log, Stderr: log})
		if err == nil && code != 0 {
			err = fmt.Errorf("%w: setup command %q exited %d", ErrInvalid, cmd, code)
		}
		if err != nil {
			box.Kill(context.Background())
			return api.Template{}, fmt.Errorf("build template %s: %w", name, err)
		}
	}
	sum := sha256.Sum256([]byte("template/" + name + "/" + id))
	k := hex.EncodeToString(sum[:])
	if _, err := m.checkpoint(ctx, box, k, templateOwner(name), map[string]string{"rootfs": rootfs}); err != nil {
		box.Kill(context.Background())
		return api.Template{}, fmt.Errorf("build template %s: %w", name, err)
	}
	t := registry.Template{Name: name, Runtime: m.rt.Name(), RootFS: rootfs, Setup: setup, Snapshot: k, Node: m.cfg.Node, CreatedAt: m.cfg.Now().UTC()}
	if err := m.saveTemplate(ctx, &t); err != nil {
		return api.Template{}, err
	}
	return m.templateView(t), nil
}

// saveTemplate records t, whose checkpoint is in the store: shared first
// in a cluster, the checkpoint of the template it replaces let go after.
func (m *Manager) saveTemplate(ctx context.Context, t *registry.Template) error {
	name, k := t.Name, t.Snapshot
	old, _ := m.reg.GetTemplate(ctx, t.Key())
	if m.cfg.Shared != nil {
		// Every node creates sandboxes from it: share it now (a build
		// is slow anyway). Without the upload, nodes send creates here.
		ref, err := m.cfg.Shared.PutCheckpoint(ctx, m.snaps, m.want(templateOwner(name), k))
		if err != nil {
			m.cfg.Logger.Warn("template checkpoint not shared; other nodes will send creates to this one", "template", name, "err", err)
		} else {
			t.Shared = &ref
		}
	}
	if err := m.reg.PutTemplate(ctx, *t); err != nil {
		m.snaps.Delete(k)
		if t.Shared != nil {
			m.cfg.Shared.ForgetCheckpoint(templateOwner(name), *t.Shared)
		}
		return err
	}
	if old.Snapshot == k {
		old.Snapshot = "" // the new one's
	}
	m.dropTemplateCheckpoint(old)
	return nil
}

// dropTemplateCheckpoint removes template t's checkpoint, here and in
// shared storage.
func (m *Manager) dropTemplateCheckpoint(t registry.Template) {
	if t.Snapshot != "" {
		m.snaps.Delete(t.Snapshot)
	}
	if t.Shared != nil && m.cfg.Shared != nil {
		m.cfg.Shared.ForgetCheckpoint(templateOwner(t.Name), *t.Shared)
	}
}

// Templates lists the templates.
func (m *Manager) Templates(ctx context.Context) ([]api.Template, error) {
	list, err := m.reg.ListTemplates(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Template, 0, len(list))
	for _, t := range list {
		if visible(ctx, t) {
			out = append(out, m.templateView(t))
		}
	}
	return out, nil
}

// visible says whether ctx's caller sees and uses template t: the admin
// sees every one, a tenant the admin's and its own.
func visible(ctx context.Context, t registry.Template) bool {
	tenant, ok := registry.TenantOf(ctx)
	return !ok || t.Tenant == "" || t.Tenant == tenant
}

func (m *Manager) templateView(t registry.Template) api.Template {
	v := api.Template{Name: t.Name, RootFS: t.RootFS, Setup: t.Setup, From: t.From, Tenant: t.Tenant, CreatedAt: t.CreatedAt}
	if t.Snapshot != "" {
		v.Snapshot = m.snapshotView(t.Snapshot, t.Shared)
	}
	return v
}
