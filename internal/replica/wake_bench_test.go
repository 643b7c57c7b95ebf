package replica_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/blob/dir"
	frostnode "github.com/frostdev/frost/internal/node"
	"github.com/frostdev/frost/internal/replica"
	"github.com/frostdev/frost/internal/runtime/wasm"
	"github.com/frostdev/frost/internal/snapshot"
	"github.com/frostdev/frost/internal/testguest"
)

// wakeNode is a whole node (wasm runtime, snapshot store, replica) in
// this process, sharing the cluster's S3 and registry.
type wakeNode struct {
	n     *frostnode.Node
	snaps *snapshot.Store
	r     *replica.Replica
}

func (c *cluster) wakeNode(b *testing.B, name string) *wakeNode {
	b.Helper()
	d := b.TempDir()
	local, err := dir.New(filepath.Join(d, "blobs"))
	if err != nil {
		b.Fatal(err)
	}
	snaps, err := snapshot.Open(filepath.Join(d, "snapshots"), snapshot.Options{})
	if err != nil {
		b.Fatal(err)
	}
	r, err := replica.New(b.Context(), replica.Config{Dir: filepath.Join(d, "replica"), Node: name, Local: local, Remote: c.remote,
		Snapshots: snaps, Registry: c.reg, SweepEvery: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	rt, err := wasm.New(wasm.Config{CacheDir: filepath.Join(d, "cache")})
	if err != nil {
		b.Fatal(err)
	}
	cfg := frostnode.DefaultConfig()
	cfg.Snapshots, cfg.Shared, cfg.Name = snaps, r, name
	cfg.Idle = time.Hour
	n, err := frostnode.New(b.Context(), cfg, c.reg, r.Blobs(), rt)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go r.Run(ctx)
	go n.Follow(ctx)
	b.Cleanup(func() {
		cancel()
		n.Close(context.Background())
		rt.Close()
	})
	return &wakeNode{n: n, snaps: snaps, r: r}
}

// wake freezes the app on w (dropping w's copy of the snapshot when cross
// is set, so that the wake must pull it from S3), then times one request.
func (w *wakeNode) wake(b *testing.B, app, release string, cross bool) (time.Duration, string) {
	b.Helper()
	ctx := context.Background()
	if _, err := w.n.FreezeApp(ctx, app); err != nil {
		b.Fatal(err)
	}
	if cross {
		if err := w.snaps.Delete(release); err != nil {
			b.Fatal(err)
		}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://"+app+".localhost/?i=7", nil)
	start := time.Now()
	w.n.ServeHTTP(rec, req)
	d := time.Since(start)
	st := rec.Header().Get("Server-Timing")
	if rec.Code != 200 || !strings.HasPrefix(st, "boot;desc=thaw") || cross != strings.Contains(st, "fetch;dur=") {
		b.Fatalf("wake (cross-node %v): %d %q, Server-Timing %q; want a thaw", cross, rec.Code, rec.Body, st)
	}
	return d, st
}

// BenchmarkWake: the first wake of a frozen app (frozen → response, in
// process) on the node that baked its snapshot (local) against one on a
// node that has never held the snapshot (cross: pull it from S3, verify
// every part, thaw), for fat guests of 1, 64 and 512 MiB of random
// memory. Local and cross wakes alternate, so that machine noise spreads
// over both; each reports its median and worst in ms, and the cross
// median over the local one.
//
//	go test -run '^$' -bench Wake -benchtime 5x ./internal/replica/
func BenchmarkWake(b *testing.B) {
	for _, mib := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) { benchWake(b, mib) })
	}
}

func benchWake(b *testing.B, mib int) {
	c := newCluster(b)
	a, bn := c.wakeNode(b, "a"), c.wakeNode(b, "b")
	ctx := context.Background()
	app := fmt.Sprintf("fat%d", mib)
	module := testguest.Path(b, fmt.Sprintf("fat-%d", mib))
	digest := putFile(b, a.r, module)
	rel, err := a.n.Deploy(ctx, app, api.DeployRequest{Module: digest, Mode: "session", Limits: api.Limits{MemoryBytes: 1 << 30}})
	if err != nil {
		b.Fatal(err)
	}
	rec := httptest.NewRecorder()
	a.n.ServeHTTP(rec, httptest.NewRequest("GET", "http://"+app+".localhost/", nil))
	if rec.Code != 200 {
		b.Fatalf("first request: %d %s", rec.Code, rec.Body)
	}
	if _, err := a.n.FreezeApp(ctx, app); err != nil { // bakes, queues the upload
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for a.r.Status().Backlog > 0 {
		if time.Now().After(deadline) {
			b.Fatalf("upload not done: %+v", a.r.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ap, err := c.reg.GetApp(ctx, app)
	if err != nil || ap.Snapshot == nil {
		b.Fatalf("no shared snapshot after the upload: %+v, %v", ap.Snapshot, err)
	}
	// Warm both: b loads the program (compiles the module) on its first wake.
	waitFollowed(b, bn.n, app)
	a.wake(b, app, rel.ID, false)
	bn.wake(b, app, rel.ID, true)

	var local, cross []time.Duration
	var fetch []string
	b.ResetTimer()
	for range b.N {
		d, _ := a.wake(b, app, rel.ID, false)
		local = append(local, d)
		d, st := bn.wake(b, app, rel.ID, true)
		cross = append(cross, d)
		fetch = append(fetch, st)
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	lm, cm := median(local), median(cross)
	b.ReportMetric(ms(lm), "local-p50-ms")
	b.ReportMetric(ms(slices.Max(local)), "local-max-ms")
	b.ReportMetric(ms(cm), "cross-p50-ms")
	b.ReportMetric(ms(slices.Max(cross)), "cross-max-ms")
	b.ReportMetric(float64(cm)/float64(lm), "cross/local")
	b.ReportMetric(float64(ap.Snapshot.Size)/(1<<20), "packed-MiB")
	b.Logf("%d MiB: packed %d bytes of %d; a cross-node wake's Server-Timing: %s", mib, ap.Snapshot.Size, ap.Snapshot.Bytes, fetch[len(fetch)/2])
}

func putFile(b *testing.B, r *replica.Replica, path string) string {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	info, err := r.Blobs().Put(context.Background(), "", f, 0)
	if err != nil {
		b.Fatal(err)
	}
	return info.Digest
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func waitFollowed(b *testing.B, n *frostnode.Node, app string) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := n.App(context.Background(), app); err == nil {
			rec := httptest.NewRecorder()
			n.ServeHTTP(rec, httptest.NewRequest("GET", "http://"+app+".localhost/", nil))
			if rec.Code == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("node never served %s", app)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
