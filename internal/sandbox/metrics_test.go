package sandbox_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/sandbox"
)

// TestMetrics: a running sandbox's samples (one as its box starts, then
// each round) become metrics whose CPU share is the CPU used since the
// sample before over the CPUs the box may use; a call adds one for now
// that is not kept; a range selects; a paused sandbox answers its
// history to its pause; a resumed one starts a new run (its first sample only a base);
// a killed one is not found.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb, err := e.m.Create(ctx, api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	usage := func(cpu time.Duration, mem int64) {
		e.rt.Live[sb.ID].SetUsage(runtime.BoxStats{CPU: cpu, Memory: mem, Cache: mem / 4, MemoryLimit: 512 << 20, CPUs: 2})
	}
	metrics := func(from, to time.Time) []api.SandboxMetric {
		t.Helper()
		got, err := e.m.Metrics(ctx, sb.ID, from, to)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	pcts := func(ms []api.SandboxMetric) []float64 {
		var out []float64
		for _, m := range ms {
			out = append(out, m.CPUUsedPct)
		}
		return out
	}
	if got := metrics(time.Time{}, time.Time{}); len(got) != 0 {
		t.Fatalf("at once: %+v, want none (the base only)", got)
	}
	t0 := e.now
	e.advance(time.Second)
	usage(time.Second, 100<<20) // one CPU of two for a second: 50%
	e.m.SampleAll()
	e.advance(time.Second)
	usage(4*time.Second, 200<<20) // more than two CPUs can: clamped to 100%
	e.m.SampleAll()
	e.advance(500 * time.Millisecond)
	usage(4*time.Second+250*time.Millisecond, 210<<20) // a call's own: 25%
	got := metrics(time.Time{}, time.Time{})
	if p := pcts(got); len(p) != 3 || p[0] != 50 || p[1] != 100 || p[2] != 25 {
		t.Fatalf("CPU shares %v: %+v", p, got)
	}
	if last := got[2]; last.MemUsed != 210<<20 || last.MemCache != 210<<20/4 || last.MemTotal != 512<<20 || last.CPUCount != 2 || !last.Time.Equal(t0.Add(2500*time.Millisecond)) {
		t.Fatalf("last: %+v", last)
	}
	// The call's sample was not kept; a range selects.
	if got := metrics(t0.Add(1500*time.Millisecond), t0.Add(2*time.Second)); len(got) != 1 || !got[0].Time.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("from t0+1.5s to t0+2s: %+v", got)
	}

	// Paused: the history, its last reading taken at the pause, nothing
	// for now.
	if _, err := e.m.Pause(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	e.advance(time.Second)
	if p := pcts(metrics(time.Time{}, time.Time{})); len(p) != 3 || p[2] != 25 {
		t.Fatalf("paused: %v", p)
	}
	// Resumed: a new box, its CPU time from zero again.
	if _, err := e.m.Resume(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	e.advance(time.Second)
	usage(500*time.Millisecond, 60<<20)
	if p := pcts(metrics(time.Time{}, time.Time{})); len(p) != 4 || p[3] != 25 {
		t.Fatalf("after the resume: %v", p)
	}

	if err := e.m.Kill(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Metrics(ctx, sb.ID, time.Time{}, time.Time{}); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("killed: %v", err)
	}
}

// TestMetricsKept: samples older than MetricsKept are dropped.
func TestMetricsKept(t *testing.T) {
	e := newEnv(t, func(c *sandbox.Config) { c.MetricsKept = 10 * time.Second })
	ctx := context.Background()
	sb, err := e.m.Create(ctx, api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for range 30 {
		e.advance(time.Second)
		e.m.SampleAll()
	}
	got, err := e.m.Metrics(ctx, sb.ID, time.Time{}, time.Time{})
	if err != nil || len(got) != 10 || got[0].Time.Before(e.now.Add(-10*time.Second)) {
		t.Fatalf("%d metrics from %v (now %v), %v", len(got), got[0].Time, e.now, err)
	}
}

// A metric's network bytes are those since the sample before: the box's
// counters are since it started.
func TestMetricsNetwork(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb, err := e.m.Create(ctx, api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ in, out int64 }{{1000, 200}, {5000, 700}, {5000, 700}} {
		e.advance(time.Second)
		e.rt.Live[sb.ID].SetUsage(runtime.BoxStats{CPUs: 1, NetIn: c.in, NetOut: c.out})
		e.m.SampleAll()
	}
	got, err := e.m.Metrics(ctx, sb.ID, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]int64{{1000, 200}, {4000, 500}, {0, 0}}
	if len(got) != len(want) {
		t.Fatalf("%d metrics: %+v", len(got), got)
	}
	for i, m := range got {
		if m.NetIn != want[i][0] || m.NetOut != want[i][1] {
			t.Errorf("metric %d: in %d out %d, want %v", i, m.NetIn, m.NetOut, want[i])
		}
	}
}
