// Package registry defines Frost's catalogue of apps, releases, agent
// sandboxes and their templates, the members of a cluster, and the Store
// contract that holds them. The single-machine implementation is bolt (bbolt
// in the data directory); a cluster uses etcd. Every implementation passes
// the suite in registrytest.
package registry

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Errors every Store returns, checked with errors.Is.
var (
	// ErrNotFound: the app or release does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: PutRelease was given an ID that is already stored.
	ErrExists = errors.New("already exists")
	// ErrMembershipLost: a Join's membership ended while its ctx was still
	// live (its lease expired, another Join took its name, or the store
	// was closed). Errors on Join's channel wrap it.
	ErrMembershipLost = errors.New("cluster membership lost")
	// ErrClosed: the store was closed while the call was in progress.
	ErrClosed = errors.New("registry closed")
	// ErrUnavailable: the store could not be reached in time (a cluster's
	// etcd is down or cut off); the call may succeed later.
	ErrUnavailable = errors.New("registry unavailable")
)

// Mode says how an app's instances live.
type Mode string

const (
	// ModeRequest gives every request a fresh instance state (per-request isolation).
	ModeRequest Mode = "request"
	// ModeSession keeps a long-lived instance that serves many requests.
	ModeSession Mode = "session"
)

// Limits are the per-app resource limits the node enforces.
type Limits struct {
	// MemoryBytes caps a guest's linear memory (or RAM for VM runtimes).
	MemoryBytes int64 `json:"memory_bytes"`
	// Timeout caps the CPU/wall time of one request.
	Timeout time.Duration `json:"timeout"`
	// Concurrency caps in-flight requests for the app; beyond it the node answers 503.
	Concurrency int `json:"concurrency"`
	// MaxBodyBytes caps a request body; beyond it the node answers 413.
	MaxBodyBytes int64 `json:"max_body_bytes"`
	// FSBytes caps the guest's private writable file system.
	FSBytes int64 `json:"fs_bytes"`
}

