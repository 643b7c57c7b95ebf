package wasmbin

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
)

var fuzzRuntime struct {
	once sync.Once
	r    wazero.Runtime
}

// compiles reports whether wazero (interpreter, every feature the scanner
// knows) accepts b. A panic inside wazero counts as a rejection: it is not
// this package's bug.
func compiles(b []byte) (ok bool) {
	fuzzRuntime.once.Do(func() {
		cfg := wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(allFeatures)
		fuzzRuntime.r = wazero.NewRuntimeWithConfig(context.Background(), cfg)
	})
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	cm, err := fuzzRuntime.r.CompileModule(context.Background(), b)
	if err != nil {
		return false
	}
	cm.Close(context.Background())
	return true
}

// FuzzParse: Parse and Instrument never panic; an instrumented module
// re-parses with the same shape; and whatever wazero accepted before
// instrumentation it accepts after.
func FuzzParse(f *testing.F) {
	for _, b := range [][]byte{spinModule(), globalsModule(), globalsProvider(), featureModule(), legacyEHModule()} {
		f.Add(b)
	}
	for _, tc := range instructions {
		f.Add(instrModule(tc.code))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		orig := -1 // unknown until needed
		for _, opt := range []InstrumentOptions{interruptAll, interruptYield, liveYield} {
			out, err := Instrument(b, m, opt)
			if err != nil {
				if strings.Contains(err.Error(), "already exists") || strings.Contains(err.Error(), "defines functions") {
					continue
				}
				t.Fatalf("Instrument: %v", err)
			}
			if err := checkInstrumented(m, out, opt); err != nil {
				t.Fatal(err)
			}
			if orig < 0 {
				orig = 0
				if compiles(b) {
					orig = 1
				}
			}
			if orig == 1 && !compiles(out) {
				_, err := fuzzRuntime.r.CompileModule(context.Background(), out)
				t.Fatalf("wazero accepts the original but not the instrumented module (%+v): %v", opt, err)
			}
		}
	})
}

// bodyModule wraps code (a function body's instructions, without the final
// end) in a module where index 0 of every kind exists, so that the body
// alone decides whether wazero accepts it.
func bodyModule(code []byte) []byte {
	return module(
		sec(secType, vec(
			functype(nil, nil),
			functype([]ValType{ValI32}, []ValType{ValI32}),
			functype([]ValType{ValI32}, nil),
		)),
		sec(secFunction, vec(u32(0))),
		sec(secTable, vec(op(0x70, 0x00, 1))),
		sec(secMemory, vec(op(0x03, 1, 1))),
		sec(secTag, vec(op(0x00, 2))),
		sec(secGlobal, vec(global(ValI32, true, i32c(0)))),
		sec(secElement, vec(cat(u32(3), op(0x00), vec(u32(0))), cat(u32(1), op(0x00), vec(u32(0))))),
		sec(secDataCount, u32(1)),
		sec(secCode, vec(fn(nil, code, end))),
		sec(secData, vec(cat(u32(1), str("x")))),
	)
}

// FuzzInstrumentBody fuzzes function bodies inside a fixed, valid module,
// so that far more inputs reach wazero's validator than with FuzzParse: it
// checks that the scanner and wazero agree on where every instruction ends.
func FuzzInstrumentBody(f *testing.F) {
	for _, tc := range instructions {
		f.Add(tc.code)
	}
	f.Add(cat(loopEmpty, i32c(1), brIf(0), end))
	f.Add(cat(blockEmpty, loopEmpty, i32c(0), op(0x0e, 1, 0, 1), end, end))
	f.Add(cat(i32c(0), op(0xfd, 0x0c), make([]byte, 16), op(0xfd, 0x1b, 0x00), op(0x1a, 0x1a)))
	f.Fuzz(func(t *testing.T, code []byte) {
		b := bodyModule(code)
		m, err := Parse(b)
		if err != nil {
			return
		}
		orig := compiles(b)
		for _, opt := range []InstrumentOptions{interruptAll, interruptYield, liveYield, hostYield} {
			out, err := Instrument(b, m, opt)
			if err != nil && opt.YieldImport.Name != "" && !orig {
				continue // an unknown function index, refused while renumbering
			}
			if err != nil {
				t.Fatalf("Instrument: %v", err)
			}
			if err := checkInstrumented(m, out, opt); err != nil {
				t.Fatal(err)
			}
			if orig && !compiles(out) {
				_, err := fuzzRuntime.r.CompileModule(context.Background(), out)
				t.Fatalf("wazero accepts the original but not the instrumented module (%+v): %v", opt, err)
			}
		}
	})
}
