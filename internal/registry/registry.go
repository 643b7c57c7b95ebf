// Package registry defines Frost's catalogue of apps, releases, agent
// sandboxes and their templates, and the Store contract that holds it. The
// single-machine implementation is bolt (bbolt in the data directory); a
// cluster uses etcd. Every implementation passes the suite in registrytest.
package registry

import (
	"context"
	"errors"
	"time"
)

// Errors every Store returns, checked with errors.Is.
var (
	// ErrNotFound: the app or release does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: PutRelease was given an ID that is already stored.
	ErrExists = errors.New("already exists")
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
	// Pauses counts checkpoints taken.
	Pauses    int       `json:"pauses"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
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
	// Snapshot is the key of the built template's checkpoint ("" if none:
	// sandboxes then boot from RootFS).
	Snapshot  string    `json:"snapshot,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Store holds apps and releases. Implementations are safe for concurrent use
// by many goroutines; every method is a single atomic transaction.
type Store interface {
	// GetApp returns the app or ErrNotFound.
	GetApp(ctx context.Context, name string) (App, error)
	// ListApps returns every app, sorted by name.
	ListApps(ctx context.Context) ([]App, error)
	// UpdateApp runs fn on the current app (a zero App with Name set when it does
	// not exist yet, and create is true) and stores the result atomically. If fn
	// returns an error nothing is stored and that error is returned. With
	// create false, a missing app is ErrNotFound.
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

	// PutTemplate stores a template, replacing one of the same name.
	PutTemplate(ctx context.Context, t Template) error
	// GetTemplate returns the template or ErrNotFound.
	GetTemplate(ctx context.Context, name string) (Template, error)
	// ListTemplates returns every template, sorted by name.
	ListTemplates(ctx context.Context) ([]Template, error)
	// DeleteTemplate removes the template; ErrNotFound if absent.
	DeleteTemplate(ctx context.Context, name string) error

	// Close releases the store's resources. No method may be called after.
	Close() error
}