// App is a named, deployed service. Env lives on the app, not the release,
// so it can change (and secrets rotate) without a redeploy.
type App struct {
	Name string `json:"name"`
	// Release is the ID of the release that serves new requests ("" before the first deploy).
	Release string `json:"release"`
	// Version counts deploys; the next release gets Version+1.
	Version int `json:"version"`
	// Env is the environment delivered to new instances.
	Env map[string]string `json:"env,omitempty"`
	// EnvVersion increases on every change to Env.
	EnvVersion int64     `json:"env_version"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	// Tenant owns the app ("" for the admin): only its token (and the
	// admin's) may see or change it.
	Tenant string `json:"tenant,omitempty"`
	// Snapshot is a snapshot of the app in the cluster's shared storage,
	// which any node may pull to wake the app (nil: none). It serves
	// only while its Release is the app's.
	Snapshot *SharedSnapshot `json:"snapshot,omitempty"`
}

// SharedSnapshot is a release's snapshot in a cluster's shared blob store,
// in the packed form (package snapshot: Pack), stored as one blob.
type SharedSnapshot struct {
	Release string `json:"release"`
	// Blob is the SHA-256 (hex) of the packed snapshot; Size its bytes.
	Blob string `json:"blob"`
	Size int64  `json:"size"`
	// Bytes is the snapshot's size unpacked (the sum of its parts).
	Bytes int64 `json:"bytes"`
	// Node baked and uploaded it, at Uploaded.
	Node     string    `json:"node"`
	Uploaded time.Time `json:"uploaded"`
	// Used is when a node last woke the app from it, kept to within
	// about a tenth of the reaper's age limit.
	Used time.Time `json:"used"`
}

// Release is an immutable version of an app: code plus config.
type Release struct {
	// ID is content-derived (node.releaseID): the same app, code and config give the same ID.
	ID      string `json:"id"`
	App     string `json:"app"`
	Version int    `json:"version"`
	// Runtime names the runtime that runs it, e.g. "wasm".
	Runtime string `json:"runtime"`
	// Module is the SHA-256 (hex) of the code blob in the blob store.
	Module     string `json:"module"`
	ModuleSize int64  `json:"module_size"`
	// Shape is the guest shape detected at deploy, e.g. "http-wasm" or "wagi".
	Shape     string    `json:"shape"`
	Mode      Mode      `json:"mode"`
	Limits    Limits    `json:"limits"`
	CreatedAt time.Time `json:"created_at"`
	// Assets is the SHA-256 (hex) of the release's read-only assets, a tar
	// archive in the blob store ("" for none); AssetsSize is its size.
	Assets     string `json:"assets,omitempty"`
	AssetsSize int64  `json:"assets_size,omitempty"`
	// Idle is how long the app may go without requests before its
	// instances are frozen to zero.
	Idle time.Duration `json:"idle,omitempty"`
	// Warm is how many nodes, in the app's ring order, keep it thawed and
	// never idle-freeze it (a cluster's shallow warm pool; 0: none).
	Warm int `json:"warm,omitempty"`
}

// SandboxState is where an agent sandbox is in its lifecycle.
type SandboxState string

const (
	// SandboxRunning: its processes run (or it is being created or resumed).
	SandboxRunning SandboxState = "running"
	// SandboxPaused: checkpointed to the snapshot store; no process, no memory.
	SandboxPaused SandboxState = "paused"
)

// SandboxLimits are an agent sandbox's resource limits.
type SandboxLimits struct {
	MemoryBytes int64   `json:"memory_bytes"`
	CPUs        float64 `json:"cpus"`
	Pids        int     `json:"pids"`
}

// Sandbox is an agent sandbox: a full Linux environment with an explicit
// lifecycle (create, exec, files, pause, resume, kill). A killed sandbox is
// deleted.
type Sandbox struct {
	// ID is lower-case letters and digits, so that it can be part of a
	// hostname (PORT-ID.DOMAIN).
	ID       string            `json:"id"`
	Runtime  string            `json:"runtime"`
	Template string            `json:"template"`
	State    SandboxState      `json:"state"`
	Limits   SandboxLimits     `json:"limits"`
	Env      map[string]string `json:"env,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Timeout is how long the sandbox may run; then it is paused, or
	// killed with OnTimeout "kill". ExpiresAt is when, for the current run.
	Timeout   time.Duration `json:"timeout"`
	OnTimeout string        `json:"on_timeout"`
	ExpiresAt time.Time     `json:"expires_at"`
	// Snapshot is the key of its checkpoint in the snapshot store while
	// paused ("" when running).
	Snapshot string `json:"snapshot,omitempty"`
	// PublicPorts lets requests reach its ports without its access token.
	PublicPorts bool `json:"public_ports,omitempty"`
	// Egress is what it may reach over its network.
	Egress Egress `json:"egress,omitzero"`
	// Tenant owns the sandbox ("" for the admin).
	Tenant string `json:"tenant,omitempty"`
	// Pauses counts checkpoints taken.
	Pauses int `json:"pauses"`
	// Node, in a cluster, names the node that holds the sandbox: runs it,
	// or has its checkpoint while paused ("" on one machine, and on
	// records older than the field: then the node its ID's tag names).
	// Only the holder changes the sandbox; another node takes a paused one
	// over (Node changes, conditionally) when the holder has left the
	// cluster and the checkpoint is in shared storage.
	Node string `json:"node,omitempty"`
	// Shared is the copy of the paused sandbox's checkpoint in the
	// cluster's shared storage (Release is the checkpoint's key), once it
	// is there; nil while running, or before the upload is done.
	Shared    *SharedSnapshot `json:"shared,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Egress is what a sandbox may reach over its network. The zero value is
// the internet: every address but its host's, other sandboxes' and the
// link-local range (where clouds answer metadata requests).
type Egress struct {
	// Offline cuts it off from every address but those in Allow.
	Offline bool `json:"offline,omitempty"`
	// Allow and Deny are destinations let through or dropped; Allow wins
	// where they overlap, as in E2B's allowOut and denyOut.
	Allow []netip.Prefix `json:"allow,omitempty"`
	Deny  []netip.Prefix `json:"deny,omitempty"`
	// AllowHosts are host names ("pypi.org", "*.github.com": every name
	// under it) whose addresses are let through once the sandbox has
	// looked them up, for as long as the answer lives.
	AllowHosts []string `json:"allow_hosts,omitempty"`
}

// Template is what agent sandboxes start from: a root file system and,
// once built, a checkpoint of a sandbox that ran its setup commands.
type Template struct {
	Name    string `json:"name"`
	Runtime string `json:"runtime"`
	// RootFS is the host directory of its root file system (read-only).
	RootFS string `json:"rootfs"`
	// Setup are the commands run once at build time.
	Setup []string `json:"setup,omitempty"`
	// From is the sandbox a snapshot was taken of ("" for a build).
	From string `json:"from,omitempty"`
	// Tenant owns a snapshot a tenant took: only it sees and uses the
	// template ("": the admin's, every tenant's to use). Names are the
	// tenant's own: two tenants may each have a template "app" (Key).
	Tenant string `json:"tenant,omitempty"`
	// Snapshot is the key of the built template's checkpoint ("" if none:
	// sandboxes then boot from RootFS).
	Snapshot string `json:"snapshot,omitempty"`
	// Node, in a cluster, built it and has the checkpoint; Shared is its
	// copy in shared storage, which any node can fetch (nil: none).
	Node      string          `json:"node,omitempty"`
	Shared    *SharedSnapshot `json:"shared,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
}

