package wasm

import (
	"bytes"
	"context"
	"errors"
	goruntime "runtime"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
)

// TestFairSchedulerParksLongRunners runs three spinning calls with one
// long-runner slot: one spins, two park and take turns, a short call is
// served meanwhile, and every spinner is still stopped at its time limit,
// parked or not.
func TestFairSchedulerParksLongRunners(t *testing.T) {
	r, err := New(Config{CacheDir: t.TempDir(), LongRunnerSlots: 1, Slice: time.Millisecond, Quantum: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	p := load(t, r, "spin", registry.Limits{Timeout: 1500 * time.Millisecond}, nil)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = p.Handle(context.Background(), get("/?mode=forever"))
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for s := r.Scheduler(); s.Running != 1 || s.Waiting != 2; s = r.Scheduler() {
		if time.Now().After(deadline) {
			t.Fatalf("scheduler never had 1 running and 2 waiting: %+v", s)
		}
		time.Sleep(time.Millisecond)
	}
	resp, _, err := p.Handle(context.Background(), get("/?mode=work&n=100"))
	if err != nil || resp.Status != 200 {
		t.Fatalf("a short call beside the spinners: %v", err)
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, runtime.ErrCPULimit) {
			t.Errorf("spinner %d: %v, want ErrCPULimit", i, err)
		}
	}
	s := r.Scheduler()
	t.Logf("%+v", s)
	if s.Slots != 1 || s.Running != 0 || s.Waiting != 0 {
		t.Errorf("after the calls: %+v, want 1 slot, none running or waiting", s)
	}
	// Each quantum the spinner holding the slot hands it to the next: far
	// more parks than the two first ones.
	if s.LongRunners < 3 || s.Parks < 20 {
		t.Errorf("long runners %d, parks %d: the spinners did not take turns", s.LongRunners, s.Parks)
	}
}

// TestHostCallLoopsYield: a guest that loops on host calls is asked by the
// host, not only at its own yield points. A 32 MiB body written 16 KiB at a
// time is 2,048 loop iterations, far fewer than the instrumenter's
// countdown, so without the host's count the call would never be seen
// running past its slice.
func TestHostCallLoopsYield(t *testing.T) {
	r, err := New(Config{CacheDir: t.TempDir(), LongRunnerSlots: 1, Slice: 100 * time.Microsecond, Quantum: 100 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	p := load(t, r, "spin", registry.Limits{Timeout: 5 * time.Second}, nil)
	for _, mode := range []string{"body", "headers"} {
		before := r.Scheduler().LongRunners
		_, _, err := p.Handle(context.Background(), get("/?mode="+mode))
		if !errors.Is(err, runtime.ErrBadResponse) {
			t.Fatalf("%s flood: %v, want ErrBadResponse", mode, err)
		}
		if s := r.Scheduler(); s.LongRunners == before || s.Running != 0 {
			t.Errorf("%s flood: scheduler %+v: the call never reached it (long runners were %d)", mode, s, before)
		}
	}
}

// TestFairSchedulerOff: with LongRunnerSlots -1 calls are never parked.
func TestFairSchedulerOff(t *testing.T) {
	r, err := New(Config{CacheDir: t.TempDir(), LongRunnerSlots: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	p := load(t, r, "spin", registry.Limits{Timeout: 200 * time.Millisecond}, nil)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Handle(context.Background(), get("/?mode=forever"))
		}()
	}
	wg.Wait()
	if s := r.Scheduler(); s != (SchedulerStats{}) {
		t.Errorf("scheduler off: %+v", s)
	}
}

// TestPreemptibleCopies checks the stepwise copies against the builtins.
func TestPreemptibleCopies(t *testing.T) {
	src := make([]byte, 3*preemptStep+12345)
	for i := range src {
		src[i] = byte(i * 7)
	}
	for _, c := range []struct{ have, cap, add int }{
		{0, 0, 10}, {5, 100, 10}, {0, 0, len(src)}, {100, 200, len(src)},
		{preemptStep, 4 * preemptStep, 2 * preemptStep}, {10, 10 + preemptStep + 1, preemptStep + 1},
	} {
		dst := append(make([]byte, 0, c.cap), src[:c.have]...)
		got := appendPreemptible(dst, src[:c.add])
		want := append(append([]byte(nil), src[:c.have]...), src[:c.add]...)
		if !bytes.Equal(got, want) {
			t.Errorf("appendPreemptible(%d of cap %d, %d bytes) differs from append", c.have, c.cap, c.add)
		}
	}
	b := bytes.Clone(src)
	clearPreemptible(b)
	if !bytes.Equal(b, make([]byte, len(src))) {
		t.Error("clearPreemptible left bytes")
	}
}

// TestSpareProcessor: with SpareProcessor, GOMAXPROCS gains one while a
// long runner runs (not for short calls) and loses it once none has run for
// SpareLinger; the slots are as many as the processors without the spare.
func TestSpareProcessor(t *testing.T) {
	base := goruntime.GOMAXPROCS(0)
	t.Cleanup(func() { goruntime.GOMAXPROCS(base) })
	r, err := New(Config{CacheDir: t.TempDir(), SpareProcessor: true, Slice: time.Millisecond, Quantum: time.Millisecond, SpareLinger: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if s := r.Scheduler(); s.Slots != base || s.Spare {
		t.Fatalf("at start: %+v, want %d slots and no spare", s, base)
	}
	p := load(t, r, "spin", registry.Limits{Timeout: 300 * time.Millisecond}, nil)
	for range 20 {
		if _, _, err := p.Handle(context.Background(), get("/?mode=work&n=100")); err != nil {
			t.Fatal(err)
		}
	}
	if got := goruntime.GOMAXPROCS(0); got != base || r.Scheduler().Spare {
		t.Fatalf("after short calls GOMAXPROCS is %d, want %d", got, base)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := p.Handle(context.Background(), get("/?mode=forever"))
		done <- err
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s (GOMAXPROCS %d, %+v)", what, goruntime.GOMAXPROCS(0), r.Scheduler())
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor("the spare while a long runner runs", func() bool { return goruntime.GOMAXPROCS(0) == base+1 && r.Scheduler().Spare })
	if err := <-done; !errors.Is(err, runtime.ErrCPULimit) {
		t.Fatalf("spinner: %v", err)
	}
	waitFor("the spare gone after the linger", func() bool { return goruntime.GOMAXPROCS(0) == base && !r.Scheduler().Spare })
}
