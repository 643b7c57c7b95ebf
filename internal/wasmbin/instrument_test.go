package wasmbin

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// allFeatures are the wazero features the test modules use.
const allFeatures = api.CoreFeaturesV2 | experimental.CoreFeaturesThreads | experimental.CoreFeaturesTailCall |
	experimental.CoreFeaturesExtendedConst | experimental.CoreFeaturesExceptionHandling |
	experimental.CoreFeaturesTypedFunctionReferences

// engines are the wazero configurations the runtime tests use.
var engines = []struct {
	name string
	cfg  func() wazero.RuntimeConfig
}{
	{"compiler", wazero.NewRuntimeConfigCompiler},
	{"interpreter", wazero.NewRuntimeConfigInterpreter},
}

func newRuntime(t testing.TB, cfg wazero.RuntimeConfig) wazero.Runtime {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, cfg.WithCoreFeatures(allFeatures))
	t.Cleanup(func() { r.Close(ctx) })
	return r
}

// mustInstrument parses and instruments b, re-parses the result and checks
// that everything Instrument promises to keep is kept.
func mustInstrument(t testing.TB, b []byte, opt InstrumentOptions) []byte {
	t.Helper()
	m, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	out, err := Instrument(b, m, opt)
	if err != nil {
		t.Fatalf("Instrument: %v", err)
	}
	if err := checkInstrumented(m, out, opt); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkInstrumented re-parses out and compares it with the original m.
func checkInstrumented(m *Module, out []byte, opt InstrumentOptions) error {
	if opt.GlobalExportPrefix == "" {
		opt.GlobalExportPrefix = DefaultGlobalExportPrefix
	}
	if opt.InterruptExport == "" {
		opt.InterruptExport = DefaultInterruptExport
	}
	m2, err := Parse(out)
	if err != nil {
		return errors.New("instrumented module does not parse: " + err.Error())
	}
	fail := func(what string) error { return errors.New("instrumented module: " + what + " changed") }
	types, funcs, imports := m2.Types, m2.Funcs, m2.Imports
	exports, start := m.Exports, m.Start
	added := uint32(0) // function imports added
	if opt.YieldEvery > 0 && opt.YieldImport.Name != "" {
		// one more type, () -> (), and one more function import of it, last;
		// every defined function moves up by one
		yt := uint32(len(m.Types))
		if len(types) <= len(m.Types) || !types[yt].Equal(nil, nil) ||
			len(imports) != len(m.Imports)+1 ||
			imports[len(m.Imports)] != (Import{Module: opt.YieldImport.Module, Name: opt.YieldImport.Name, Kind: ExternFunc, TypeIndex: yt}) {
			return fail("yield import")
		}
		imports = imports[:len(m.Imports)]
		types = slices.Delete(slices.Clone(types), int(yt), int(yt)+1)
		added = 1
		exports = slices.Clone(exports)
		for i, e := range exports {
			if e.Kind == ExternFunc && e.Index >= uint32(m.NumImportedFuncs) {
				exports[i].Index++
			}
		}
		if start != nil && *start >= uint32(m.NumImportedFuncs) {
			s := *start + 1
			start = &s
		}
	}
	if opt.LiveExport != "" {
		// the probe: one more type, () -> i32, and one more function of it
		if len(types) != len(m.Types)+1 || !types[len(m.Types)].Equal(nil, []ValType{ValI32}) ||
			len(funcs) != len(m.Funcs)+1 || funcs[len(m.Funcs)] != uint32(len(m.Types))+added {
			return fail("liveness probe")
		}
		types, funcs = types[:len(m.Types)], funcs[:len(m.Funcs)]
	}
	switch {
	case !slices.EqualFunc(m.Types, types, func(a, b FuncType) bool { return a.Equal(b.Params, b.Results) }):
		return fail("types")
	case !slices.Equal(m.Imports, imports):
		return fail("imports")
	case !slices.Equal(m.Funcs, funcs):
		return fail("functions")
	case !slices.Equal(m.Tables, m2.Tables):
		return fail("tables")
	case !slices.Equal(m.Memories, m2.Memories[:len(m.Memories)]):
		return fail("memories")
	case !slices.Equal(m.Tags, m2.Tags):
		return fail("tags")
	case len(m2.Exports) < len(m.Exports) || !slices.Equal(exports, m2.Exports[:len(m.Exports)]):
		return fail("exports")
	case !slices.Equal(m.Globals, m2.Globals[:len(m.Globals)]):
		return fail("globals")
	case m.MutatesTables != m2.MutatesTables || m.DropsSegments != m2.DropsSegments:
		return fail("code flags")
	case m.NumElemSegments != m2.NumElemSegments || m.NumDataSegments != m2.NumDataSegments:
		return fail("segments")
	case (start == nil) != (m2.Start == nil) || (start != nil && *start != *m2.Start):
		return fail("start")
	case len(m.Custom) != len(m2.Custom):
		return fail("custom sections")
	}
	for i := range m.Custom {
		if m.Custom[i].Name != m2.Custom[i].Name || (added == 0 || m.Custom[i].Name != "name") && !bytes.Equal(m.Custom[i].Data, m2.Custom[i].Data) {
			return fail("custom section " + m.Custom[i].Name)
		}
	}
	// The new exports, in order: each mutable global, then the interrupt.
	var want []Export
	for i, g := range m.Globals {
		if g.Mutable {
			idx := uint32(m.NumImportedGlobals + i)
			want = append(want, Export{GlobalExportName(opt.GlobalExportPrefix, idx), ExternGlobal, idx})
		}
	}
	wantGlobals := len(m.Globals)
	if opt.Interrupt {
		want = append(want, Export{opt.InterruptExport, ExternGlobal, uint32(m.NumImportedGlobals + len(m.Globals))})
		wantGlobals++
		if g := m2.Globals[len(m.Globals)]; g != (GlobalType{ValI32, true}) {
			return errors.New("instrumented module: interrupt global is " + g.Type.String())
		}
	}
	for i, f := range m2.bodies[:len(m.bodies)] {
		if f.loops != m.bodies[i].loops {
			return fail("loop count")
		}
	}
	if opt.YieldEvery > 0 {
		wantGlobals++
		if added == 0 && m.NumImportedMemories+len(m.Memories) == 0 && len(m2.Memories) != 1 {
			return fail("memory count")
		}
	}
	if opt.LiveExport != "" {
		want = append(want, Export{opt.LiveExport, ExternFunc, uint32(m.NumImportedFuncs+len(m.Funcs)) + added})
	}
	if !slices.Equal(want, m2.Exports[len(m.Exports):]) {
		return fail("new exports")
	}
	if len(m2.Globals) != wantGlobals {
		return fail("global count")
	}
	return nil
}

var (
	interruptAll = InstrumentOptions{Interrupt: true}
	// interruptYield is what a node running wazero's compiler needs.
	interruptYield = InstrumentOptions{Interrupt: true, YieldEvery: 1000}
	// liveYield is what Frost's wasm runtime asks for.
	liveYield = InstrumentOptions{Interrupt: true, YieldEvery: 1000, LiveExport: "__frost_live"}
	// hostYield calls the host instead of running memory.grow 0.
	hostYield = InstrumentOptions{Interrupt: true, YieldEvery: 1000, LiveExport: "live",
		YieldImport: ImportName{"__frost", "yield"}}
)

// yieldHost instantiates the module that provides hostYield's import in r
// and returns the count of its calls.
func yieldHost(t testing.TB, r wazero.Runtime) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	_, err := r.NewHostModuleBuilder("__frost").NewFunctionBuilder().
		WithFunc(func(context.Context) { n.Add(1) }).Export("yield").
		Instantiate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return &n
}