// TemplateKey is the registry key of tenant's template name: the name for
// the admin's templates (tenant ""), TENANT/NAME for a tenant's, so that
// tenants' names never collide with one another's. (Templates recorded
// before names were per tenant keep their plain names as keys, with
// their Tenant set; readers look there too.)
func TemplateKey(tenant, name string) string {
	if tenant == "" {
		return name
	}
	return tenant + "/" + name
}

// Key is t's registry key (TemplateKey).
func (t Template) Key() string { return TemplateKey(t.Tenant, t.Name) }

// Tenant is a party that shares a Frost with others: its token manages
// only its own apps and sandboxes.
type Tenant struct {
	// Name is 1 to 63 lower-case letters, digits and '-'.
	Name string `json:"name"`
	// TokenHash is the SHA-256 (hex) of its token: the token itself is
	// shown once, when the tenant is created, and never stored.
	TokenHash string    `json:"token_hash"`
	CreatedAt time.Time `json:"created_at"`
}

// Node is a member of a cluster.
type Node struct {
	// Name is unique in the cluster: 1 to 63 lower-case letters, digits and
	// '-' (see CheckNodeName).
	Name string `json:"name"`
	// HTTPAddr is where the node serves app traffic (host:port).
	HTTPAddr string `json:"http_addr"`
	// APIAddr is where the node serves the control and peer API (host:port).
	APIAddr string `json:"api_addr"`
	// Started is when the node's process started.
	Started time.Time `json:"started"`
	// Hop says the node's HTTP listener takes hop connections (package
	// hop): a gateway sends it many requests at once over each.
	Hop bool `json:"hop,omitempty"`
	// Draining says the node is shutting down: it takes no new requests
	// and finishes those it has, then leaves. A member that leaves
	// without having drained is taken for lost by gateways, and the
	// requests in flight to it are ended rather than waited on.
	Draining bool `json:"draining,omitempty"`
	// Domain is the node's --domain: the hostnames it serves apps and
	// sandbox ports under. A gateway with another domain sends the node
	// its requests under the node's ("" from nodes older than the field:
	// the gateway's own).
	Domain string `json:"domain,omitempty"`
}

type tenantKey struct{}

// WithTenant returns ctx acting for tenant: what a call under it creates
// (an app, a sandbox) belongs to the tenant, and a deploy to another
// tenant's app is refused. The control API sets it from the caller's
// token; the admin's calls carry none.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

// TenantOf returns the tenant ctx acts for, and false for the admin.
func TenantOf(ctx context.Context) (string, bool) {
	t, ok := ctx.Value(tenantKey{}).(string)
	return t, ok
}

// CheckJoin checks Join's arguments, as every implementation must.
func CheckJoin(ctx context.Context, n Node, ttl time.Duration) error {
	if err := CheckNodeName(n.Name); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	if ttl <= 0 {
		return fmt.Errorf("join %s: ttl %v must be positive", n.Name, ttl)
	}
	return ctx.Err()
}

// CheckNodeName reports whether name is a valid Node.Name.
func CheckNodeName(name string) error {
	if name == "" || len(name) > 63 {
		return fmt.Errorf("node name %q: must be 1 to 63 characters", name)
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return fmt.Errorf("node name %q: only lower-case letters, digits and '-' are allowed", name)
		}
	}
	return nil
}

// AppEvent is a change to an app: the app as it is now, or, with Deleted,
// its removal (then only App.Name is set).
type AppEvent struct {
	App     App
	Deleted bool
}

