// Package wasm is Frost's default runtime: WebAssembly guests under wazero's
// compiler, with per-request isolation, host-enforced limits and an on-disk
// cache of compiled code.
//
// Two guest shapes are served:
//
//   - http-wasm: reactor modules that import "http_handler" and export
//     handle_request (the http-wasm handler ABI). _initialize and an optional
//     "init" export run once per release; the state after init is captured
//     (memory, every mutable global, the guest file system) and every request
//     starts from exactly that state.
//   - wagi: any WASI command (_start), run once per request as CGI (RFC 3875):
//     request metadata in the environment, body on stdin, response on stdout.
//
// Every instance sees two file systems, both in memory: its private writable
// tree at "/" (package guestfs), and the release's assets, read-only, at
// /assets (package assets; see assets.go).
//
// Before compiling, every module is rewritten by package wasmbin: each
// mutable global is exported so the host can reset it (wazero cannot set
// non-exported globals), and an interrupt check (one global load and branch)
// is placed at every function entry and loop header so the host can stop a
// guest at its time limit without wazero's costly context polling.
package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	goruntime "runtime"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/frostdev/frost/internal/assets"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/wasmbin"
)

// Guest shapes.
const (
	ShapeHTTPWasm = "http-wasm"
	ShapeWAGI     = "wagi"
)

// Config configures the runtime. Zero fields take DefaultConfig's values.
type Config struct {
	// CacheDir holds compiled code so a restart does not recompile ("" = no disk cache).
	CacheDir string
	// MaxResponseBytes caps a guest's response body; beyond it the request fails.
	MaxResponseBytes int64
	// MaxIdleInstances caps idle instances kept per program for reuse.
	MaxIdleInstances int
	// Logger receives the runtime's own diagnostics.
	Logger *slog.Logger
	// LongRunnerSlots is how many guest calls may run past Slice at once
	// (fair.go): 0 means GOMAXPROCS-1, at least 1 (with SpareProcessor,
	// GOMAXPROCS); -1 turns fair scheduling off.
	LongRunnerSlots int
	// SpareProcessor lets the runtime add a processor to GOMAXPROCS while
	// long runners exist, so that one is always left to poll the network
	// (fair.go). It changes the whole process's GOMAXPROCS: for servers.
	SpareProcessor bool
	// SpareLinger is how long the spare stays after the last long runner
	// (default DefaultSpareLinger).
	SpareLinger time.Duration
	// Slice is how long a guest call runs before it needs a slot
	// (DefaultSlice); Quantum is how often a long runner lets others run
	// (DefaultQuantum).
	Slice, Quantum time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxResponseBytes: 32 << 20,
		MaxIdleInstances: 2 * goruntime.GOMAXPROCS(0),
		Logger:           slog.New(slog.DiscardHandler),
	}
}

// Runtime is the wasm runtime. It is safe for concurrent use.
type Runtime struct {
	cfg   Config
	cache wazero.CompilationCache
	// wrt is the one wazero runtime every release compiles into, with the
	// WASI and http_handler host modules instantiated once. (Memory limits
	// are per instance, in the allocator, not a runtime setting.)
	wrt wazero.Runtime
	// stop is how guests are stopped at their time limit; only benchmarks
	// change it, to measure the alternatives.
	stop stopMode
	// fair shares the cores between long-running and short guest calls;
	// nil when off.
	fair *fair
}

// stopMode selects the time-limit mechanism.
type stopMode uint8

const (
	// stopInterrupt: instrumented interrupt checks (the default).
	stopInterrupt stopMode = iota
	// stopNone: no time limit at all (baseline for benchmarks).
	stopNone
	// stopContext: wazero's context-done polling (for comparison).
	stopContext
)

var _ runtime.Runtime = (*Runtime)(nil)

// New returns a runtime.
func New(cfg Config) (*Runtime, error) { return build(cfg, stopInterrupt) }

// build returns a runtime that stops guests with stop.
func build(cfg Config, stop stopMode) (*Runtime, error) {
	def := DefaultConfig()
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = def.MaxResponseBytes
	}
	if cfg.MaxIdleInstances <= 0 {
		cfg.MaxIdleInstances = def.MaxIdleInstances
	}
	if cfg.Logger == nil {
		cfg.Logger = def.Logger
	}
	r := &Runtime{cfg: cfg, stop: stop}
	if cfg.CacheDir != "" {
		if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("wasm: compile cache: %w", err)
		}
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm: compile cache: %w", err)
		}
		r.cache = c
	} else {
		r.cache = wazero.NewCompilationCache()
	}
	ctx := context.Background()
	rc := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(r.cache).
		WithCloseOnContextDone(r.stop == stopContext)
	r.wrt = wazero.NewRuntimeWithConfig(ctx, rc)
	if err := instantiateWASI(ctx, r.wrt); err != nil {
		r.Close()
		return nil, fmt.Errorf("wasm: wasi: %w", err)
	}
	if err := instantiateHTTPHandler(ctx, r.wrt); err != nil {
		r.Close()
		return nil, fmt.Errorf("wasm: http_handler: %w", err)
	}
	if r.stop == stopInterrupt {
		if err := instantiateYield(ctx, r.wrt); err != nil {
			r.Close()
			return nil, fmt.Errorf("wasm: yield: %w", err)
		}
		r.fair = newFair(cfg)
	}
	return r, nil
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return "wasm" }