// TestInstrumentExactBytes pins the rewrite of a tiny module byte for byte:
// a global section and an export section are created in the right places
// and the check goes at the function entry and after the loop's block type.
func TestInstrumentExactBytes(t *testing.T) {
	in := module(
		sec(secType, vec(functype(nil, nil))),
		sec(secFunction, vec(u32(0))),
		sec(secStart, u32(0)),
		sec(secCode, vec(fn([][2]int{{1, int(ValI32)}}, loopEmpty, br(0), end, end))),
	)
	check := cat(globalGet(0), op(0x04, 0x40, 0x00, 0x0b))
	want := module(
		sec(secType, vec(functype(nil, nil))),
		sec(secFunction, vec(u32(0))),
		sec(secGlobal, vec(global(ValI32, true, i32c(0)))),
		sec(secExport, vec(export("stop", ExternGlobal, 0))),
		sec(secStart, u32(0)),
		sec(secCode, vec(fn([][2]int{{1, int(ValI32)}}, check, loopEmpty, check, br(0), end, end))),
	)
	got, err := Instrument(in, nil, InstrumentOptions{Interrupt: true, InterruptExport: "stop"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  % x\nwant % x", got, want)
	}
}

// TestInstrumentExactBytesYield pins the countdown and the empty memory
// created for a module that has none.
func TestInstrumentExactBytesYield(t *testing.T) {
	in := module(
		sec(secType, vec(functype(nil, nil))),
		sec(secFunction, vec(u32(0))),
		sec(secCode, vec(fn(nil, loopEmpty, br(0), end, end))),
	)
	check := cat(globalGet(0), op(0x04, 0x40, 0x00, 0x0b),
		globalGet(1), op(0x45, 0x04, 0x40), i32c(300), globalSet(1), i32c(0), op(0x40, 0x00, 0x1a, 0x0b),
		globalGet(1), i32c(1), op(0x6b), globalSet(1))
	want := module(
		sec(secType, vec(functype(nil, nil))),
		sec(secFunction, vec(u32(0))),
		sec(secMemory, vec(op(0x01, 0, 0))),
		sec(secGlobal, vec(global(ValI32, true, i32c(0)), global(ValI32, true, i32c(300)))),
		sec(secExport, vec(export(DefaultInterruptExport, ExternGlobal, 0))),
		sec(secCode, vec(fn(nil, check, loopEmpty, check, br(0), end, end))),
	)
	got, err := Instrument(in, nil, InstrumentOptions{Interrupt: true, YieldEvery: 300})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got  % x\nwant % x", got, want)
	}
}

