package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/snapshot"
)

// fakeShared stands in for package replica: it records what the node
// asks of it and answers fetches with fetch.
type fakeShared struct {
	mu      sync.Mutex
	baked   []string
	woke    []string
	deleted []string
	fetches int
	fetch   func() (snapshot.Manifest, []snapshot.Part, error)
}

func (f *fakeShared) Baked(app, release string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.baked = append(f.baked, app+"/"+release)
	return nil
}

func (f *fakeShared) FetchSnapshot(ctx context.Context, app, release string) (snapshot.Manifest, []snapshot.Part, error) {
	f.mu.Lock()
	f.fetches++
	fn := f.fetch
	f.mu.Unlock()
	return fn()
}

func (f *fakeShared) Woke(app, release string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.woke = append(f.woke, app+"/"+release)
}

func (f *fakeShared) AppDeleted(ap registry.App, rels []registry.Release) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, fmt.Sprintf("%s:%d releases", ap.Name, len(rels)))
	return nil
}

// TestSharedSnapshots: with shared storage, a bake is handed on for
// upload; a wake that lacks the snapshot pulls it (a thaw, Server-Timing
// says fetch); a pull that fails boots cold, counted by reason, never a
// bad thaw; a delete hands on the app and its releases.
func TestSharedSnapshots(t *testing.T) {
	f := &fakeShared{}
	n := newTestNodeWith(t, func(c *Config) { c.Shared = f })
	ctx := context.Background()
	rel, err := n.Deploy(ctx, "s", api.DeployRequest{Module: putGuest(t, n, "heavy"), Mode: "session"})
	if err != nil {
		t.Fatal(err)
	}
	if w := get(n, "http://s.localhost/"); w.Code != 200 {
		t.Fatalf("first request: %d %s", w.Code, w.Body)
	}
	if _, err := n.FreezeApp(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if len(f.baked) != 1 || f.baked[0] != "s/"+rel.ID {
		t.Fatalf("bakes handed on: %q", f.baked)
	}
	// What shared storage holds: the snapshot, packed.
	var packed bytes.Buffer
	if err := n.snaps.Export(ctx, n.want(rel), &packed); err != nil {
		t.Fatal(err)
	}
	forget := func() {
		t.Helper()
		if err := n.snaps.Delete(rel.ID); err != nil {
			t.Fatal(err)
		}
	}
	wake := func() (boot, timing string) {
		t.Helper()
		if _, err := n.FreezeApp(ctx, "s"); err != nil {
			t.Fatal(err)
		}
		forget()
		w := get(n, "http://s.localhost/")
		if w.Code != 200 {
			t.Fatalf("wake: %d %s", w.Code, w.Body)
		}
		st := w.Header().Get("Server-Timing")
		b, _, _ := strings.Cut(strings.TrimPrefix(st, "boot;desc="), ",")
		return b, st
	}

	f.fetch = func() (snapshot.Manifest, []snapshot.Part, error) {
		return n.snaps.Import(ctx, bytes.NewReader(packed.Bytes()), 1<<30)
	}
	if boot, st := wake(); boot != "thaw" || !strings.Contains(st, "fetch;dur=") {
		t.Errorf("wake with the snapshot in shared storage: Server-Timing %q; want a thaw with a fetch", st)
	}
	if len(f.woke) != 1 {
		t.Errorf("wakes handed on: %q", f.woke)
	}

	for _, c := range []struct {
		err    error
		reason string
	}{
		{fmt.Errorf("%w: none shared", snapshot.ErrNotFound), fallbackMissing},
		{errors.New("shared storage unavailable: connection refused"), fallbackUnavailable},
		{fmt.Errorf("import: %w: part memory: sha256 mismatch", snapshot.ErrCorrupt), fallbackCorrupt},
	} {
		f.fetch = func() (snapshot.Manifest, []snapshot.Part, error) { return snapshot.Manifest{}, nil, c.err }
		if boot, st := wake(); boot != "cold" || strings.Contains(st, "fetch;dur=") && c.reason == fallbackMissing {
			t.Errorf("fetch failing with %v: Server-Timing %q; want a cold boot", c.err, st)
		}
		d, err := n.App(ctx, "s")
		if err != nil {
			t.Fatal(err)
		}
		if d.Counters.Fallbacks[c.reason] != 1 {
			t.Errorf("fetch failing with %v: fallbacks %v; want one %s", c.err, d.Counters.Fallbacks, c.reason)
		}
	}

	if err := n.Delete(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if len(f.deleted) != 1 || f.deleted[0] != "s:1 releases" {
		t.Errorf("deletes handed on: %q", f.deleted)
	}
}
