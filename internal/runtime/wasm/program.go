package wasm

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/experimental/sysfs"

	"github.com/frostdev/frost/internal/assets"
	"github.com/frostdev/frost/internal/guestfs"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/wasmbin"
)

// program is a loaded release. For http-wasm guests it keeps a pool of
// instances, each reset to the post-init snapshot after every request.
type program struct {
	r     *Runtime
	c     *compiled
	shape string
	spec  runtime.Spec // Assets nil: tree holds them
	// tree is the release's assets, mounted read-only at /assets in every
	// instance; nil when the release has none.
	tree *assets.FS

	// reuse is false when the guest can change state the host cannot reset
	// (tables, dropped segments): then every request gets a new instance.
	reuse bool

	// base is the post-init state (http-wasm), captured after init ran
	// with an empty environment, so it holds no secrets: what Image
	// exports and, unless init read the environment, what every instance
	// starts from. nil while the program is frozen.
	base atomic.Pointer[snapshot]
	// initReadsEnv: the guest read its environment during init, so under
	// a non-empty environment instances start from tmpl instead, a
	// post-init state for that environment, kept in memory only.
	initReadsEnv atomic.Bool
	tmpl         atomic.Pointer[template]
	tmplMu       sync.Mutex
	frozen       atomic.Bool

	// session mode: one long-lived instance serves requests one at a
	// time, keeping its state between them; sessSem (capacity 1) guards sess.
	session bool
	sess    *instance
	sessSem chan struct{}

	env atomic.Pointer[envState]

	mu     sync.Mutex
	idle   []*instance
	live   int
	closed bool

	pool sync.Pool // *runtime.Response
}

// envState is an environment and the version instances are tagged with.
type envState struct {
	version uint64
	env     map[string]string
	keys    []string // sorted, for deterministic WASI environ
	entries []string // KEY=VALUE in keys order, what WASI environ_get answers
}

func newEnvState(version uint64, env map[string]string) *envState {
	e := &envState{version: version, env: env, keys: slices.Sorted(maps.Keys(env))}
	for _, k := range e.keys {
		e.entries = append(e.entries, k+"="+env[k])
	}
	return e
}

// emptyEnv is what init runs under.
var emptyEnv = newEnvState(0, map[string]string{})

// template is a snapshot taken after init under one environment version.
type template struct {
	envVersion uint64
	snap       *snapshot
}

// snapshot is the state of an initialised instance.
type snapshot struct {
	memory  []byte
	globals []uint64 // values of mutable globals, in instance.globals order
	fs      *guestfs.Image

	// lent: memory is an image buffer (a thaw read the snapshot into
	// it, see Runtime.PartBuffer). It goes back to imageBuffers, zeroed,
	// when the last holder lets go: the program while this is its base,
	// and every instance made from it. refs counts them.
	lent bool
	refs atomic.Int64
}

