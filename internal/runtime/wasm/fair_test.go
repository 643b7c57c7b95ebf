package wasm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
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
	if s := r.Scheduler(); s.Renice {
		// The spinner holding the slot runs on a thread of its own at nice
		// 19; no other thread of the process does.
		if n := threadsAtNice(t, niceLong); n != 1 {
			t.Errorf("%d threads at nice %d while one long runner runs, want 1", n, niceLong)
		}
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
	if s.Renice {
		if n := threadsAtNice(t, niceLong); n != 0 {
			t.Errorf("%d threads still at nice %d after the calls", n, niceLong)
		}
	}
	if s.Slots != 1 || s.Running != 0 || s.Waiting != 0 {
		t.Errorf("after the calls: %+v, want 1 slot, none running or waiting", s)
	}
	// Each quantum the spinner holding the slot hands it to the next: far
	// more parks than the two first ones.
	if s.LongRunners < 3 || s.Parks < 20 {
		t.Errorf("long runners %d, parks %d: the spinners did not take turns", s.LongRunners, s.Parks)
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

// threadsAtNice counts this process's threads whose nice value is nice
// (Linux; 0 elsewhere).
func threadsAtNice(t *testing.T, nice int) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0
	}
	n := 0
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue // the thread ended
		}
		// Fields after the command name (in parentheses): state is field 3,
		// nice field 19.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) > 16 && fields[16] == strconv.Itoa(nice) {
			n++
		}
	}
	return n
}