// TestInstrumentNoChange: with nothing to add, the output equals the input
// but is a copy.
func TestInstrumentNoChange(t *testing.T) {
	in := spinModule()
	out, err := Instrument(in, nil, InstrumentOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, out) || &in[0] == &out[0] {
		t.Fatal("want an identical copy")
	}
}

func TestInstrumentWrongModule(t *testing.T) {
	a, b := spinModule(), spinModule()
	m, err := Parse(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Instrument(b, m, interruptAll); err == nil {
		t.Fatal("Instrument accepted a Module parsed from other bytes")
	}
}

// TestInstrumentExistingSections: with a global and an export section
// already there, both grow in place, and the interrupt global's index comes
// after the imported and defined ones.
func TestInstrumentExistingSections(t *testing.T) {
	out := mustInstrument(t, globalsModule(), interruptAll)
	m, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	idx, ok := m.ExportedGlobalIndex(DefaultInterruptExport)
	if !ok || idx != 5 {
		t.Fatalf("interrupt global index = %d, %v; want 5", idx, ok)
	}
	for _, name := range []string{"__frost_g2", "__frost_g4"} {
		if _, ok := m.ExportedGlobalIndex(name); !ok {
			t.Errorf("no export %s", name)
		}
	}
	for _, name := range []string{"__frost_g0", "__frost_g1", "__frost_g3"} {
		if _, ok := m.ExportedGlobalIndex(name); ok {
			t.Errorf("unexpected export %s (imported or immutable global)", name)
		}
	}
}

func TestInstrumentNameCollision(t *testing.T) {
	withExport := func(name string) []byte {
		return module(
			sec(secGlobal, vec(global(ValI32, true, i32c(1)))),
			sec(secExport, vec(export(name, ExternGlobal, 0))),
		)
	}
	for _, tc := range []struct {
		name string
		mod  []byte
		opt  InstrumentOptions
	}{
		{"global export taken", withExport("__frost_g0"), InstrumentOptions{}},
		{"interrupt export taken", withExport("__frost_interrupt"), interruptAll},
		{"custom interrupt name taken", withExport("halt"), InstrumentOptions{Interrupt: true, InterruptExport: "halt"}},
		{"interrupt collides with generated", withExport("x"), InstrumentOptions{Interrupt: true, InterruptExport: "__frost_g0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Instrument(tc.mod, nil, tc.opt)
			if err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("err = %v, want a collision error", err)
			}
		})
	}
	// A prefix that avoids the taken name works.
	if _, err := Instrument(withExport("__frost_g0"), nil, InstrumentOptions{GlobalExportPrefix: "g$"}); err != nil {
		t.Fatal(err)
	}
}