// Store holds apps and releases, agent sandboxes and templates, and the
// members of a cluster. Implementations are safe for concurrent use by many
// goroutines, and by many stores on the same registry where the backend has
// them (etcd: one per process); every method that reads or writes the
// catalogue is a single atomic transaction.
type Store interface {
	// GetApp returns the app or ErrNotFound.
	GetApp(ctx context.Context, name string) (App, error)
	// ListApps returns every app, sorted by name.
	ListApps(ctx context.Context) ([]App, error)
	// UpdateApp runs fn on the current app (a zero App with Name set when it does
	// not exist yet, and create is true) and stores the result atomically. If fn
	// returns an error nothing is stored and that error is returned. With
	// create false, a missing app is ErrNotFound. fn may run more than once (a
	// backend shared by several processes retries when another wrote the app
	// first), each time on a fresh copy, so it must do nothing but change *App.
	// No update is ever lost, whichever store on the registry made it.
	UpdateApp(ctx context.Context, name string, create bool, fn func(*App) error) (App, error)
	// DeleteApp removes the app and all its releases; ErrNotFound if absent.
	DeleteApp(ctx context.Context, name string) error

	// PutRelease stores a new release of an existing app; ErrNotFound if the
	// app is missing, ErrExists if the ID is taken.
	PutRelease(ctx context.Context, r Release) error
	// GetRelease returns a release of app or ErrNotFound.
	GetRelease(ctx context.Context, app, id string) (Release, error)
	// ListReleases returns the app's releases, newest (highest Version) first.
	ListReleases(ctx context.Context, app string) ([]Release, error)

	// UpdateSandbox is UpdateApp for sandboxes, by ID.
	UpdateSandbox(ctx context.Context, id string, create bool, fn func(*Sandbox) error) (Sandbox, error)
	// GetSandbox returns the sandbox or ErrNotFound.
	GetSandbox(ctx context.Context, id string) (Sandbox, error)
	// ListSandboxes returns every sandbox, sorted by ID.
	ListSandboxes(ctx context.Context) ([]Sandbox, error)
	// DeleteSandbox removes the sandbox; ErrNotFound if absent.
	DeleteSandbox(ctx context.Context, id string) error

	// PutTemplate stores a template under its Key, replacing the one
	// there.
	PutTemplate(ctx context.Context, t Template) error
	// GetTemplate returns the template of key (TemplateKey) or
	// ErrNotFound.
	GetTemplate(ctx context.Context, key string) (Template, error)
	// ListTemplates returns every template, sorted by key.
	ListTemplates(ctx context.Context) ([]Template, error)
	// DeleteTemplate removes the template of key; ErrNotFound if absent.
	DeleteTemplate(ctx context.Context, key string) error

	// CreateTenant stores a new tenant; ErrExists if the name is taken.
	CreateTenant(ctx context.Context, t Tenant) error
	// GetTenant returns the tenant or ErrNotFound.
	GetTenant(ctx context.Context, name string) (Tenant, error)
	// ListTenants returns every tenant, sorted by name.
	ListTenants(ctx context.Context) ([]Tenant, error)
	// DeleteTenant removes the tenant; ErrNotFound if absent.
	DeleteTenant(ctx context.Context, name string) error

	// Join makes n a member of the cluster until ctx ends or the membership
	// is lost, and returns once n is listed by Nodes on every store of the
	// registry. It keeps the membership alive with heartbeats every fraction
	// of ttl; a member whose heartbeats stop (its process was killed, or it
	// is cut off from the registry) leaves within about ttl (etcd rounds ttl
	// up to whole seconds and to its minimum lease, 2s by default, and a new
	// etcd leader renews every lease once, so a failover can add up to ttl
	// more). An ended ctx fails Join with ctx.Err(). Joining a
	// name that is already a live member replaces that member, whose own Join
	// loses its membership.
	//
	// The channel is closed when the membership ends. When ctx ends, the
	// registration is removed first (if the registry cannot be reached then,
	// it expires after ttl instead). When the membership ends while ctx is
	// still live — lease expired, replaced, or the store closed — the channel
	// first receives one error wrapping ErrMembershipLost; the caller may
	// Join again. The channel is buffered: nobody has to read it.
	Join(ctx context.Context, n Node, ttl time.Duration) (<-chan error, error)
	// Nodes returns the live members, sorted by name.
	Nodes(ctx context.Context) ([]Node, error)
	// WatchNodes calls fn with the full member list (sorted by name) as soon
	// as the watch is established, then again after every change, until ctx
	// ends (it returns ctx.Err()), the store is closed (ErrClosed) or fails.
	// Each list is newer than the one before; changes close together may come
	// as one call. fn is called from WatchNodes's goroutine, one call at a
	// time; it may use the Store, and while it runs later changes wait.
	WatchNodes(ctx context.Context, fn func([]Node)) error
	// WatchApps tells fn about the apps and every change to them, made
	// through any store on the same registry (UpdateApp; DeleteApp, which is
	// one event for the app, none for its releases), until ctx ends (it
	// returns ctx.Err()), the store is closed (ErrClosed) or fails.
	//
	// The first call of fn comes as soon as the watch is established and
	// holds every app that exists then, in name order (an empty slice if
	// none): the state as of one instant, so a caller that keeps a copy of
	// the apps replaces its copy with it. Every later call holds changes
	// committed after that instant, in commit order, each exactly once; a
	// call may hold several. Applying them in order keeps the copy equal to
	// the registry as of the last change applied: no gap, no reordering.
	// (If a backend has to resume a broken watch after the history it needs
	// was discarded, it sends, for each app that changed meanwhile, its
	// current state or its removal: intermediate versions may then be
	// skipped, never the latest.) fn is called from WatchApps's goroutine,
	// one call at a time; it may use the Store, and while it runs later
	// changes wait.
	WatchApps(ctx context.Context, fn func([]AppEvent)) error

	// Close ends the store's memberships, removing their registrations as if
	// their ctx had ended (their channels receive an error wrapping both
	// ErrMembershipLost and ErrClosed), makes running watches return
	// ErrClosed, and releases the store's resources. No method may be called
	// after.
	Close() error
}
