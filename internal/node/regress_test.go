package node

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testguest"
)

// Regressions for bugs the tests found; each case failed before its fix.

func TestAppNameRefusesWhatNoAppCanBe(t *testing.T) {
	n := routeNode("localhost")
	for _, host := range []string{
		"\u212aey.localhost", // Kelvin sign folds to "k"
		"\u0130d.localhost",  // dotted capital I folds to "i"
		"a_b.localhost",
		"-x.localhost",
		strings.Repeat("a", 64) + ".localhost",
	} {
		if name, ok := n.appName(host); ok {
			t.Errorf("appName(%q) = %q, want refused", host, name)
		}
	}
}

func TestDomainIsNormalised(t *testing.T) {
	n := newTestNodeWithDomain(t, "Example.COM.")
	if name, ok := n.appName("app.example.com"); !ok || name != "app" {
		t.Errorf("appName = %q, %v", name, ok)
	}
}

func newTestNodeWithDomain(t *testing.T, domain string) *Node {
	n := newTestNode(t)
	// New normalises the domain; check it did so by building one directly.
	n2, err := New(context.Background(), Config{Domain: domain}, n.reg, n.blobs, n.rt)
	if err != nil {
		t.Fatal(err)
	}
	return n2
}

func TestEnvValueWithNULIsRefused(t *testing.T) {
	n := newTestNode(t)
	deployGuest(t, n, "cgi", "cgi")
	if _, err := n.SetEnv(context.Background(), "cgi", api.EnvRequest{Set: map[string]string{"A": "x\x00"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetEnv with NUL value: %v, want ErrInvalid", err)
	}
	ap, _ := n.reg.GetApp(context.Background(), "cgi")
	if _, ok := ap.Env["A"]; ok {
		t.Error("the NUL value was stored")
	}
	rel, _ := n.reg.GetRelease(context.Background(), "cgi", ap.Release)
	if _, err := n.Deploy(context.Background(), "cgi", api.DeployRequest{Module: rel.Module, Env: map[string]string{"B": "\x00"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Deploy with NUL value: %v, want ErrInvalid", err)
	}
	rw := httptest.NewRecorder()
	n.ServeHTTP(rw, httptest.NewRequest("GET", "http://cgi.localhost/", nil))
	if rw.Code != 200 {
		t.Errorf("the app broke: %d %s", rw.Code, rw.Body)
	}
}

// TestConcurrentFirstDeploysConverge: two first deploys of one new name at
// the same moment must leave the node serving the release the registry names.
func TestConcurrentFirstDeploysConverge(t *testing.T) {
	n := newTestNode(t)
	digests := map[string]string{}
	for _, g := range []string{"hello-c", "spin"} {
		f, err := os.Open(testguest.Path(t, g))
		if err != nil {
			t.Fatal(err)
		}
		info, err := n.blobs.Put(context.Background(), "", f, 0)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		digests[g] = info.Digest
	}
	for i := 0; i < 20; i++ {
		name := "race" + string(rune('a'+i))
		var wg sync.WaitGroup
		for _, d := range digests {
			wg.Add(1)
			go func(d string) {
				defer wg.Done()
				n.Deploy(context.Background(), name, api.DeployRequest{Module: d})
			}(d)
		}
		wg.Wait()
		ap, err := n.reg.GetApp(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		a := n.lookup(name)
		if a == nil || a.cur.Load() == nil || a.cur.Load().rel.ID != ap.Release {
			t.Fatalf("round %d: the node serves a release other than the registry's %s", i, ap.Release)
		}
	}
}

func TestAbsoluteFormTargetReachesGuestAsPath(t *testing.T) {
	n := newTestNode(t)
	deployGuest(t, n, "cgi", "cgi")
	r := httptest.NewRequest("GET", "http://cgi.localhost/x?a=1", nil)
	r.RequestURI = "http://cgi.localhost/x?a=1"
	rw := httptest.NewRecorder()
	n.ServeHTTP(rw, r)
	if body := rw.Body.String(); !strings.Contains(body, "path=/x\n") || !strings.Contains(body, "query=a=1") {
		t.Errorf("guest saw:\n%s", body)
	}
}

// TestFollowNeverDuplicates: lines added while a follower subscribes arrive
// exactly once.
func TestFollowNeverDuplicates(t *testing.T) {
	for round := 0; round < 50; round++ {
		h := newLogHub(1000, time.Now)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			for i := 0; i < 200; i++ {
				h.add(api.LogLine{App: "a", Message: string(rune('0' + i%10))})
			}
			close(done)
		}()
		seen := 0
		go func() { <-done; cancel() }()
		h.follow(ctx, "a", -1, func(api.LogLine) error { seen++; return nil })
		if seen > 200 {
			t.Fatalf("round %d: %d lines for 200 added", round, seen)
		}
	}
}

// TestFrozenAppsCostLittleHeap deploys many session apps, serves each once
// and freezes them all: what stays on the Go heap per frozen app (its
// registry entry, compiled-code handle, counters and an empty log ring)
// must be small. Each app's log ring used to be allocated whole up front,
// ~110 KiB an app whether it logged or not.
func TestFrozenAppsCostLittleHeap(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	f, err := os.Open(testguest.Path(t, "hello-c"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := n.blobs.Put(ctx, "", f, 0)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC() // closed instances have finalizers: their memory goes
		runtime.GC() // in the second cycle
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	const apps = 200
	before := heap()
	for i := 0; i < apps; i++ {
		name := fmt.Sprintf("s%d", i)
		if _, err := n.Deploy(ctx, name, api.DeployRequest{Module: info.Digest, Mode: "session"}); err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		n.ServeHTTP(w, httptest.NewRequest("GET", "http://"+name+".localhost/", nil))
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", name, w.Code, w.Body)
		}
	}
	live := heap()
	for i := 0; i < apps; i++ {
		if _, err := n.FreezeApp(ctx, fmt.Sprintf("s%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	frozen := heap()
	per := func(h uint64) int64 { return (int64(h) - int64(before)) / apps >> 10 }
	t.Logf("Go heap per app: %d KiB live, %d KiB frozen", per(live), per(frozen))
	if per(frozen) > 32 {
		t.Errorf("a frozen app keeps %d KiB of Go heap, want at most 32 KiB", per(frozen))
	}
}
