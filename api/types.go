// Package api holds Frost's public wire types and a Go client for the
// control API. It is the only package outside users import; everything else
// lives under internal/. docs/API.md documents every route.
package api

import (
	"net/url"
	"strings"
	"time"
)

// Version is the control API version prefix.
const Version = "v1"

// Error is the JSON body of every non-2xx control API answer.
type Error struct {
	// Code is a stable, machine-readable reason, e.g. "not_found", "invalid_module".
	Code string `json:"code"`
	// Message says what went wrong and what to do next.
	Message string `json:"message"`
}

// Error codes.
const (
	CodeUnauthorized   = "unauthorized"
	CodeNotFound       = "not_found"
	CodeInvalidRequest = "invalid_request"
	CodeInvalidModule  = "invalid_module"
	CodeTooLarge       = "too_large"
	CodeForbidden      = "forbidden"
	CodeConflict       = "conflict"
	CodeInternal       = "internal"
	// CodeNoSpace: a sandbox's disk is full (507).
	CodeNoSpace = "no_space"
	// CodeDied: the sandbox died during the call, killed by its host
	// (out of memory); its next use boots it afresh (410).
	CodeDied = "died"
	// CodeBodyTimeout: the request body stopped coming (408).
	CodeBodyTimeout = "body_timeout"
	// CodeUnavailable: the cluster's registry (etcd) cannot be reached;
	// nothing was changed, and the call may be made again (503, with
	// Retry-After).
	CodeUnavailable = "unavailable"
)

// Health is the answer of GET /v1/health.
type Health struct {
	Status  string `json:"status"`
	Version string `json:"version"`
	Domain  string `json:"domain"`
	HTTP    string `json:"http"` // address of the app listener
}

// Status is the answer of GET /v1/status: a node's state, or a gateway's
// with each node's in Nodes.
type Status struct {
	Role    string `json:"role"` // all, node or gateway
	Node    string `json:"node,omitempty"`
	Version string `json:"version,omitempty"`
	// Shared is the node's link to the cluster's shared storage (nil:
	// none configured).
	Shared *SharedStorage `json:"shared,omitempty"`
	// Nodes (gateway only) is every live node's status; a node that did
	// not answer has Error set.
	Nodes []Status `json:"nodes,omitempty"`
	Error string   `json:"error,omitempty"`
}