// hold takes a reference to s for an instance; false when s was already
// given back (the program froze meanwhile).
func (s *snapshot) hold() bool {
	if !s.lent {
		return true
	}
	for {
		n := s.refs.Load()
		if n <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// drop lets go of a reference taken by hold, or the program's own.
func (s *snapshot) drop() {
	if s.lent && s.refs.Add(-1) == 0 {
		clear(s.memory)
		imageBuffers.put(s.memory)
	}
}

// setBase makes s the program's base state (nil: none) and lets go of the
// previous one.
func (p *program) setBase(s *snapshot) {
	if old := p.base.Swap(s); old != nil {
		old.drop()
	}
}

var _ runtime.Program = (*program)(nil)

func newProgram(r *Runtime, c *compiled, shape string, spec runtime.Spec, tree *assets.FS) *program {
	spec.Assets = nil
	p := &program{
		r:       r,
		c:       c,
		shape:   shape,
		spec:    spec,
		tree:    tree,
		reuse:   !c.info.MutatesTables && !c.info.DropsSegments,
		session: spec.Release.Mode == registry.ModeSession,
		sessSem: make(chan struct{}, 1),
	}
	p.frozen.Store(true) // until boot or Wake
	p.pool.New = func() any { return new(runtime.Response) }
	p.SetEnv(spec.Env)
	return p
}

// SetEnv implements runtime.Program.
func (p *program) SetEnv(env map[string]string) {
	var v uint64 = 1
	if old := p.env.Load(); old != nil {
		v = old.version + 1
	}
	p.env.Store(newEnvState(v, maps.Clone(env)))
	// Idle instances carry the old environment: drop them.
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.live -= len(idle)
	p.mu.Unlock()
	for _, in := range idle {
		in.close()
	}
}

// boot runs the guest's initialisation (a cold boot) under an empty
// environment and captures the post-init state, so a guest that fails to
// initialise is refused at deploy.
func (p *program) boot(ctx context.Context) error {
	if p.shape != ShapeHTTPWasm {
		p.frozen.Store(false)
		return nil
	}
	in, err := p.instantiate(ctx, emptyEnv, nil)
	if err != nil {
		return err
	}
	defer in.close()
	snap, err := in.capture()
	if err != nil {
		return fmt.Errorf("%w: %v", runtime.ErrInit, err)
	}
	p.initReadsEnv.Store(in.envRead)
	p.tmpl.Store(nil)
	p.setBase(snap)
	p.frozen.Store(false)
	return nil
}

// template returns the post-init state instances under env start from:
// the base state, unless the guest read its environment during init and env
// is not empty; then init runs again under env, once per environment
// version, and that state stays in memory only (it may hold secrets).
func (p *program) template(ctx context.Context, env *envState) (*snapshot, error) {
	base := p.base.Load()
	if base == nil {
		return nil, fmt.Errorf("%w: the program is frozen", runtime.ErrClosed)
	}
	if !p.initReadsEnv.Load() || len(env.env) == 0 {
		return base, nil
	}
	if t := p.tmpl.Load(); t != nil && t.envVersion == env.version {
		return t.snap, nil
	}
	p.tmplMu.Lock()
	defer p.tmplMu.Unlock()
	if t := p.tmpl.Load(); t != nil && t.envVersion == env.version {
		return t.snap, nil
	}
	in, err := p.instantiate(ctx, env, nil)
	if err != nil {
		return nil, err
	}
	defer in.close()
	snap, err := in.capture()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", runtime.ErrInit, err)
	}
	p.tmpl.Store(&template{envVersion: env.version, snap: snap})
	return snap, nil
}

// instance is one live guest module.
type instance struct {
	p         *program
	mod       api.Module
	mem       api.Memory
	handleReq api.Function
	handleRes api.Function
	globals   []api.MutableGlobal
	interrupt api.MutableGlobal
	fs        *guestfs.FS
	baseFiles int
	assets    *assetsMount // nil when the release has no assets
	envVer    uint64
	env       *envState // what WASI environ_get answers
	envRead   bool      // the guest called environ_sizes_get or environ_get
	liveFn    api.Function
	snap      *snapshot // the state restored after every request
	turn      turn      // the running call's standing with the fair scheduler
	linear    *linearMemory
	ctx       context.Context

	// The time limit. A call stores its deadline; the instance's timer is
	// armed only when it is not already pending, and when it fires it
	// interrupts the call only if that call's deadline has passed, else it
	// re-arms for the call now running. So a busy instance pays two
	// uncontended lock pairs per call, not a timer reset and stop.
	timer       *time.Timer
	limitMu     sync.Mutex
	timerArmed  bool            // guarded by limitMu
	interrupted bool            // guarded by limitMu
	canceled    bool            // guarded by limitMu: interrupted because the request's context ended
	done        <-chan struct{} // the running request's context's Done, nil if it cannot end; the call's goroutine's own
	deadline    atomic.Int64    // unix nanoseconds; 0 when no call is running; written under limitMu

	// per-request state, used by the host functions
	req         *runtime.Request
	resp        *runtime.Response
	bodyRead    int
	headerBytes int                 // header bytes the guest has set or added during this request
	names       map[string]string   // interned header names (headerName)
	values      map[string][]string // interned header values (headerValue)
}

type instanceKey struct{}

type moduleConfig = wazero.ModuleConfig

// instantiate creates an instance. With snap nil it runs _initialize and the
// optional init export (a cold boot); otherwise it restores snap (a thaw).
func (p *program) instantiate(ctx context.Context, env *envState, snap *snapshot) (*instance, error) {
	in, err := p.instantiateWith(ctx, env, nil)
	if err != nil {
		return nil, err
	}
	if snap != nil && !snap.hold() {
		in.close()
		return nil, fmt.Errorf("%w: the program is frozen", runtime.ErrClosed)
	}
	in.snap = snap
	if snap == nil {
		if err := in.runInit(); err != nil {
			in.close()
			return nil, err
		}
	} else {
		in.fs.Reset(snap.fs)
		if err := in.restore(snap); err != nil {
			in.close()
			return nil, err
		}
	}
	in.baseFiles = in.fs.OpenFiles()
	return in, nil
}

// instantiateWith creates an instance without running any of its code;
// custom may change the module config (stdio for CGI).
func (p *program) instantiateWith(ctx context.Context, env *envState, custom func(moduleConfig) moduleConfig) (*instance, error) {
	limits := p.spec.Release.Limits
	fsCap := limits.FSBytes
	if fsCap <= 0 {
		fsCap = 16 << 20
	}
	in := &instance{p: p, envVer: env.version, env: env}
	in.fs = guestfs.New(guestfs.Options{CapBytes: fsCap})
	// The guest's writable tree at "/" and, if the release has assets, the
	// read-only tree at /assets. The guest picks the mount by the longest
	// prefix of the path (wasi-libc by whole elements; Go's wasip1 syscall
	// package by bytes, so "/assetsx" is "x" in the assets); either way
	// every other path is in the writable tree.
	fsc := wazero.NewFSConfig().(sysfs.FSConfig).WithSysFSMount(in.fs, "/")
	if p.tree != nil {
		in.assets = newAssetsMount(p.tree)
		fsc = fsc.(sysfs.FSConfig).WithSysFSMount(in.assets, assetsDir)
	}
	in.ctx = experimental.WithMemoryAllocator(context.WithValue(context.Background(), instanceKey{}, in), in)
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(in.sleep).
		WithRandSource(rand.Reader).
		WithStderr(newLineWriter(in, p.spec.Logs, "stderr")).
		WithStdout(newLineWriter(in, p.spec.Logs, "stdout")).
		WithFSConfig(fsc).
		WithArgs(p.spec.Release.App)
	// No WithEnv: environ.go answers the guest's WASI environ calls from in.env.
	if custom != nil {
		cfg = custom(cfg)
	}
	mod, err := p.c.rt.InstantiateModule(in.ctx, p.c.mod, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: instantiate: %v", runtime.ErrInit, err)
	}
	in.mod = mod
	in.mem = mod.Memory()
	in.handleReq = mod.ExportedFunction("handle_request")
	in.handleRes = mod.ExportedFunction("handle_response")
	in.liveFn = mod.ExportedFunction(liveExport)
	if p.r.stop == stopInterrupt {
		ig, ok := mod.ExportedGlobal(interruptExport).(api.MutableGlobal)
		if !ok {
			mod.Close(ctx)
			return nil, fmt.Errorf("%w: interrupt global missing after rewrite", runtime.ErrInit)
		}
		in.interrupt = ig
	}
	info := p.c.info
	for i, g := range info.Globals {
		if !g.Mutable {
			continue
		}
		idx := uint32(info.NumImportedGlobals + i)
		mg, ok := mod.ExportedGlobal(wasmbin.GlobalExportName(globalPrefix, idx)).(api.MutableGlobal)
		if !ok {
			mod.Close(ctx)
			return nil, fmt.Errorf("%w: global %d not exported after rewrite", runtime.ErrInit, idx)
		}
		in.globals = append(in.globals, mg)
	}
	in.timer = time.AfterFunc(time.Hour, in.check)
	in.timer.Stop()
	return in, nil
}

// sleep is the guest's nanosleep (WASI poll_oneoff on a clock): it never
// sleeps past the time limit, nor past its request's context's end, so a
// sleeping guest reaches its next interrupt check in time.
func (in *instance) sleep(ns int64) {
	d := time.Duration(ns)
	if dl := in.deadline.Load(); dl != 0 {
		if rem := time.Until(time.Unix(0, dl)); rem < d {
			d = rem
		}
	}
	if d <= 0 {
		return
	}
	if in.done == nil {
		time.Sleep(d)
		return
	}
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-in.done:
		t.Stop()
		in.checkDone()
	}
}