// TestFeatureModule runs every function of the feature module before and
// after instrumentation, on both wazero engines, and checks the name
// section survives.
func TestFeatureModule(t *testing.T) {
	orig := featureModule()
	m, err := Parse(orig)
	if err != nil {
		t.Fatal(err)
	}
	if !m.MutatesTables || !m.DropsSegments {
		t.Errorf("MutatesTables=%v DropsSegments=%v, want both", m.MutatesTables, m.DropsSegments)
	}
	inst := mustInstrument(t, orig, interruptAll)
	instYield := mustInstrument(t, orig, interruptYield)
	live := mustInstrument(t, orig, InstrumentOptions{LiveExport: "live"})
	liveYield := mustInstrument(t, orig, InstrumentOptions{Interrupt: true, YieldEvery: 1000, LiveExport: "live"})
	hostYielding := mustInstrument(t, orig, hostYield)
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			for _, variant := range []struct {
				name string
				bin  []byte
			}{{"original", orig}, {"instrumented", inst}, {"yield", instYield}, {"live", live}, {"live+yield", liveYield}, {"live+host yield", hostYielding}} {
				r := newRuntime(t, e.cfg())
				yieldHost(t, r)
				ctx := context.Background()
				cm, err := r.CompileModule(ctx, variant.bin)
				if err != nil {
					t.Fatalf("%s: compile: %v", variant.name, err)
				}
				if got := cm.ExportedFunctions()["loopsum"].Name(); got != "loopsum_fn" {
					t.Errorf("%s: name section: loopsum is named %q", variant.name, got)
				}
				mod, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig())
				if err != nil {
					t.Fatalf("%s: instantiate: %v", variant.name, err)
				}
				for _, f := range featureFuncs {
					got, err := mod.ExportedFunction(f.name).Call(ctx, f.args...)
					if err != nil {
						t.Errorf("%s: %s: %v", variant.name, f.name, err)
					} else if !slices.Equal(got, f.want) {
						t.Errorf("%s: %s = %v, want %v", variant.name, f.name, got, f.want)
					}
				}
				if probe := mod.ExportedFunction("live"); probe != nil {
					got, err := probe.Call(ctx)
					want := uint64(0)
					if mem := mod.Memory(); mem != nil {
						want = uint64(mem.Size() / 65536)
					}
					if err != nil || len(got) != 1 || got[0] != want {
						t.Errorf("%s: live() = %v, %v; want [%d]", variant.name, got, err, want)
					}
				} else if strings.HasPrefix(variant.name, "live") {
					t.Errorf("%s: no live export", variant.name)
				}
			}
		})
	}
}

// TestLegacyExceptions: wazero does not run the legacy encoding, so the
// check is structural: the rewrite re-parses with the same shape and the
// loop inside try/delegate got its check.
func TestLegacyExceptions(t *testing.T) {
	m, err := Parse(legacyEHModule())
	if err != nil {
		t.Fatal(err)
	}
	if m.bodies[0].loops != 1 {
		t.Fatalf("loops = %d, want 1", m.bodies[0].loops)
	}
	mustInstrument(t, legacyEHModule(), interruptAll)
}