// Close implements runtime.Runtime.
func (r *Runtime) Close() error {
	if r.fair != nil && r.fair.spare != nil {
		r.fair.spare.stop()
	}
	if r.wrt != nil {
		r.wrt.Close(context.Background())
	}
	return r.cache.Close(context.Background())
}

// Inspect implements runtime.Runtime.
func (r *Runtime) Inspect(code []byte) (string, error) {
	m, err := wasmbin.Parse(code)
	if err != nil {
		return "", fmt.Errorf("%w: %v", runtime.ErrInvalidCode, err)
	}
	shape, err := detectShape(m)
	if err != nil {
		return "", err
	}
	return shape, nil
}

// detectShape decides how a module is served, or says precisely why it cannot be.
func detectShape(m *wasmbin.Module) (string, error) {
	if m.ImportsModule("http_handler") {
		t, ok := m.ExportedFunc("handle_request")
		if !ok {
			return "", fmt.Errorf("%w: the module imports http_handler (the http-wasm ABI) but does not export handle_request", runtime.ErrUnsupportedShape)
		}
		if len(t.Params) != 0 || len(t.Results) != 1 || t.Results[0] != wasmbin.ValI64 {
			return "", fmt.Errorf("%w: handle_request must have type () -> i64 (http-wasm ABI)", runtime.ErrUnsupportedShape)
		}
		if t, ok := m.ExportedFunc("handle_response"); ok && (len(t.Params) != 2 || len(t.Results) != 0) {
			return "", fmt.Errorf("%w: handle_response must have type (i32, i32) -> () (http-wasm ABI)", runtime.ErrUnsupportedShape)
		}
		if !exportsMemory(m, "memory") {
			return "", fmt.Errorf("%w: an http-wasm guest must export its memory as \"memory\"", runtime.ErrUnsupportedShape)
		}
		return ShapeHTTPWasm, nil
	}
	if t, ok := m.ExportedFunc("_start"); ok {
		if len(t.Params) != 0 || len(t.Results) != 0 {
			return "", fmt.Errorf("%w: _start must have type () -> ()", runtime.ErrUnsupportedShape)
		}
		return ShapeWAGI, nil
	}
	return "", fmt.Errorf("%w: the module neither exports handle_request (an http-wasm handler) nor _start (a WASI command served as CGI); build a reactor that imports http_handler, or a command with a main function", runtime.ErrUnsupportedShape)
}

func exportsMemory(m *wasmbin.Module, name string) bool {
	for _, e := range m.Exports {
		if e.Name == name && e.Kind == wasmbin.ExternMemory {
			return true
		}
	}
	return false
}

// compiled is a release's module, compiled into the runtime's wazero runtime.
type compiled struct {
	rt   wazero.Runtime
	mod  wazero.CompiledModule
	info *wasmbin.Module
}

func (c *compiled) close(ctx context.Context) error { return c.mod.Close(ctx) }

const pageSize = 65536

// compile rewrites and compiles code; memBytes is the app's memory limit,
// enforced per instance by its allocator (memory.go).
func (r *Runtime) compile(ctx context.Context, code []byte, memBytes int64) (*compiled, error) {
	info, err := wasmbin.Parse(code)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", runtime.ErrInvalidCode, err)
	}
	if err := checkTables(info); err != nil {
		return nil, err
	}
	rewritten, err := wasmbin.Instrument(code, info, wasmbin.InstrumentOptions{
		GlobalExportPrefix: globalPrefix,
		InterruptExport:    interruptExport,
		Interrupt:          r.stop == stopInterrupt,
		YieldEvery:         yieldEvery(r.stop),
		YieldImport:        wasmbin.ImportName{Module: yieldModule, Name: yieldName},
		LiveExport:         liveExport,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", runtime.ErrInvalidCode, err)
	}
	rt := r.wrt
	cctx := experimental.WithCompilationWorkers(ctx, goruntime.GOMAXPROCS(0))
	mod, err := rt.CompileModule(cctx, rewritten)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", runtime.ErrInvalidCode, err)
	}
	fail := func(err error) (*compiled, error) {
		mod.Close(ctx)
		return nil, err
	}
	if len(mod.ImportedMemories()) > 0 {
		return fail(fmt.Errorf("%w: the module imports its memory; Frost guests must define their own", runtime.ErrUnsupportedShape))
	}
	for _, mem := range mod.ExportedMemories() {
		if int64(mem.Min())*pageSize > memBytes {
			return fail(fmt.Errorf("%w: the module needs %d KiB of memory at start, more than its limit of %d KiB (raise --memory)", runtime.ErrMemoryLimit, int64(mem.Min())*64, memBytes/1024))
		}
	}
	return &compiled{rt: rt, mod: mod, info: info}, nil
}