// runInit runs _initialize and the optional init export under the time limit.
func (in *instance) runInit() error {
	for _, name := range []string{"_initialize", "init"} {
		fn := in.mod.ExportedFunction(name)
		if fn == nil {
			continue
		}
		if len(fn.Definition().ParamTypes()) != 0 {
			continue
		}
		in.arm(in.p.initTimeout())
		_, err := fn.Call(in.ctx)
		fired := in.disarm()
		if err != nil {
			return fmt.Errorf("%w: %s: %v", runtime.ErrInit, name, classify(err, fired, in.atMemoryLimit()))
		}
	}
	return nil
}

func (p *program) initTimeout() time.Duration {
	t := p.spec.Release.Limits.Timeout
	if t < 10*time.Second {
		t = 10 * time.Second
	}
	return t
}

// capture snapshots the instance's state.
func (in *instance) capture() (*snapshot, error) {
	s := &snapshot{}
	if in.mem != nil {
		buf, ok := in.mem.Read(0, in.mem.Size())
		if !ok {
			return nil, errors.New("read memory")
		}
		s.memory = bytes.Clone(buf)
	}
	for _, g := range in.globals {
		s.globals = append(s.globals, g.Get())
	}
	s.fs = in.fs.Snapshot()
	return s, nil
}

// restore makes the instance's state exactly s. It reports an error when the
// instance cannot be brought back (its memory grew, files were left open).
func (in *instance) restore(s *snapshot) error {
	if in.mem != nil {
		size := in.mem.Size()
		want := uint32(len(s.memory))
		if size < want {
			if _, ok := in.mem.Grow((want - size) / pageSize); !ok {
				return fmt.Errorf("%w: cannot grow memory to the snapshot's size", runtime.ErrMemoryLimit)
			}
		} else if size > want {
			return errGrew
		}
		buf, _ := in.mem.Read(0, want)
		copyPreemptible(buf, s.memory)
	}
	for i, g := range in.globals {
		g.Set(s.globals[i])
	}
	if in.interrupt != nil {
		in.interrupt.Set(0)
	}
	if in.fs.Dirty() {
		in.fs.Reset(s.fs)
	}
	return nil
}