// TestExportedGlobals reads and writes a defined mutable global through its
// generated export, with imported globals shifting the index.
func TestExportedGlobals(t *testing.T) {
	ctx := context.Background()
	inst := mustInstrument(t, globalsModule(), InstrumentOptions{})
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			r := newRuntime(t, e.cfg())
			if _, err := r.InstantiateWithConfig(ctx, globalsProvider(), wazero.NewModuleConfig().WithName("env")); err != nil {
				t.Fatal(err)
			}
			mod, err := r.InstantiateWithConfig(ctx, inst, wazero.NewModuleConfig().WithName("guest"))
			if err != nil {
				t.Fatal(err)
			}
			g2, ok := mod.ExportedGlobal("__frost_g2").(api.MutableGlobal)
			if !ok {
				t.Fatal("__frost_g2 is not an exported mutable global")
			}
			if got := g2.Get(); got != 100 {
				t.Fatalf("__frost_g2 = %d, want 100", got)
			}
			g2.Set(55)
			if got, err := mod.ExportedFunction("get2").Call(ctx); err != nil || got[0] != 55 {
				t.Fatalf("get2 after host write = %v, %v; want 55", got, err)
			}
			if _, err := mod.ExportedFunction("set2").Call(ctx, 9); err != nil {
				t.Fatal(err)
			}
			if got := g2.Get(); got != 9 {
				t.Fatalf("__frost_g2 after guest write = %d, want 9", got)
			}
			g4 := mod.ExportedGlobal("__frost_g4")
			if g4 == nil || int64(g4.Get()) != -1 {
				t.Fatalf("__frost_g4 = %v, want -1", g4)
			}
			if mod.ExportedGlobal(DefaultInterruptExport) != nil {
				t.Fatal("interrupt global exported without Interrupt")
			}
		})
	}
}

// TestInterrupt sets the interrupt global while a function spins, directly
// or in a callee, and expects the call to trap promptly; an instance that
// was not interrupted keeps working.
//
// Without YieldEvery only the interpreter runs it: wazero's compiled code
// cannot be preempted, so a garbage collection starting while the guest
// spins would stop the test's goroutine for good (TestYieldLetsGCRun).
func TestInterrupt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		engine int
		opt    InstrumentOptions
	}{
		{"compiler/yield", 0, interruptYield},
		{"interpreter/yield", 1, interruptYield},
		{"compiler/host yield", 0, hostYield},
		{"interpreter/host yield", 1, hostYield},
		{"interpreter/plain", 1, interruptAll},
	} {
		inst := mustInstrument(t, spinModule(), tc.opt)
		e := engines[tc.engine]
		for _, fn := range []string{"spin", "outer"} {
			t.Run(tc.name+"/"+fn, func(t *testing.T) {
				ctx := context.Background()
				r := newRuntime(t, e.cfg())
				yields := yieldHost(t, r)
				mod, err := r.Instantiate(ctx, inst)
				if err != nil {
					t.Fatal(err)
				}
				if got, err := mod.ExportedFunction("answer").Call(ctx); err != nil || got[0] != 42 {
					t.Fatalf("answer = %v, %v", got, err)
				}
				defer func() {
					if tc.opt.YieldImport.Name != "" && yields.Load() == 0 {
						t.Error("the spinning guest never called the host's yield")
					}
				}()
				stop := mod.ExportedGlobal(DefaultInterruptExport).(api.MutableGlobal)
				errc := make(chan error, 1)
				go func() {
					_, err := mod.ExportedFunction(fn).Call(ctx)
					errc <- err
				}()
				time.Sleep(50 * time.Millisecond)
				select {
				case err := <-errc:
					t.Fatalf("%s returned before the interrupt: %v", fn, err)
				default:
				}
				set := time.Now()
				stop.Set(1)
				select {
				case err := <-errc:
					if err == nil || !strings.Contains(err.Error(), "unreachable") {
						t.Fatalf("err = %v, want an unreachable trap", err)
					}
					t.Logf("trapped %v after the interrupt", time.Since(set))
				case <-time.After(5 * time.Second):
					t.Fatal("no trap 5s after the interrupt")
				}
				// Every entry traps while the global is set; clearing it
				// lets the instance run again.
				if _, err := mod.ExportedFunction("answer").Call(ctx); err == nil {
					t.Fatal("answer ran with the interrupt set")
				}
				stop.Set(0)
				if got, err := mod.ExportedFunction("answer").Call(ctx); err != nil || got[0] != 42 {
					t.Fatalf("answer after clearing = %v, %v", got, err)
				}
			})
		}
	}
}

