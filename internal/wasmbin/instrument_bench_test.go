package wasmbin

import (
	"bytes"
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
)

// The rewrite of a real Go module, against a plain copy of its bytes as the
// baseline.

func BenchmarkCopyGo(b *testing.B) {
	bin := helloWasm(b)
	b.SetBytes(int64(len(bin)))
	for b.Loop() {
		_ = bytes.Clone(bin)
	}
}

func BenchmarkParseGo(b *testing.B) {
	bin := helloWasm(b)
	b.SetBytes(int64(len(bin)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(bin); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInstrumentGo is Parse plus Instrument, what a deploy pays.
func BenchmarkInstrumentGo(b *testing.B) {
	bin := helloWasm(b)
	b.SetBytes(int64(len(bin)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := Parse(bin)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Instrument(bin, m, interruptYield); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoop measures what the inserted checks cost a hot loop under
// wazero's compiler, against the uninstrumented module and against wazero's
// own WithCloseOnContextDone.
func BenchmarkLoop(b *testing.B) {
	orig := featureModule()
	const n = 1 << 20 // iterations per call of loopsum
	for _, tc := range []struct {
		name  string
		bin   []byte
		close bool
	}{
		{"original", orig, false},
		{"interrupt", mustInstrument(b, orig, interruptAll), false},
		{"interrupt+yield", mustInstrument(b, orig, interruptYield), false},
		{"interrupt+yield65536", mustInstrument(b, orig, InstrumentOptions{Interrupt: true, YieldEvery: 65536}), false},
		{"closeOnContextDone", orig, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			r := newRuntime(b, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(tc.close))
			mod, err := r.Instantiate(ctx, tc.bin)
			if err != nil {
				b.Fatal(err)
			}
			f := mod.ExportedFunction("loopsum")
			for b.Loop() {
				if _, err := f.Call(ctx, n); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/iter")
		})
	}
}
