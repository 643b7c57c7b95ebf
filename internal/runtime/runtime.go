// Package runtime defines the contract between Frost's core and the
// sandboxes that run guest code. The core (apps, routing, snapshots, registry)
// drives every runtime through Runtime and Program alone; optional abilities
// are separate small interfaces a runtime may implement, probed with a type
// assertion. Implementations: runtime/wasm (wazero, embedded, the default);
// gvisor and microvm follow the same contract.
package runtime

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/frostdev/frost/internal/registry"
)

// Errors a Program or Runtime returns, checked with errors.Is. The node maps
// each to one HTTP status in one place.
var (
	// ErrInvalidCode: the code is not a valid module for this runtime (deploy refuses it).
	ErrInvalidCode = errors.New("invalid module")
	// ErrUnsupportedShape: valid code, but no guest shape this runtime can serve.
	ErrUnsupportedShape = errors.New("unsupported guest shape")
	// ErrInit: the guest failed while initialising (deploy refuses it).
	ErrInit = errors.New("guest init failed")
	// ErrMemoryLimit: the guest needed more memory than its limit.
	ErrMemoryLimit = errors.New("memory limit exceeded")
	// ErrCPULimit: the guest ran past its time limit and was stopped.
	ErrCPULimit = errors.New("time limit exceeded")
	// ErrTrap: the guest trapped (a fault in the guest's code).
	ErrTrap = errors.New("guest trapped")
	// ErrBadResponse: the guest's response was malformed or too large.
	ErrBadResponse = errors.New("bad response from guest")
	// ErrCanceled: the request's context ended (its client went away)
	// while the guest ran, and the guest was stopped.
	ErrCanceled = errors.New("request canceled")
	// ErrClosed: the program was closed (or is frozen).
	ErrClosed = errors.New("program closed")
	// ErrBadImage: a snapshot image does not fit the program (another
	// state-format version, missing parts, sizes the module cannot have),
	// or the program restored from it failed its liveness gate. The caller
	// boots cold instead; the image must not be used again.
	ErrBadImage = errors.New("snapshot image does not fit")
)

// Boot says how the instance that served a request came to serve.
type Boot uint8

const (
	// BootWarm: an instance that was already live and reset to its post-init state.
	BootWarm Boot = iota
	// BootThaw: a new instance restored from a snapshot of the post-init state.
	BootThaw
	// BootCold: a new instance that ran from scratch.
	BootCold
)

func (b Boot) String() string {
	switch b {
	case BootWarm:
		return "warm"
	case BootThaw:
		return "thaw"
	default:
		return "cold"
	}
}

// Spec is what a runtime needs to load a release.
type Spec struct {
	Release registry.Release
	// Code is the release's module bytes, verified against Release.Module.
	Code []byte
	// Assets is the release's assets archive (nil when Release.Assets is
	// ""): a tar of regular files and directories, already checked by the
	// node with package assets. A runtime verifies it against
	// Release.Assets (bytes that do not match, or do not parse, fail Load
	// with ErrInvalidCode) and shows it to every instance, read-only, at
	// /assets: no write there ever changes what any instance sees. The
	// runtime may keep the slice; nobody writes to it.
	Assets []byte
	// Env is the app's current environment, delivered to new instances.
	Env map[string]string
	// Logs receives the guest's log lines (stderr, http-wasm log calls). It
	// must not block for long; it may be called from many goroutines.
	Logs LogSink
}

// LogSink receives guest output line by line.
type LogSink func(stream string, line []byte)

// Request is one HTTP request handed to a program. The body is already
// read (and capped) by the node.
type Request struct {
	Method     string
	URI        string // request target: path and query, as sent
	Proto      string // "HTTP/1.1"
	Host       string // without port
	Header     http.Header
	Body       []byte
	RemoteAddr string // "ip:port"
	ServerPort string
	// Start is when the request arrived; Timing.Start is measured from it, so
	// a program need not read the clock again (clock reads are not free on
	// virtual machines).
	Start time.Time
	// RespHeader, if not nil, is where the program puts the response's
	// headers (the caller's http.ResponseWriter header map, saving a copy);
	// Response.Header is then that map. After a failed Handle it may hold
	// a partial set the caller must clear.
	RespHeader http.Header
}

// Response is a complete response from a guest.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Timing reports where a request's time went.
type Timing struct {
	Boot Boot
	// Start is the time to get an instance ready (pool take, restore or instantiate).
	Start time.Duration
	// Run is the time spent in the guest's handler.
	Run time.Duration
	// Wake, set by the node on the first request after a wake, is the
	// time the wake took (reading and verifying the snapshot, restoring,
	// the liveness gate; or the cold boot).
	Wake time.Duration
	// WakeAhead says the wake was over before the request arrived (a
	// gateway's pre-warm, or a warm pool): the request did not wait for it.
	WakeAhead bool
	// Fetch, part of Wake, is the time spent pulling the snapshot from a
	// cluster's shared storage (0: it was on the node).
	Fetch time.Duration
}