// TestYieldLetsGCRun forces a garbage collection while compiled guest code
// spins. Without the yields the collection would wait forever for the
// spinning goroutine and the test binary would hang until its timeout.
func TestYieldLetsGCRun(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, wazero.NewRuntimeConfigCompiler())
	mod, err := r.Instantiate(ctx, mustInstrument(t, spinModule(), interruptYield))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := mod.ExportedFunction("spin").Call(ctx)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	runtime.GC()
	t.Logf("runtime.GC took %v while the guest spun", time.Since(start))
	mod.ExportedGlobal(DefaultInterruptExport).(api.MutableGlobal).Set(1)
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("err = %v, want an unreachable trap", err)
	}
}

// TestYieldImportRenumbers adds the yield import to a module whose function
// indices cross a LEB128 width boundary when they move up by one, and checks
// on both engines that every kind of reference still reaches its function.
func TestYieldImportRenumbers(t *testing.T) {
	orig := manyFuncsModule()
	inst := mustInstrument(t, orig, hostYield)
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			ctx := context.Background()
			for _, variant := range []struct {
				name string
				bin  []byte
			}{{"original", orig}, {"host yield", inst}} {
				r := newRuntime(t, e.cfg())
				yieldHost(t, r)
				_, err := r.NewHostModuleBuilder("env").NewFunctionBuilder().
					WithFunc(func(context.Context) uint32 { return 7 }).Export("seven").Instantiate(ctx)
				if err != nil {
					t.Fatal(err)
				}
				cm, err := r.CompileModule(ctx, variant.bin)
				if err != nil {
					t.Fatalf("%s: compile: %v", variant.name, err)
				}
				for export, name := range map[string]string{"f127": "f127", "f128": "f128", "seven": "seven"} {
					if got := cm.ExportedFunctions()[export].Name(); got != name && export != "seven" {
						t.Errorf("%s: %s is named %q, want %q", variant.name, export, got, name)
					}
				}
				mod, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig())
				if err != nil {
					t.Fatalf("%s: instantiate: %v", variant.name, err)
				}
				if g := mod.ExportedGlobal("started").Get(); g != 1 {
					t.Errorf("%s: the start function did not run (global %d)", variant.name, g)
				}
				for export, want := range map[string]uint64{"f127": 1128, "f128": 1128, "calls127": 1128, "seven": 7} {
					got, err := mod.ExportedFunction(export).Call(ctx)
					if err != nil || len(got) != 1 || got[0] != want {
						t.Errorf("%s: %s() = %v, %v; want %d", variant.name, export, got, err, want)
					}
				}
			}
		})
	}
}

// TestYieldImportRefusesUnknownFunctions: after renumbering, a call to one
// past the last function would reach the liveness probe; the rewrite
// refuses such a module instead.
func TestYieldImportRefusesUnknownFunctions(t *testing.T) {
	b := module(
		sec(secType, vec(functype(nil, nil))),
		sec(secFunction, vec(u32(0))),
		sec(secCode, vec(fn(nil, call(1), end))),
	)
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Instrument(b, m, hostYield); err == nil || !strings.Contains(err.Error(), "refers to function 1") {
		t.Fatalf("Instrument = %v, want a refusal naming function 1", err)
	}
}