var errGrew = errors.New("memory grew")

func (in *instance) close() {
	if in.timer != nil {
		in.timer.Stop()
	}
	if in.mod != nil {
		in.mod.Close(context.Background())
	}
	if in.snap != nil {
		in.snap.drop()
		in.snap = nil
	}
}

// arm starts the time limit for a guest call.
func (in *instance) arm(d time.Duration) { in.armAt(time.Now(), d) }

// armAt is arm for a call starting at now.
func (in *instance) armAt(now time.Time, d time.Duration) {
	if f := in.p.r.fair; f != nil {
		f.begin(in, now)
	}
	in.limitMu.Lock()
	in.interrupted, in.canceled = false, false
	in.deadline.Store(now.Add(d).UnixNano())
	start := !in.timerArmed
	in.timerArmed = true
	in.limitMu.Unlock()
	if start {
		in.timer.Reset(d)
	}
}

// disarm ends the call's time limit and reports whether it fired. An
// instance whose limit fired is never reused: its interrupt global is set.
func (in *instance) disarm() bool {
	fired, _ := in.disarmCause()
	return fired
}

// disarmCause is disarm, also saying whether the call was stopped because
// its request's context ended rather than at its time limit.
func (in *instance) disarmCause() (fired, canceled bool) {
	if f := in.p.r.fair; f != nil {
		f.end(in)
	}
	in.limitMu.Lock()
	defer in.limitMu.Unlock()
	in.deadline.Store(0)
	return in.interrupted, in.canceled
}

