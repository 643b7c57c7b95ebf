package wasm

import (
	"context"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Fair CPU scheduling.
//
// Go runs goroutines on GOMAXPROCS processors and takes one away from a
// goroutine only when it blocks, or after it has run for 10 ms. A guest
// spinning in compiled code never blocks, so two spinning requests on a
// 2-core node hold both processors, and every other request on the node
// waits up to 10 ms for one: a hostile app would set everyone's p99.
//
// Frost shares the cores the way an operating system shares them between
// interactive and batch work. Every guest call is short until it has run
// for Config.Slice; then it is a long runner, and a long runner needs a
// slot to go on. There are GOMAXPROCS-1 slots (at least one), so however
// many guests spin, one processor is always left for short calls, which
// never wait for a slot; with Config.SpareProcessor there is one slot per
// processor and, while long runners run, one processor more (see spare). A
// long runner without a slot parks (its goroutine blocks, which frees its
// processor) until one frees up, in arrival order; every Config.Quantum a
// long runner hands its slot to the next waiting one. Every quantum any
// call yields its core to threads waiting for it (sched_yield), and every
// goschedEvery quanta its processor to runnable goroutines.
//
// The guest is asked at its yield points: the instrumenter makes every
// 65,536th function entry or loop iteration call the host function below
// (wasmbin.InstrumentOptions.YieldImport), tens of microseconds apart in a
// tight loop. A loop of host calls (logging, writing a body or headers) is
// far slower per iteration, so the host asks too: every hostYieldWork units
// of host work (a call, or 16 KiB copied), see instance.hostWork. A call
// that is past its deadline while parked is let go: its time limit traps it
// at its next check. Slices are wall time since the call
// started, so a call that waits on I/O (a slow request body) counts as
// running; such a call is rarely a CPU hog, and at worst waits its turn.
//
// Long runners keep their threads' normal priority. Running them at nice 19
// gave a neighbour a better p99 on a busy machine, but the garbage
// collector stops every goroutine to start and end a cycle, and on a machine
// whose cores are all busy a nice-19 thread can wait hundreds of
// milliseconds for a core: every request of the node would wait with it.

// yieldModule and yieldName are the import the instrumenter adds.
const (
	yieldModule = "__frost"
	yieldName   = "yield"
)

// Defaults for Config.Slice, Config.Quantum and Config.SpareLinger.
const (
	DefaultSlice       = 2 * time.Millisecond
	DefaultQuantum     = 250 * time.Microsecond
	DefaultSpareLinger = 2 * time.Second
)

// fair is the long-runner scheduler; see above.
type fair struct {
	slots   chan struct{} // one element per slot taken
	slice   time.Duration
	quantum time.Duration

	spare *spare // nil without Config.SpareProcessor

	waiting atomic.Int64 // long runners parked for a slot
	parks   atomic.Int64 // times a long runner parked
	parkNS  atomic.Int64 // total time parked
	longs   atomic.Int64 // calls that became long runners
}

// newFair returns the scheduler for cfg, or nil when cfg turns it off.
func newFair(cfg Config) *fair {
	slots := cfg.LongRunnerSlots
	if slots < 0 {
		return nil
	}
	procs := goruntime.GOMAXPROCS(0)
	if slots == 0 {
		slots = max(1, procs-1)
		if cfg.SpareProcessor {
			slots = procs
		}
	}
	f := &fair{slots: make(chan struct{}, slots), slice: cfg.Slice, quantum: cfg.Quantum}
	if cfg.SpareProcessor {
		f.spare = &spare{base: procs, linger: cfg.SpareLinger}
		if f.spare.linger <= 0 {
			f.spare.linger = DefaultSpareLinger
		}
		f.spare.running = func() int { return len(f.slots) }
	}
	if f.slice <= 0 {
		f.slice = DefaultSlice
	}
	if f.quantum <= 0 {
		f.quantum = DefaultQuantum
	}
	return f
}

// turn is a guest call's standing with the scheduler. Only the call's own
// goroutine touches it.
type turn struct {
	work    int       // host work since the last yield (hostWork)
	start   time.Time // when the call started
	holding bool      // the call holds a slot
	long    bool      // the call has run past the slice
	since   time.Time // when it last took a slot or yielded
	yields  int       // quanta yielded (yieldEvery)
}

// instantiateYield adds the host module that guests' yield imports resolve to.
func instantiateYield(ctx context.Context, rt wazero.Runtime) error {
	_, err := rt.NewHostModuleBuilder(yieldModule).NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hYield), nil, nil).Export(yieldName).
		Instantiate(ctx)
	return err
}

func hYield(ctx context.Context, _ api.Module, _ []uint64) {
	if in, _ := ctx.Value(instanceKey{}).(*instance); in != nil && in.p.r.fair != nil {
		in.p.r.fair.yield(in)
	}
}