// SharedStorage is a node's view of the cluster's shared storage (S3).
type SharedStorage struct {
	Remote string `json:"remote"` // e.g. s3://bucket/prefix at host:port
	// Reachable is false while the last attempt to use it failed.
	Reachable bool `json:"reachable"`
	// Backlog is what waits in the node's outbox: tasks (uploads and
	// deletions), bytes to upload, and when the oldest was queued. It
	// drains once the storage answers again.
	Backlog      int       `json:"backlog"`
	BacklogBytes int64     `json:"backlog_bytes"`
	Oldest       time.Time `json:"oldest,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	// Counters since the node started.
	Uploads         int64 `json:"uploads"`
	SnapshotUploads int64 `json:"snapshot_uploads"`
	Fetches         int64 `json:"fetches"`
	SnapshotFetches int64 `json:"snapshot_fetches"`
	FetchFailures   int64 `json:"fetch_failures"`
	Deletes         int64 `json:"deletes"`
	Dropped         int64 `json:"dropped"`
	Evictions       int64 `json:"evictions"`
	// CacheBytes is the node's local blob cache, CacheCap its cap (0: none).
	CacheBytes int64 `json:"cache_bytes"`
	CacheCap   int64 `json:"cache_cap"`
}

// SharedSnapshot is an app's snapshot in a cluster's shared storage.
type SharedSnapshot struct {
	Release  string    `json:"release"`
	Blob     string    `json:"blob"`  // SHA-256 of the packed snapshot in the store
	Size     int64     `json:"size"`  // packed bytes in the store
	Bytes    int64     `json:"bytes"` // unpacked
	Node     string    `json:"node"`  // the node that baked it
	Uploaded time.Time `json:"uploaded"`
	Used     time.Time `json:"used"`
}

// Limits are per-app resource limits. Zero fields take the server's defaults.
type Limits struct {
	MemoryBytes  int64    `json:"memory_bytes,omitempty"`
	Timeout      Duration `json:"timeout,omitempty"`
	Concurrency  int      `json:"concurrency,omitempty"`
	MaxBodyBytes int64    `json:"max_body_bytes,omitempty"`
	FSBytes      int64    `json:"fs_bytes,omitempty"`
}

// DeployRequest is the body of POST /v1/apps/{name}/releases. The module must
// have been uploaded first with PUT /v1/blobs/{sha256}.
type DeployRequest struct {
	// Module is the SHA-256 (hex) of the uploaded Wasm module.
	Module string `json:"module"`
	// Mode is "request" (default) or "session".
	Mode string `json:"mode,omitempty"`
	// Env is merged into the app's environment (see EnvRequest).
	Env    map[string]string `json:"env,omitempty"`
	Limits Limits            `json:"limits,omitzero"`
	// Assets is the SHA-256 (hex) of an uploaded tar archive of read-only
	// files that every instance sees under /assets (see PackAssets); empty
	// for none. It is part of the release: new assets make a new release.
	Assets string `json:"assets,omitempty"`
	// Idle is how long an app goes without requests before it is frozen
	// to zero (0: the server's default). Part of the release.
	Idle Duration `json:"idle,omitempty"`
	// Bake writes the release's snapshot at deploy instead of on its first
	// idle period.
	Bake bool `json:"bake,omitempty"`
	// Warm, in a cluster, is a shallow warm pool: the app's first Warm
	// nodes in ring order keep it thawed and ready, never freezing it
	// when idle; a request that reaches one of them while it is not ready
	// is sent on to the next (which is) while it wakes. 0: none. Part of
	// the release.
	Warm int `json:"warm,omitempty"`
}

// Release is an immutable version of an app.
type Release struct {
	ID         string    `json:"id"`
	App        string    `json:"app"`
	Version    int       `json:"version"`
	Runtime    string    `json:"runtime"`
	Module     string    `json:"module"`
	ModuleSize int64     `json:"module_size"`
	Shape      string    `json:"shape"`
	Mode       string    `json:"mode"`
	Limits     Limits    `json:"limits"`
	Assets     string    `json:"assets,omitempty"`      // SHA-256 of the assets archive; "" for none
	AssetsSize int64     `json:"assets_size,omitempty"` // size of the assets archive in bytes
	CreatedAt  time.Time `json:"created_at"`
}

// Counters are an app's request and boot counts since the server started.
type Counters struct {
	Requests   uint64            `json:"requests"`
	Errors     uint64            `json:"errors"`
	Boots      map[string]uint64 `json:"boots"`       // by boot kind: warm, thaw, cold
	LimitKills map[string]uint64 `json:"limit_kills"` // by limit: memory, cpu, body, concurrency
	InFlight   int64             `json:"in_flight"`
	Instances  int               `json:"instances"` // live instances (idle pool + busy)
	Freezes    uint64            `json:"freezes"`
	// Fallbacks counts wakes that booted cold because the snapshot could
	// not be used, by reason: missing, corrupt, incompatible,
	// wrong_release, bad_image.
	Fallbacks map[string]uint64 `json:"fallbacks"`
}

// Snapshot describes a release's stored snapshot.
type Snapshot struct {
	Release  string    `json:"release"`
	Size     int64     `json:"size"` // bytes on disk
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used"`
	// Shared: a copy is in the cluster's shared storage, from which any
	// node can restore it (a paused sandbox's checkpoint: once uploaded,
	// another node can resume the sandbox if its own node leaves).
	Shared bool `json:"shared,omitempty"`
}