// canceledBefore is the error of a call whose request's context ended
// before its guest ran; stopped, of one whose guest checkDone stopped.
func canceledBefore(ctx context.Context) error {
	return fmt.Errorf("%w before it ran: %v", runtime.ErrCanceled, context.Cause(ctx))
}

func stopped(ctx context.Context) error {
	return fmt.Errorf("%w: the guest was stopped: %v", runtime.ErrCanceled, context.Cause(ctx))
}

// checkDone stops the running call (as its time limit would, at its next
// interrupt check) if its request's context ended: the client went away.
// It runs on the call's goroutine at every yield (the guest's yield points,
// host work, a park or a sleep), tens of microseconds apart in a busy
// guest, so a request that ends sooner pays nothing for being watched: no
// goroutine, no callback registered with its context.
func (in *instance) checkDone() {
	if in.done == nil {
		return
	}
	select {
	case <-in.done:
	default:
		return
	}
	in.limitMu.Lock()
	if in.deadline.Load() != 0 {
		if in.interrupt != nil {
			in.interrupt.Set(1)
		}
		in.interrupted, in.canceled = true, true
	}
	in.limitMu.Unlock()
}

// check runs when the instance's timer fires: it interrupts the running call
// if its deadline has passed, re-arms for a later deadline, or, with no call
// running, leaves the timer for the next call to arm.
func (in *instance) check() {
	in.limitMu.Lock()
	in.timerArmed = false
	var rearm time.Duration
	if dl := in.deadline.Load(); dl != 0 {
		if rem := time.Until(time.Unix(0, dl)); rem > 0 {
			rearm = rem
			in.timerArmed = true
		} else {
			if in.interrupt != nil {
				in.interrupt.Set(1)
			}
			in.interrupted = true
		}
	}
	in.limitMu.Unlock()
	if rearm > 0 {
		in.timer.Reset(rearm)
	}
}

// atMemoryLimit reports whether the guest was refused memory.
func (in *instance) atMemoryLimit() bool {
	return in.linear != nil && in.linear.denied
}

// get takes an idle instance or makes one.
func (p *program) get(ctx context.Context) (*instance, runtime.Boot, error) {
	env := p.env.Load()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, 0, runtime.ErrClosed
	}
	for n := len(p.idle); n > 0; n = len(p.idle) {
		in := p.idle[n-1]
		p.idle = p.idle[:n-1]
		if in.envVer == env.version {
			p.mu.Unlock()
			return in, runtime.BootWarm, nil
		}
		p.live--
		defer in.close()
	}
	p.live++
	p.mu.Unlock()
	boot := runtime.BootThaw
	var snap *snapshot
	if p.reuse {
		var err error
		if snap, err = p.template(ctx, env); err != nil {
			p.mu.Lock()
			p.live--
			p.mu.Unlock()
			return nil, 0, err
		}
	} else {
		boot = runtime.BootCold
	}
	in, err := p.instantiate(ctx, env, snap)
	if err != nil {
		p.mu.Lock()
		p.live--
		p.mu.Unlock()
		return nil, 0, err
	}
	return in, boot, nil
}