// yield runs at the guest's yield points.
func (f *fair) yield(in *instance) {
	in.checkDone()
	t := &in.turn
	if t.start.IsZero() {
		return // not a timed call
	}
	now := time.Now()
	if now.Sub(t.since) < f.quantum {
		return
	}
	long := now.Sub(t.start) >= f.slice
	if long && f.spare != nil {
		f.spare.need(now)
	}
	switch {
	case long && !t.holding:
		if !t.long {
			t.long = true
			f.longs.Add(1)
		}
		f.take(in, now)
	case t.holding && f.waiting.Load() > 0:
		// Another long runner waits: go to the back of the line.
		f.release(t)
		f.take(in, now)
	default:
		t.since = now
		t.yieldEvery()
	}
}

// goschedEvery is how many quanta pass between yields of the processor;
// the core is yielded every quantum. Handing the processor over is what
// costs a CPU-bound call (its goroutine may move to another core and start
// with cold caches): every quantum, a hot loop ran 8% slower; every fourth,
// about 1%.
const goschedEvery = 4

// yieldEvery yields the core, and every goschedEvery-th time the processor.
func (t *turn) yieldEvery() {
	t.yields++
	if t.yields%goschedEvery == 0 {
		goruntime.Gosched()
	}
	osYield()
}

// spare is the spare processor (Config.SpareProcessor). With long runners
// on every processor, Go notices a request arriving on the network only
// when one of them blocks or its 10 ms monitor polls; one processor more
// than the long-runner slots keeps one free to poll. But a processor more
// than the cores costs a node serving only short requests about 7% of its
// throughput on 2 cores (the operating system time-slices one thread more
// than it has cores), so the spare is there only while long runners are:
// added when the first one appears, removed once none has run for linger.
// Each change of GOMAXPROCS stops the world briefly; linger keeps them rare.
type spare struct {
	base    int           // GOMAXPROCS without the spare
	linger  time.Duration // how long the spare outlives the last long runner
	running func() int    // long runners holding a slot now

	last   atomic.Int64 // when a long runner last asked (unix ns)
	raised atomic.Bool

	mu    sync.Mutex
	timer *time.Timer
}

// need records that a long runner runs at now, adding the spare if it is
// not there.
func (s *spare) need(now time.Time) {
	s.last.Store(now.UnixNano())
	if s.raised.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.raised.Load() {
		return
	}
	goruntime.GOMAXPROCS(s.base + 1)
	s.raised.Store(true)
	s.timer = time.AfterFunc(s.linger, s.check)
}

// check removes the spare once no long runner has run for linger.
func (s *spare) check() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if idle := time.Since(time.Unix(0, s.last.Load())); idle < s.linger || s.running() > 0 {
		s.timer.Reset(max(s.linger-idle, s.linger/4))
		return
	}
	goruntime.GOMAXPROCS(s.base)
	s.raised.Store(false)
	s.timer = nil
}

// stop removes the spare now (the runtime is closing).
func (s *spare) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if s.raised.Load() {
		goruntime.GOMAXPROCS(s.base)
		s.raised.Store(false)
	}
}

// take gets a slot for in's call, parking until one frees up or the call's
// deadline passes.
func (f *fair) take(in *instance, now time.Time) {
	t := &in.turn
	select {
	case f.slots <- struct{}{}:
		t.holding, t.since = true, now
		return
	default:
	}
	dl := in.deadline.Load()
	wait := time.Until(time.Unix(0, dl))
	if dl == 0 || wait <= 0 {
		return // past its time: its limit stops it at its next check
	}
	f.waiting.Add(1)
	f.parks.Add(1)
	timer := time.NewTimer(wait)
	select {
	case f.slots <- struct{}{}:
		t.holding = true
	case <-timer.C:
	case <-in.done:
		in.checkDone()
	}
	timer.Stop()
	f.waiting.Add(-1)
	t.since = time.Now()
	f.parkNS.Add(int64(t.since.Sub(now)))
}

// hostYieldWork is how much host work (hostWork's units) a call does
// between yields: 64 calls, or 1 MiB copied.
const hostYieldWork = 64

// hostWork counts w units of host work done for in's current call: one per
// host call, one per 16 KiB a call copies. Every hostYieldWork units it
// yields, as the guest's own yield points do.
func (in *instance) hostWork(w int) {
	f := in.p.r.fair
	if f == nil {
		return
	}
	in.turn.work += w
	if in.turn.work >= hostYieldWork {
		in.turn.work = 0
		f.yield(in)
	}
}

// copyWork is the host work of copying n bytes.
func copyWork(n int) int { return 1 + n>>14 }

// begin starts in's call at now.
func (f *fair) begin(in *instance, now time.Time) {
	in.turn = turn{start: now, since: now}
}

// end ends in's call, freeing its slot.
func (f *fair) end(in *instance) {
	f.release(&in.turn)
	in.turn = turn{}
}

// release gives up t's slot, if it holds one.
func (f *fair) release(t *turn) {
	if t.holding {
		<-f.slots
		t.holding = false
	}
}