// PublicBaseHeader is set by a gateway on the control-API calls it forwards
// to a node: the scheme and host (with its port) that apps and sandbox
// ports answer at through the gateway, e.g. "http://localhost:8080". The
// node's answers then give app and port URLs there, not at its own
// listener. A gateway that serves TLS too adds a second value, its https
// base ("https://localhost:8443"): E2B's SDK, which reaches sandboxes over
// TLS, is told that one's host as the sandboxes' domain. A client that
// sets it only changes the URLs it is told.
const PublicBaseHeader = "Frost-Public-Base"

// ParsePublicBase splits a PublicBaseHeader value into its scheme (http
// or https) and host[:port]; ok is false for anything else (a path, a
// query, a user).
func ParsePublicBase(base string) (scheme, host string, ok bool) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil ||
		u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", "", false
	}
	return u.Scheme, u.Host, true
}

// ReplayHeader, on a node's answer, names the node a gateway should
// re-send the request to, once: the node that holds the sandbox asked
// for, or the next one in an app's ring order when this one is full.
const ReplayHeader = "Frost-Replay"

// App is an app as listed by GET /v1/apps.
type App struct {
	Name       string    `json:"name"`
	URL        string    `json:"url"`
	Release    string    `json:"release"`
	Version    int       `json:"version"`
	Mode       string    `json:"mode"`
	Shape      string    `json:"shape"`
	EnvKeys    []string  `json:"env_keys"` // values are never returned
	EnvVersion int64     `json:"env_version"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	// Tenant owns the app ("" for the admin).
	Tenant string `json:"tenant,omitempty"`
}

// AppDetail is the answer of GET /v1/apps/{name}.
type AppDetail struct {
	App
	// State is "live" (instances may exist) or "frozen" (none, no memory).
	State string `json:"state"`
	// Idle is the current release's idle timeout.
	Idle Duration `json:"idle"`
	// Warm is the current release's warm pool (nodes that keep it ready).
	Warm int `json:"warm,omitempty"`
	// Snapshot is the current release's snapshot, if one is stored.
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	// SharedSnapshot is the current release's snapshot in the cluster's
	// shared storage, which any node can wake the app from.
	SharedSnapshot *SharedSnapshot `json:"shared_snapshot,omitempty"`
	Limits         Limits          `json:"limits"`
	Releases       []Release       `json:"releases"`
	Counters       Counters        `json:"counters"`
}

// EnvRequest is the body of PATCH /v1/apps/{name}/env.
type EnvRequest struct {
	Set   map[string]string `json:"set,omitempty"`
	Unset []string          `json:"unset,omitempty"`
}

// LogLine is one line of GET /v1/apps/{name}/logs (newline-delimited JSON).
type LogLine struct {
	Time    time.Time `json:"time"`
	App     string    `json:"app"`
	Release string    `json:"release,omitempty"`
	Stream  string    `json:"stream"` // stderr, stdout, guest, frost
	Level   string    `json:"level,omitempty"`
	Message string    `json:"message"`
}

// Blob is the answer of PUT /v1/blobs/{sha256}.
type Blob struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// Tenant is a tenant as GET /v1/tenants lists it. Token is set only in the
// answer of POST /v1/tenants: it is shown once and never stored.
type Tenant struct {
	Name      string    `json:"name"`
	Token     string    `json:"token,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// E2BKey is the E2B API key of a tenant's token ("frostt_NAME_SECRET"):
// "e2b_SECRET", the shape E2B's keys have. The token itself works as a
// key too.
func E2BKey(token string) string {
	rest, _ := strings.CutPrefix(token, "frostt_")
	_, secret, _ := strings.Cut(rest, "_")
	return "e2b_" + secret
}

// TenantRequest is the body of POST /v1/tenants.
type TenantRequest struct {
	Name string `json:"name"`
}