// put resets an instance and returns it to the pool, or discards it. An
// instance that left files open, in its own tree or in the assets, is
// discarded: their descriptors would outlive the reset. (An instance made
// from a snapshot starts with no asset open: no guest code ran yet.)
func (p *program) put(in *instance, ok bool) {
	if ok && in.snap != nil && in.fs.OpenFiles() == in.baseFiles && in.assets.openFiles() == 0 {
		if err := in.restore(in.snap); err == nil {
			p.mu.Lock()
			if !p.closed && len(p.idle) < p.r.cfg.MaxIdleInstances && in.envVer == p.env.Load().version {
				p.idle = append(p.idle, in)
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
		}
	}
	p.mu.Lock()
	p.live--
	p.mu.Unlock()
	in.close()
}

// reusable reports whether an instance whose call ended with err may serve
// again once restored. A trap (stack overflow, unreachable, a host call
// refusing the guest) leaves the module usable and restore puts back
// everything the call could change; re-instantiating instead made a guest
// that trapped on every request cost the node an instantiation, and its
// garbage, each time. An instance stopped at its time limit is not reused
// (its interrupt may still be in flight), nor one whose memory grew (put
// finds that: memory cannot shrink).
func reusable(err error) bool {
	return err == nil || errors.Is(err, runtime.ErrTrap) || errors.Is(err, runtime.ErrBadResponse)
}

// Handle implements runtime.Program.
func (p *program) Handle(ctx context.Context, req *runtime.Request) (*runtime.Response, runtime.Timing, error) {
	var t runtime.Timing
	if p.shape == ShapeWAGI {
		return p.handleCGI(ctx, req)
	}
	if p.session {
		return p.handleSession(ctx, req)
	}
	if ctx.Err() != nil {
		return nil, t, canceledBefore(ctx)
	}
	in, boot, err := p.get(ctx)
	if err != nil {
		return nil, t, err
	}
	t.Boot = boot
	resp, err := in.run(ctx, req, &t)
	p.put(in, reusable(err))
	if err != nil {
		return nil, t, err
	}
	return resp, t, nil
}

// run serves req on the instance, filling t's Start and Run; the call stops
// early when ctx ends. On failure the response is released and nil.
func (in *instance) run(ctx context.Context, req *runtime.Request, t *runtime.Timing) (*runtime.Response, error) {
	ran := time.Now()
	if !req.Start.IsZero() {
		t.Start = ran.Sub(req.Start)
	}
	resp := in.p.newResponse(req)
	in.req, in.resp, in.bodyRead, in.headerBytes = req, resp, 0, 0
	err := in.serve(ctx, ran)
	in.req, in.resp = nil, nil
	t.Run = time.Since(ran)
	if err != nil {
		in.p.Release(resp)
		return nil, err
	}
	return resp, nil
}

// serve calls the guest's handler for the current request, stopping it
// when reqCtx ends first.
func (in *instance) serve(reqCtx context.Context, now time.Time) error {
	ctx := in.ctx
	if in.p.r.stop == stopContext {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, in.p.spec.Release.Limits.Timeout)
		defer cancel()
	}
	in.armAt(now, in.p.spec.Release.Limits.Timeout)
	in.done = reqCtx.Done()
	res, err := in.handleReq.Call(ctx)
	if err == nil && uint32(res[0]) != 0 {
		// next=1: the guest asked for the next handler. A Frost app is the
		// last handler, so there is none: the answer is 404 unless the guest
		// set one. The ABI then calls handle_response (and only then: a guest
		// that answered itself returned next=0 and is not called again).
		if in.resp.Status == 200 && len(in.resp.Body) == 0 {
			in.resp.Status = 404
		}
		if in.handleRes != nil {
			_, err = in.handleRes.Call(ctx, res[0]>>32, 0)
		}
	}
	in.done = nil
	fired, canceled := in.disarmCause()
	if canceled {
		return stopped(reqCtx)
	}
	if err != nil || fired {
		if err == nil {
			err = errors.New("interrupted")
		}
		return classify(err, fired, in.atMemoryLimit())
	}
	return nil
}

// newResponse takes a pooled response whose headers go where req says.
func (p *program) newResponse(req *runtime.Request) *runtime.Response {
	resp := p.pool.Get().(*runtime.Response)
	resp.Status = 200
	resp.Header = req.RespHeader
	if resp.Header == nil {
		resp.Header = make(http.Header, 4)
	}
	return resp
}

// Release implements runtime.Program.
func (p *program) Release(resp *runtime.Response) {
	if resp == nil {
		return
	}
	if cap(resp.Body) > minPooledBuffer {
		bigBuffers.put(resp.Body)
		resp.Body = nil
	}
	resp.Header = nil // the caller's map, or one made for this response: never reused
	resp.Body = resp.Body[:0]
	resp.Status = 0
	p.pool.Put(resp)
}

// Stats implements runtime.Program.
func (p *program) Stats() runtime.ProgramStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return runtime.ProgramStats{Instances: p.live, Idle: len(p.idle)}
}

// Close implements runtime.Program.
func (p *program) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.Freeze()
	return p.c.close(ctx)
}
