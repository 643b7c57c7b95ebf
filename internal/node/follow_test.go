package node

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/registry"
)

// heldWatch is a registry whose app watch delivers its first batch (the
// apps as of the start) and holds every later one until release is
// closed: a watch that lags, as etcd's does on a loaded machine.
type heldWatch struct {
	registry.Store
	release chan struct{}
}

func (h *heldWatch) WatchApps(ctx context.Context, fn func([]registry.AppEvent)) error {
	first := true
	return h.Store.WatchApps(ctx, func(evs []registry.AppEvent) {
		if !first {
			select {
			case <-h.release:
			case <-ctx.Done():
				return
			}
		}
		first = false
		fn(evs)
	})
}

// followingPair is two nodes on one registry and one blob store: a,
// where apps are deployed, and b, which follows the registry through a
// watch held until the returned channel is closed.
func followingPair(t *testing.T) (a, b *Node, release chan struct{}) {
	t.Helper()
	reg, blobs := testStores(t)
	release = make(chan struct{})
	a = newTestNodeOn(t, reg, blobs, nil)
	b = newTestNodeOn(t, &heldWatch{Store: reg, release: release}, blobs, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Follow(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for !b.following.Load() {
		time.Sleep(time.Millisecond)
	}
	return a, b, release
}

// TestRequestWaitsForTheWatch: a request that reaches a node before the
// watch has brought an app deployed through another node waits for it
// and is served, where it was told the app did not exist; a name the
// registry lacks is still 404 at once.
func TestRequestWaitsForTheWatch(t *testing.T) {
	a, b, release := followingPair(t)
	deployGuest(t, a, "hello", "hello-c")
	answered := make(chan *httptest.ResponseRecorder, 1)
	go func() { answered <- get(b, "http://hello.localhost/") }()
	select {
	case w := <-answered:
		t.Fatalf("answered before the watch brought the app: %d %q", w.Code, w.Body)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if w := <-answered; w.Code != http.StatusOK || w.Body.String() != "hello from frost\n" {
		t.Fatalf("once the watch brought it: %d %q", w.Code, w.Body)
	}
	if w := get(b, "http://nope.localhost/"); w.Code != http.StatusNotFound || w.Header().Get("X-Frost-Error") != "no_app" {
		t.Fatalf("an app the registry lacks: %d %q", w.Code, w.Body)
	}
}

// TestWatchThatNeverComes: when the watch does not bring an app the
// registry has within missWait, the request is told to retry (503), not
// that the app does not exist, and a gateway is told the next node to
// try (Frost-Replay).
func TestWatchThatNeverComes(t *testing.T) {
	a, b, _ := followingPair(t)
	b.cfg.Replay = func(app string) string { return "n9" }
	deployGuest(t, a, "late", "hello-c")
	w := get(b, "http://late.localhost/")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("X-Frost-Error") != "not_synced" || w.Header().Get("Retry-After") == "" {
		t.Fatalf("%d %v %q, want 503 not_synced with Retry-After", w.Code, w.Header(), w.Body)
	}
	if got := w.Header().Get("Frost-Replay"); got != "n9" {
		t.Errorf("Frost-Replay %q, want the next node, n9", got)
	}
	wantMetric(t, b.metrics.reg, "frost_errors_total", map[string]string{"app": "", "reason": "not_synced"}, 1)
}

// TestMissReadsArePaced: requests for unknown names read the registry at
// most missBurst at once and one per missEvery after.
func TestMissReadsArePaced(t *testing.T) {
	n := &Node{}
	now := time.Unix(1000, 0)
	for i := range missBurst {
		if !n.missAllowed(now) {
			t.Fatalf("read %d of a burst of %d refused", i+1, missBurst)
		}
	}
	if n.missAllowed(now) {
		t.Fatalf("read %d at once allowed", missBurst+1)
	}
	if !n.missAllowed(now.Add(missEvery)) {
		t.Fatalf("no read allowed %v later", missEvery)
	}
	if n.missAllowed(now.Add(missEvery)) {
		t.Fatalf("two reads allowed %v later", missEvery)
	}
}

// awayRegistry is a registry whose reads wait for their context to end:
// etcd away, with no bound of its own.
type awayRegistry struct{ registry.Store }

func (awayRegistry) GetApp(ctx context.Context, name string) (registry.App, error) {
	<-ctx.Done()
	return registry.App{}, ctx.Err()
}

// TestMissWithTheRegistryAway: a request for a name this node does not
// know, while the registry does not answer, is answered when missWait
// is up (404, as for a name that exists nowhere) rather than held for as
// long as the registry stays away.
func TestMissWithTheRegistryAway(t *testing.T) {
	reg, blobs := testStores(t)
	n := newTestNodeOn(t, awayRegistry{reg}, blobs, nil)
	n.following.Store(true)
	answered := make(chan int, 1)
	go func() { answered <- get(n, "http://nope.localhost/").Code }()
	select {
	case code := <-answered:
		if code != http.StatusNotFound {
			t.Fatalf("with the registry away: %d, want 404", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a request for an unknown name still waits on the registry after 10s")
	}
}
