package wasm

import (
	"context"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
	snapstore "github.com/frostdev/frost/internal/snapshot"
)

// BenchmarkWake measures, for a small C guest, a Go guest and a guest whose
// init takes tens of milliseconds, the latency from a frozen program to a
// complete first response in three ways, each in the same run:
//
//   - warm: a request to a live program (the baseline);
//   - thaw: the node's wake path: read the snapshot from a store on disk
//     (into a buffer the runtime lends, as the node does) and verify every
//     part's SHA-256, restore without init, pass the liveness gate, then
//     serve;
//   - cold: run init again (the fallback when no snapshot can be used), then
//     serve.
//
// It reports the median and the 99th percentile in µs ("p50-µs",
// "p99-µs"); ns/op is the mean.
func BenchmarkWake(b *testing.B) {
	for _, guest := range []string{"hello-c", "go-httpwasm", "heavy"} {
		r := newRuntime(b)
		sp := spec(b, guest, registry.ModeRequest, nil, nil)
		p, err := r.Load(context.Background(), sp)
		if err != nil {
			b.Fatal(err)
		}
		f := p.(runtime.Freezer)
		img, err := f.Image()
		if err != nil {
			b.Fatal(err)
		}
		store, err := snapstore.Open(b.TempDir(), snapstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		var parts []snapstore.Part
		for name, data := range img.Parts {
			parts = append(parts, snapstore.Part{Name: name, Data: data})
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i].Name < parts[j].Name })
		want := snapstore.Want{App: guest, Release: sha(guest), Runtime: "wasm", RuntimeVersion: img.Version}
		if _, err := store.Put(context.Background(), snapstore.Manifest{App: guest, Release: want.Release, Runtime: "wasm", RuntimeVersion: img.Version, Meta: img.Meta}, parts); err != nil {
			b.Fatal(err)
		}
		serve := func(b *testing.B) {
			resp, _, err := p.Handle(context.Background(), get("/"))
			if err != nil {
				b.Fatal(err)
			}
			p.Release(resp)
		}
		run := func(b *testing.B, wake func(b *testing.B)) {
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if wake != nil {
					f.Freeze()
				}
				b.StartTimer()
				start := time.Now()
				if wake != nil {
					wake(b)
				}
				serve(b)
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
		}
		b.Run(guest+"/warm", func(b *testing.B) { run(b, nil) })
		b.Run(guest+"/thaw", func(b *testing.B) {
			run(b, func(b *testing.B) {
				m, got, err := store.GetInto(context.Background(), want, r.PartBuffer)
				if err != nil {
					b.Fatal(err)
				}
				img := &runtime.Image{Version: m.RuntimeVersion, Meta: m.Meta, Parts: map[string][]byte{}, Lent: true}
				for _, part := range got {
					img.Parts[part.Name] = part.Data
				}
				if _, err := f.Wake(context.Background(), img); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run(guest+"/cold", func(b *testing.B) {
			run(b, func(b *testing.B) {
				if _, err := f.Wake(context.Background(), nil); err != nil {
					b.Fatal(err)
				}
			})
		})
		p.Close(context.Background())
	}
}

// sha returns a release-ID-shaped name for s.
func sha(s string) string {
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 64)
	for i := range out {
		out[i] = hexdigits[(int(s[i%len(s)])+i)%16]
	}
	return string(out)
}