// maxTableEntries caps a table's size. A table's entries live outside the
// guest's linear memory, so its memory limit does not bound them: without
// this cap one table.grow could make the host allocate gigabytes.
const maxTableEntries = 1 << 20

// checkTables refuses a module whose tables start, or can grow, past
// maxTableEntries (8 MiB of references each).
func checkTables(info *wasmbin.Module) error {
	for i, t := range info.Tables {
		switch {
		case t.Limits.Min > maxTableEntries:
			return fmt.Errorf("%w: table %d starts with %d entries, more than Frost's limit of %d", runtime.ErrMemoryLimit, i, t.Limits.Min, maxTableEntries)
		case info.GrowsTables && (!t.Limits.HasMax || t.Limits.Max > maxTableEntries):
			return fmt.Errorf("%w: the module grows its tables (table.grow) and table %d has no maximum of at most %d entries; declare one (a table's entries are not bounded by the memory limit)", runtime.ErrUnsupportedShape, i, maxTableEntries)
		}
	}
	return nil
}

const (
	globalPrefix    = "__frost_g"
	interruptExport = "__frost_interrupt"
	liveExport      = "__frost_live"
)

// yieldEvery is how many loop iterations or calls a guest runs between exits
// from compiled code to Go. Go cannot preempt a goroutine inside wazero's
// compiled code, so without these exits a spinning guest would stall every
// garbage collection, and with it the whole process, including the timer
// that stops the guest. 1<<16 passes is tens of microseconds of a tight loop.
func yieldEvery(m stopMode) uint32 {
	if m == stopInterrupt {
		return 1 << 16
	}
	return 0
}

// Load implements runtime.Runtime: the program is loaded and booted cold
// (init runs).
func (r *Runtime) Load(ctx context.Context, spec runtime.Spec) (runtime.Program, error) {
	p, err := r.loadFrozen(ctx, spec)
	if err != nil {
		return nil, err
	}
	if err := p.boot(ctx); err != nil {
		p.c.close(ctx)
		return nil, err
	}
	return p, nil
}

// LoadFrozen implements runtime.Thawer: it compiles (or loads from the
// cache) the release's code and returns a frozen program: nothing of the
// guest has run. Wake it from an image, or cold.
func (r *Runtime) LoadFrozen(ctx context.Context, spec runtime.Spec) (runtime.Program, error) {
	return r.loadFrozen(ctx, spec)
}

// loadFrozen checks the code and assets against the release, compiles the
// code and returns the program, frozen.
func (r *Runtime) loadFrozen(ctx context.Context, spec runtime.Spec) (*program, error) {
	if got := sha256.Sum256(spec.Code); hex.EncodeToString(got[:]) != spec.Release.Module && spec.Release.Module != "" {
		return nil, fmt.Errorf("%w: module bytes do not match release digest", runtime.ErrInvalidCode)
	}
	tree, err := loadAssets(spec)
	if err != nil {
		return nil, err
	}
	c, err := r.compile(ctx, spec.Code, spec.Release.Limits.MemoryBytes)
	if err != nil {
		return nil, err
	}
	shape, err := detectShape(c.info)
	if err != nil {
		c.close(ctx)
		return nil, err
	}
	return newProgram(r, c, shape, spec, tree), nil
}

// loadAssets checks and parses a release's assets, once per program; nil
// when it has none.
func loadAssets(spec runtime.Spec) (*assets.FS, error) {
	if spec.Assets == nil && spec.Release.Assets == "" {
		return nil, nil
	}
	if got := sha256.Sum256(spec.Assets); hex.EncodeToString(got[:]) != spec.Release.Assets && spec.Release.Assets != "" {
		return nil, fmt.Errorf("%w: assets bytes do not match release digest", runtime.ErrInvalidCode)
	}
	tree, err := assets.Parse(spec.Assets)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", runtime.ErrInvalidCode, err)
	}
	return tree, nil
}

// classify maps an error from a guest call to the runtime's sentinels.
func classify(err error, interrupted bool, memLimited bool) error {
	switch {
	case err == nil:
		return nil
	case interrupted:
		return fmt.Errorf("%w: the guest was stopped at its time limit", runtime.ErrCPULimit)
	case errors.Is(err, errResponseTooLarge):
		return fmt.Errorf("%w: %v", runtime.ErrBadResponse, err)
	case memLimited:
		return fmt.Errorf("%w: %v", runtime.ErrMemoryLimit, err)
	default:
		return fmt.Errorf("%w: %v", runtime.ErrTrap, err)
	}
}

var errResponseTooLarge = errors.New("response exceeds the limit")