// Program is a loaded release: it serves requests until closed.
type Program interface {
	// Handle serves one request. Safe for concurrent use; the caller bounds
	// concurrency. On success resp is complete; the caller returns it with
	// Release when written. On failure the error wraps one of this package's
	// sentinels and no instance state from the failed call is ever reused.
	// A request whose ctx ends while its guest runs stops the guest at its
	// next interrupt check and fails with ErrCanceled, as a time limit
	// does; a program whose instance keeps state between requests (a
	// session) lets the call finish instead, its state being worth more
	// than the CPU.
	Handle(ctx context.Context, req *Request) (resp *Response, t Timing, err error)
	// Release gives a response's buffers back to the program.
	Release(resp *Response)
	// SetEnv changes the environment that instances created from now on see.
	// Safe for concurrent use with Handle.
	SetEnv(env map[string]string)
	// Stats reports live instances.
	Stats() ProgramStats
	// Close frees the program's resources after in-flight calls finish; later
	// Handle calls fail with ErrClosed.
	Close(ctx context.Context) error
}

// Image is a program's post-init state in a runtime-agnostic form: named
// parts and a few facts. The node stores it with package snapshot, which
// hashes and verifies every part, and hands it back to Wake. An image never
// holds secrets: init runs with an empty environment.
type Image struct {
	// Version is the runtime's state-format version; Wake refuses others.
	Version string
	Parts   map[string][]byte
	Meta    map[string]string
	// Lent says the parts' buffers pass to Wake: some came from the
	// runtime's PartBuffer, and the caller keeps none of them, so the
	// program may recycle them once it is frozen again. The caller must
	// not touch them after Wake, whether it succeeded or not.
	Lent bool
}

// PartBuffers is implemented by runtimes that keep the buffers images are
// read into resident from one wake to the next: on virtual machines the
// page faults of a fresh buffer cost more than reading and hashing the
// part. Image.Lent hands them back.
type PartBuffers interface {
	// PartBuffer returns a buffer of size bytes for the image part name,
	// or nil for the reader to allocate one. Its contents are undefined.
	PartBuffer(name string, size int64) []byte
}

// Freezer is implemented by programs that can scale to zero: drop every
// instance and the memory they hold, and come back without running init.
type Freezer interface {
	// Image returns the release's post-init state, or nil when there is
	// nothing to restore (a guest that starts afresh for every request).
	// It fails on a frozen program.
	Image() (*Image, error)
	// Freeze drops every instance and the post-init state; only the
	// compiled code stays. The caller ensures no request is in flight.
	// Handle on a frozen program fails with ErrClosed.
	Freeze()
	// Wake makes a frozen program serve again: restored from img without
	// running init (a thaw), or, with img nil, by running init (a cold
	// boot); then a liveness gate (a real call into a restored instance
	// and a write, sync and read on its file system) must pass. An image
	// that does not fit, or fails the gate, is ErrBadImage. It returns
	// how the program came back: BootThaw, or BootCold when init ran,
	// that is with img nil, or for a guest that reads its environment
	// during init woken under a non-empty environment (init reruns under
	// it; that state, which may hold secrets, is kept in memory only).
	Wake(ctx context.Context, img *Image) (Boot, error)
	// Frozen reports whether the program is frozen.
	Frozen() bool
}

// Thawer is implemented by runtimes that can load a release without
// initialising it, so that it can be woken from an image.
type Thawer interface {
	// ImageVersion is the state-format version of the runtime's images.
	ImageVersion() string
	// LoadFrozen compiles (or loads from cache) a release and returns its
	// program frozen: nothing of the guest has run.
	LoadFrozen(ctx context.Context, spec Spec) (Program, error)
}

// ProgramStats describes a program's instances.
type ProgramStats struct {
	Instances int // live instances, idle and busy
	Idle      int
}

// Runtime loads releases into programs.
type Runtime interface {
	// Name is the runtime's name as stored in releases, e.g. "wasm".
	Name() string
	// Inspect validates code and returns the guest shape it will be served
	// as, without compiling it. Errors wrap ErrInvalidCode or ErrUnsupportedShape
	// and say precisely what is wrong.
	Inspect(code []byte) (shape string, err error)
	// Load compiles (or loads from cache) and initialises a release. It may
	// take long for large modules; it never blocks other Loads or programs.
	Load(ctx context.Context, spec Spec) (Program, error)
	// Close frees the runtime; programs must be closed first.
	io.Closer
}
