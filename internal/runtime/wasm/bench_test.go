package wasm

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/registry"
)

// BenchmarkHandle is the per-request cost inside the runtime: take an
// instance, run the guest, reset the instance (http-wasm), or instantiate a
// fresh instance and run _start (CGI).
func BenchmarkHandle(b *testing.B) {
	for _, g := range []string{"hello-c", "go-httpwasm", "cgi", "go-cgi"} {
		b.Run(g, func(b *testing.B) {
			r := newRuntime(b)
			p := load(b, r, g, registry.Limits{}, nil)
			req := get("/")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, _, err := p.Handle(context.Background(), req)
				if err != nil {
					b.Fatal(err)
				}
				p.Release(resp)
			}
		})
	}
}

// BenchmarkHandleWatched is hello-c's BenchmarkHandle with a context that
// can end, as a front's requests have: the difference is what watching
// for the client leaving costs a request.
func BenchmarkHandleWatched(b *testing.B) {
	r := newRuntime(b)
	p := load(b, r, "hello-c", registry.Limits{}, nil)
	req := get("/")
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{{"background", context.Background()}, {"cancelable", cancelable(b)}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, _, err := p.Handle(c.ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				p.Release(resp)
			}
		})
	}
}

func cancelable(b *testing.B) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	return ctx
}

// BenchmarkHotLoop is a CPU-bound guest under each time-limit mechanism: none
// (the baseline), the instrumented interrupt check Frost uses, and wazero's
// context-done polling.
func BenchmarkHotLoop(b *testing.B) {
	n := 20_000_000
	for _, m := range []struct {
		name string
		mode stopMode
	}{{"none", stopNone}, {"interrupt", stopInterrupt}, {"ctxdone", stopContext}} {
		b.Run("spin/"+m.name, func(b *testing.B) {
			r, err := build(Config{CacheDir: b.TempDir()}, m.mode)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { r.Close() })
			p := load(b, r, "spin", registry.Limits{Timeout: time.Minute}, nil)
			req := get("/?mode=work&n=" + strconv.Itoa(n))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, _, err := p.Handle(context.Background(), req)
				if err != nil {
					b.Fatal(err)
				}
				p.Release(resp)
			}
		})
	}
}