// SchedulerStats are the fair scheduler's counters.
type SchedulerStats struct {
	Slots       int           // long-runner slots
	Running     int           // long runners holding a slot
	Waiting     int64         // long runners parked
	LongRunners int64         // calls that ran past the slice
	Parks       int64         // times a long runner parked
	Parked      time.Duration // total time parked
	Spare       bool          // the spare processor is there (Config.SpareProcessor)
}

// Scheduler returns the fair scheduler's counters (zero when it is off).
func (r *Runtime) Scheduler() SchedulerStats {
	f := r.fair
	if f == nil {
		return SchedulerStats{}
	}
	return SchedulerStats{
		Slots: cap(f.slots), Running: len(f.slots), Waiting: f.waiting.Load(),
		LongRunners: f.longs.Load(), Parks: f.parks.Load(), Parked: time.Duration(f.parkNS.Load()),
		Spare: f.spare != nil && f.spare.raised.Load(),
	}
}

// Collectors returns the runtime's Prometheus metrics.
func (r *Runtime) Collectors() []prometheus.Collector {
	stat := func(f func(SchedulerStats) float64) func() float64 {
		return func() float64 { return f(r.Scheduler()) }
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "frost_cpu_long_runner_slots",
			Help: "Guest calls that may run past the scheduling slice at once."},
			stat(func(s SchedulerStats) float64 { return float64(s.Slots) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "frost_cpu_long_runners",
			Help: "Guest calls running past the scheduling slice now."},
			stat(func(s SchedulerStats) float64 { return float64(s.Running) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "frost_cpu_long_runners_waiting",
			Help: "Long-running guest calls parked for a slot now."},
			stat(func(s SchedulerStats) float64 { return float64(s.Waiting) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "frost_cpu_spare_processor",
			Help: "1 while the spare processor (one more than the long-runner slots) is there."},
			stat(func(s SchedulerStats) float64 {
				if s.Spare {
					return 1
				}
				return 0
			})),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "frost_cpu_long_runners_total",
			Help: "Guest calls that ran past the scheduling slice."},
			stat(func(s SchedulerStats) float64 { return float64(s.LongRunners) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "frost_cpu_parks_total",
			Help: "Times a long-running guest call parked so that others could run."},
			stat(func(s SchedulerStats) float64 { return float64(s.Parks) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "frost_cpu_parked_seconds_total",
			Help: "Time long-running guest calls spent parked."},
			stat(func(s SchedulerStats) float64 { return s.Parked.Seconds() })),
	}
}

// Copies the scheduler cannot interrupt.
//
// Go preempts a goroutine between instructions of Go code, but not inside
// one memmove or memclr, and a garbage collection starts and ends by
// stopping every goroutine of the process. A guest that writes a 32 MiB
// response makes the host grow and copy buffers of many MiB, and a single
// copy of that size takes milliseconds on a loaded machine: every request
// of the node would wait for it. The guest-sized copies below go in steps
// of preemptStep, with a preemption point between steps.

// preemptStep is the most one uninterruptible copy moves; every yieldStep
// (about 100 µs of copying) the copy yields its processor and its core, as
// a guest call does at its yield points: copies also run outside guest
// calls (clearing a region for a new instance), where the scheduler does
// not see them.
const (
	preemptStep = 256 << 10
	yieldStep   = 1 << 20
)

// appendPreemptible is append(dst, src...) in preemptible steps. A buffer
// it grows out of goes back to bigBuffers: the caller must hold no other
// reference to dst.
func appendPreemptible(dst, src []byte) []byte {
	n := len(dst) + len(src)
	if n <= cap(dst) && len(src) <= preemptStep {
		return append(dst, src...)
	}
	if n > cap(dst) {
		grown := bigBuffers.get(max(n, 2*cap(dst)))[:len(dst)]
		copyPreemptible(grown, dst)
		bigBuffers.put(dst)
		dst = grown
	}
	at := len(dst)
	dst = dst[:n]
	copyPreemptible(dst[at:], src)
	return dst
}

// copyPreemptible is copy(dst, src) in preemptible steps, yielding every
// yieldStep.
func copyPreemptible(dst, src []byte) {
	inSteps(len(src), func(i, j int) { copy(dst[i:j], src[i:j]) })
}

// clearPreemptible is clear(b) in preemptible steps, yielding every
// yieldStep.
func clearPreemptible(b []byte) {
	inSteps(len(b), func(i, j int) { clear(b[i:j]) })
}

// inSteps calls step over [0, n) in pieces of at most preemptStep,
// yielding between pieces every yieldStep.
func inSteps(n int, step func(i, j int)) {
	for i, k := 0, 1; i < n; k++ {
		j := min(n, i+preemptStep)
		step(i, j)
		i = j
		if k%(yieldStep/preemptStep) == 0 && i < n {
			yieldThread()
		}
	}
}

// yieldThread lets other goroutines, and other threads waiting for this
// core, run.
func yieldThread() {
	goruntime.Gosched()
	osYield()
}
