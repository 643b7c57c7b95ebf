// Package registrytest is the contract suite every registry.Store must pass.
// A backend's test calls Run (or RunWith, to add the persistence checks):
//
//	func TestStore(t *testing.T) {
//		registrytest.Run(t, func(t *testing.T) registry.Store { … })
//	}
//
// Besides what the registry.Store comments say, the suite pins down:
//   - app names order bytewise (Go string order) in ListApps;
//   - release IDs are per app: two apps may hold the same ID;
//   - GetRelease and ListReleases of a missing app are ErrNotFound;
//   - an fn that changes the app's Name makes UpdateApp fail, storing nothing;
//   - values round-trip except that times come back as the same instant
//     (zone and monotonic reading dropped) and an empty Env may come back nil;
//   - every method with a cancelled context fails with context.Canceled;
//   - the cluster methods keep the promises in their comments across
//     stores (Options.Peer), and a member that dies leaves within its ttl
//     plus 1.5s (Options.Kill).
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/registry"
)

// Options adds optional checks to the suite.
type Options struct {
	// Reopen closes s and returns a new Store over the same data, as a
	// restarted server would see it. Nil skips the persistence checks.
	Reopen func(t *testing.T, s registry.Store) registry.Store
	// Peer returns another Store on s's registry, as another process would
	// open it (its own connection, memberships and watches), and closes it
	// in t.Cleanup. The cluster checks then make changes through the peer
	// and watch them through s. Nil (a backend that one process holds)
	// runs them on s alone, and skips the checks that need Kill.
	Peer func(t *testing.T, s registry.Store) registry.Store
	// Kill makes p, a store that Peer returned, stop as if its process had
	// been killed, or cut off from the registry: no more heartbeats, and
	// nothing cleaned up. Nil skips the checks of dying members.
	Kill func(t *testing.T, p registry.Store)
}

// Run runs the contract suite. newStore must return a new, empty Store that
// shares no data with any other it returned, and close it in t.Cleanup. It is
// called from parallel subtests, so it must be safe for concurrent use.
func Run(t *testing.T, newStore func(t *testing.T) registry.Store) {
	t.Helper()
	RunWith(t, newStore, Options{})
}

// RunWith is Run with the optional checks that opts enables.
func RunWith(t *testing.T, newStore func(t *testing.T) registry.Store, opts Options) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s registry.Store)
	}{
		{"GetAppMissing", testGetAppMissing},
		{"UpdateAppCreate", testUpdateAppCreate},
		{"UpdateAppExisting", testUpdateAppExisting},
		{"UpdateAppMissingWithoutCreate", testUpdateAppMissingWithoutCreate},
		{"UpdateAppFnError", testUpdateAppFnError},
		{"UpdateAppRename", testUpdateAppRename},
		{"ListAppsSorted", testListAppsSorted},
		{"AppRoundTrip", testAppRoundTrip},
		{"ReleaseRoundTrip", testReleaseRoundTrip},
		{"ReturnedValuesAreCopies", testReturnedValuesAreCopies},
		{"PutReleaseExists", testPutReleaseExists},
		{"PutReleaseMissingApp", testPutReleaseMissingApp},
		{"GetReleaseMissing", testGetReleaseMissing},
		{"ReleaseIDsArePerApp", testReleaseIDsArePerApp},
		{"ListReleasesNewestFirst", testListReleasesNewestFirst},
		{"ListReleasesSeparatesSimilarNames", testListReleasesSeparatesSimilarNames},
		{"DeleteApp", testDeleteApp},
		{"DeleteAppMissing", testDeleteAppMissing},
		{"ConcurrentUpdateApp", testConcurrentUpdateApp},
		{"ConcurrentPutRelease", testConcurrentPutRelease},
		{"CancelledContext", testCancelledContext},
		{"Sandboxes", testSandboxes},
		{"Templates", testTemplates},
		{"Tenants", testTenants},
		{"Join", func(t *testing.T, s registry.Store) { testJoin(t, s, opts) }},
		{"JoinReplaces", func(t *testing.T, s registry.Store) { testJoinReplaces(t, s, opts) }},
		{"JoinInvalid", testJoinInvalid},
		{"WatchNodes", func(t *testing.T, s registry.Store) { testWatchNodes(t, s, opts) }},
		{"WatchApps", func(t *testing.T, s registry.Store) { testWatchApps(t, s, opts) }},
		{"WatchAppsConcurrent", func(t *testing.T, s registry.Store) { testWatchAppsConcurrent(t, s, opts) }},
		{"CloseEndsMemberships", func(t *testing.T, s registry.Store) { testCloseEndsMemberships(t, s, opts) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
	t.Run("MemberDies", func(t *testing.T) {
		if opts.Peer == nil || opts.Kill == nil {
			t.Skip("the backend gives no Peer and Kill: one process holds it, so no member can die alone")
		}
		t.Parallel()
		testMemberDies(t, newStore(t), opts)
	})
	t.Run("Reopen", func(t *testing.T) {
		if opts.Reopen == nil {
			t.Skip("the backend gives no Reopen")
		}
		t.Parallel()
		testReopen(t, newStore(t), opts.Reopen)
	})
}

// at is a fixed instant with nanoseconds, so a store that rounds is caught.
var at = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

func fullApp(name string) registry.App {
	return registry.App{
		Name:       name,
		Release:    "rel-" + name + "-3",
		Version:    3,
		Env:        map[string]string{"DATABASE_URL": "postgres://db/app?sslmode=require", "EMPTY": "", "UNICODE": "❄ frost", "QUOTE": `"\n\t<>&`},
		EnvVersion: 1 << 40,
		CreatedAt:  at,
		UpdatedAt:  at.Add(36*time.Hour + time.Nanosecond),
	}
}

func fullRelease(app, id string, version int) registry.Release {
	return registry.Release{
		ID:         id,
		App:        app,
		Version:    version,
		Runtime:    "wasm",
		Module:     "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		ModuleSize: 5 << 30,
		Shape:      "http-wasm",
		Mode:       registry.ModeSession,
		Limits: registry.Limits{
			MemoryBytes:  256 << 20,
			Timeout:      1500*time.Millisecond + 7*time.Nanosecond,
			Concurrency:  64,
			MaxBodyBytes: 10 << 20,
			FSBytes:      1 << 30,
		},
		CreatedAt:  at.Add(time.Duration(version) * time.Minute),
		Assets:     "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
		AssetsSize: 64 << 20,
	}
}

// createApp stores a as a new app.
func createApp(t *testing.T, s registry.Store, a registry.App) registry.App {
	t.Helper()
	got, err := s.UpdateApp(t.Context(), a.Name, true, func(cur *registry.App) error {
		*cur = a
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateApp(%q, create): %v", a.Name, err)
	}
	return got
}

func putRelease(t *testing.T, s registry.Store, r registry.Release) {
	t.Helper()
	if err := s.PutRelease(t.Context(), r); err != nil {
		t.Fatalf("PutRelease(%s/%s): %v", r.App, r.ID, err)
	}
}

func getApp(t *testing.T, s registry.Store, name string) registry.App {
	t.Helper()
	a, err := s.GetApp(t.Context(), name)
	if err != nil {
		t.Fatalf("GetApp(%q): %v", name, err)
	}
	return a
}

func testGetAppMissing(t *testing.T, s registry.Store) {
	createApp(t, s, registry.App{Name: "present"})
	for _, name := range []string{"absent", "presen", "present2", "PRESENT", ""} {
		if _, err := s.GetApp(t.Context(), name); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("GetApp(%q) = %v, want ErrNotFound", name, err)
		}
	}
}

func testUpdateAppCreate(t *testing.T, s registry.Store) {
	calls := 0
	got, err := s.UpdateApp(t.Context(), "web", true, func(a *registry.App) error {
		calls++
		if !reflect.DeepEqual(*a, registry.App{Name: "web"}) {
			t.Errorf("fn got %+v for a new app, want a zero App with Name set", *a)
		}
		a.Version = 1
		a.Release = "r1"
		a.CreatedAt = at
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateApp: %v", err)
	}
	want := registry.App{Name: "web", Version: 1, Release: "r1", CreatedAt: at}
	checkApp(t, "UpdateApp", got, want)
	checkApp(t, "GetApp", getApp(t, s, "web"), want)
	if calls < 1 {
		t.Fatal("fn was not called")
	}
}

func testUpdateAppExisting(t *testing.T, s registry.Store) {
	old := createApp(t, s, fullApp("web"))
	for _, create := range []bool{false, true} {
		got, err := s.UpdateApp(t.Context(), "web", create, func(a *registry.App) error {
			checkApp(t, "fn's app", *a, old)
			a.Env["NEW"] = "1"
			a.EnvVersion++
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateApp(create=%v): %v", create, err)
		}
		want := fullApp("web")
		want.Env = maps.Clone(old.Env)
		want.Env["NEW"] = "1"
		want.EnvVersion = old.EnvVersion + 1
		checkApp(t, "UpdateApp", got, want)
		checkApp(t, "GetApp", getApp(t, s, "web"), want)
		old = want
	}
}

func testUpdateAppMissingWithoutCreate(t *testing.T, s registry.Store) {
	_, err := s.UpdateApp(t.Context(), "ghost", false, func(*registry.App) error {
		t.Error("fn called for a missing app with create false")
		return nil
	})
	if !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("UpdateApp = %v, want ErrNotFound", err)
	}
	if _, err := s.GetApp(t.Context(), "ghost"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("GetApp after a failed update = %v, want ErrNotFound", err)
	}
}

func testUpdateAppFnError(t *testing.T, s registry.Store) {
	boom := errors.New("validation failed")
	createApp(t, s, fullApp("existing"))
	tests := []struct {
		name   string
		app    string
		create bool
	}{
		{"new app", "new", true},
		{"existing app", "existing", false},
		{"existing app with create", "existing", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.UpdateApp(t.Context(), tt.app, tt.create, func(a *registry.App) error {
				a.Version = 99 // changes that must not be stored
				a.Env = map[string]string{"LEAK": "yes"}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("UpdateApp = %v, want fn's error", err)
			}
			got, err := s.GetApp(t.Context(), tt.app)
			if tt.app == "new" {
				if !errors.Is(err, registry.ErrNotFound) {
					t.Fatalf("GetApp = %+v, %v; want ErrNotFound", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkApp(t, "GetApp", got, fullApp(tt.app))
		})
	}
}

func testUpdateAppRename(t *testing.T, s registry.Store) {
	tests := []struct {
		name   string
		exists bool
	}{
		{"new app", false},
		{"existing app", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "rename-" + tt.name
			if tt.exists {
				createApp(t, s, fullApp(name))
			}
			_, err := s.UpdateApp(t.Context(), name, true, func(a *registry.App) error {
				a.Name = "other"
				a.Version = 99
				return nil
			})
			if err == nil {
				t.Fatal("UpdateApp let fn change the name")
			}
			if _, err := s.GetApp(t.Context(), "other"); !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("GetApp(other) = %v, want ErrNotFound", err)
			}
			got, err := s.GetApp(t.Context(), name)
			if !tt.exists {
				if !errors.Is(err, registry.ErrNotFound) {
					t.Fatalf("GetApp = %+v, %v; want ErrNotFound", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkApp(t, "GetApp", got, fullApp(name))
		})
	}
}

func testListAppsSorted(t *testing.T, s registry.Store) {
	apps, err := s.ListApps(t.Context())
	if err != nil || len(apps) != 0 {
		t.Fatalf("ListApps of an empty store = %v, %v; want none", apps, err)
	}
	names := []string{"web", "api", "Zeta", "api-v2", "a", "äpp", "api.internal", "1st", "b"}
	for _, n := range names {
		createApp(t, s, fullApp(n))
	}
	apps, err = s.ListApps(t.Context())
	if err != nil {
		t.Fatalf("ListApps: %v", err)
	}
	want := slices.Sorted(slices.Values(names))
	var got []string
	for _, a := range apps {
		got = append(got, a.Name)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ListApps names = %q, want %q", got, want)
	}
	for _, a := range apps {
		checkApp(t, "ListApps", a, fullApp(a.Name))
	}
}

func testAppRoundTrip(t *testing.T, s registry.Store) {
	now := time.Now() // local zone and a monotonic reading
	tests := []struct {
		name string
		app  registry.App
	}{
		{"zero values", registry.App{Name: "zero"}},
		{"every field", fullApp("full")},
		{"empty env", registry.App{Name: "empty-env", Env: map[string]string{}}},
		{"current local time", registry.App{Name: "now", CreatedAt: now, UpdatedAt: now}},
		{"other zone", registry.App{Name: "zone", CreatedAt: at.In(time.FixedZone("UTC+5:45", 5*3600+45*60))}},
		{"extreme values", registry.App{Name: "extreme", Version: -1, EnvVersion: -1 << 63, CreatedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), UpdatedAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}},
		{"unicode name and env", registry.App{Name: "❄-frost_app.v2", Env: map[string]string{"ключ": "значение", "emoji": "🧊", "nul": "a\x00b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := createApp(t, s, tt.app)
			checkApp(t, "UpdateApp", got, tt.app)
			checkApp(t, "GetApp", getApp(t, s, tt.app.Name), tt.app)
		})
	}
}

func testReleaseRoundTrip(t *testing.T, s registry.Store) {
	tests := []struct {
		name string
		rel  registry.Release
	}{
		{"every field", fullRelease("app", "r-full", 7)},
		{"zero values", registry.Release{ID: "r-zero", App: "app"}},
		{"request mode", registry.Release{ID: "r-request", App: "app", Version: 2, Mode: registry.ModeRequest, Limits: registry.Limits{Timeout: time.Nanosecond}}},
		{"long duration", registry.Release{ID: "r-long", App: "app", Version: 3, Limits: registry.Limits{Timeout: 1<<63 - 1}}},
		{"local time", registry.Release{ID: "r-now", App: "app", Version: 4, CreatedAt: time.Now()}},
	}
	createApp(t, s, registry.App{Name: "app"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			putRelease(t, s, tt.rel)
			got, err := s.GetRelease(t.Context(), "app", tt.rel.ID)
			if err != nil {
				t.Fatalf("GetRelease: %v", err)
			}
			checkRelease(t, "GetRelease", got, tt.rel)
		})
	}
}

// testReturnedValuesAreCopies: callers may modify what a Store returns, and
// what fn is given after it returns, without changing what is stored.
func testReturnedValuesAreCopies(t *testing.T, s registry.Store) {
	var kept *registry.App
	got, err := s.UpdateApp(t.Context(), "web", true, func(a *registry.App) error {
		a.Env = map[string]string{"K": "v"}
		kept = a
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got.Env["K"] = "changed by caller"
	kept.Env["K"] = "changed through fn's pointer"
	a := getApp(t, s, "web")
	if a.Env["K"] != "v" {
		t.Fatalf("stored Env changed to %q by the caller", a.Env["K"])
	}
	a.Env["K"] = "changed again"
	if a := getApp(t, s, "web"); a.Env["K"] != "v" {
		t.Fatalf("stored Env changed to %q through GetApp's result", a.Env["K"])
	}
	apps, err := s.ListApps(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	apps[0].Env["K"] = "changed via ListApps"
	if a := getApp(t, s, "web"); a.Env["K"] != "v" {
		t.Fatalf("stored Env changed to %q through ListApps's result", a.Env["K"])
	}
}

func testPutReleaseExists(t *testing.T, s registry.Store) {
	createApp(t, s, registry.App{Name: "app"})
	first := fullRelease("app", "r1", 1)
	putRelease(t, s, first)
	again := fullRelease("app", "r1", 2)
	again.Module = "different"
	if err := s.PutRelease(t.Context(), again); !errors.Is(err, registry.ErrExists) {
		t.Fatalf("PutRelease of a taken ID = %v, want ErrExists", err)
	}
	got, err := s.GetRelease(t.Context(), "app", "r1")
	if err != nil {
		t.Fatal(err)
	}
	checkRelease(t, "GetRelease", got, first)
	checkReleases(t, s, "app", first)
}

func testPutReleaseMissingApp(t *testing.T, s registry.Store) {
	createApp(t, s, registry.App{Name: "app"})
	if err := s.PutRelease(t.Context(), fullRelease("ghost", "r1", 1)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("PutRelease for a missing app = %v, want ErrNotFound", err)
	}
	if _, err := s.GetApp(t.Context(), "ghost"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("PutRelease created the app: GetApp = %v", err)
	}
	if _, err := s.GetRelease(t.Context(), "ghost", "r1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("GetRelease = %v, want ErrNotFound", err)
	}
}

func testGetReleaseMissing(t *testing.T, s registry.Store) {
	createApp(t, s, registry.App{Name: "app"})
	putRelease(t, s, fullRelease("app", "r1", 1))
	tests := []struct {
		name    string
		app, id string
	}{
		{"missing ID", "app", "r2"},
		{"ID prefix", "app", "r"},
		{"empty ID", "app", ""},
		{"missing app", "ghost", "r1"},
		{"app prefix", "ap", "r1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.GetRelease(t.Context(), tt.app, tt.id); !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("GetRelease(%q, %q) = %v, want ErrNotFound", tt.app, tt.id, err)
			}
		})
	}
	if _, err := s.ListReleases(t.Context(), "ghost"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("ListReleases of a missing app = %v, want ErrNotFound", err)
	}
}

func testReleaseIDsArePerApp(t *testing.T, s registry.Store) {
	createApp(t, s, registry.App{Name: "one"})
	createApp(t, s, registry.App{Name: "two"})
	a, b := fullRelease("one", "same", 1), fullRelease("two", "same", 5)
	putRelease(t, s, a)
	putRelease(t, s, b)
	checkReleases(t, s, "one", a)
	checkReleases(t, s, "two", b)
}

func testListReleasesNewestFirst(t *testing.T, s registry.Store) {
	createApp(t, s, registry.App{Name: "app"})
	if rs, err := s.ListReleases(t.Context(), "app"); err != nil || len(rs) != 0 {
		t.Fatalf("ListReleases with no releases = %v, %v; want none", rs, err)
	}
	// Versions that sort wrongly as strings, stored out of order, with IDs
	// whose order is unrelated to their versions.
	var want []registry.Release
	for _, v := range []int{2, 10, 1, 300, 9, 11, 100} {
		r := fullRelease("app", fmt.Sprintf("z%03d", 1000-v), v)
		putRelease(t, s, r)
		want = append(want, r)
	}
	slices.SortFunc(want, func(a, b registry.Release) int { return b.Version - a.Version })
	checkReleases(t, s, "app", want...)
}

// testListReleasesSeparatesSimilarNames: one app's releases never show up
// under another whose name is a prefix of it, or extends it.
func testListReleasesSeparatesSimilarNames(t *testing.T, s registry.Store) {
	names := []string{"web", "we", "web-2", "web2", "web/x", "web\x00x"}
	want := map[string][]registry.Release{}
	for i, n := range names {
		createApp(t, s, registry.App{Name: n})
		for v := 2; v >= 1; v-- {
			r := fullRelease(n, fmt.Sprintf("r%d-%d", i, v), v)
			putRelease(t, s, r)
			want[n] = append(want[n], r)
		}
	}
	for _, n := range names {
		checkReleases(t, s, n, want[n]...)
	}
}

func testDeleteApp(t *testing.T, s registry.Store) {
	for _, n := range []string{"doomed", "doomed-not", "kept"} {
		createApp(t, s, fullApp(n))
		putRelease(t, s, fullRelease(n, "r1", 1))
		putRelease(t, s, fullRelease(n, "r2", 2))
	}
	if err := s.DeleteApp(t.Context(), "doomed"); err != nil {
		t.Fatalf("DeleteApp: %v", err)
	}
	if _, err := s.GetApp(t.Context(), "doomed"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("GetApp after DeleteApp = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"r1", "r2"} {
		if _, err := s.GetRelease(t.Context(), "doomed", id); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("GetRelease(%s) after DeleteApp = %v, want ErrNotFound", id, err)
		}
	}
	apps, err := s.ListApps(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 2 || apps[0].Name != "doomed-not" || apps[1].Name != "kept" {
		t.Fatalf("ListApps after DeleteApp = %+v", apps)
	}
	for _, n := range []string{"doomed-not", "kept"} {
		checkReleases(t, s, n, fullRelease(n, "r2", 2), fullRelease(n, "r1", 1))
	}

	// A new app of the same name starts with no releases, and may reuse IDs.
	createApp(t, s, registry.App{Name: "doomed"})
	checkReleases(t, s, "doomed")
	putRelease(t, s, fullRelease("doomed", "r1", 1))
}

func testDeleteAppMissing(t *testing.T, s registry.Store) {
	createApp(t, s, registry.App{Name: "app"})
	if err := s.DeleteApp(t.Context(), "ghost"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("DeleteApp of a missing app = %v, want ErrNotFound", err)
	}
	if err := s.DeleteApp(t.Context(), "app"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteApp(t.Context(), "app"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second DeleteApp = %v, want ErrNotFound", err)
	}
}

// testConcurrentUpdateApp: read-modify-write through UpdateApp loses no update.
func testConcurrentUpdateApp(t *testing.T, s registry.Store) {
	const workers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				_, err := s.UpdateApp(t.Context(), "counter", true, func(a *registry.App) error {
					a.Version++
					if a.Env == nil {
						a.Env = map[string]string{}
					}
					a.Env[fmt.Sprintf("w%d", w)] = fmt.Sprint(i)
					return nil
				})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("UpdateApp: %v", err)
	}
	a := getApp(t, s, "counter")
	if a.Version != workers*each {
		t.Fatalf("Version = %d after %d increments: updates were lost", a.Version, workers*each)
	}
	for w := range workers {
		if got := a.Env[fmt.Sprintf("w%d", w)]; got != fmt.Sprint(each-1) {
			t.Errorf("Env[w%d] = %q, want %q", w, got, fmt.Sprint(each-1))
		}
	}
}

// testConcurrentPutRelease: of many PutRelease calls with one ID, exactly one wins.
func testConcurrentPutRelease(t *testing.T, s registry.Store) {
	createApp(t, s, registry.App{Name: "app"})
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = s.PutRelease(t.Context(), fullRelease("app", "contested", i+1)) })
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("PutRelease #%d and #%d both stored the same ID", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, registry.ErrExists):
			t.Fatalf("PutRelease #%d = %v, want nil or ErrExists", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no PutRelease succeeded")
	}
	checkReleases(t, s, "app", fullRelease("app", "contested", won+1))
}

func testCancelledContext(t *testing.T, s registry.Store) {
	createApp(t, s, fullApp("app"))
	putRelease(t, s, fullRelease("app", "r1", 1))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name string
		call func() error
	}{
		{"GetApp", func() error { _, err := s.GetApp(ctx, "app"); return err }},
		{"ListApps", func() error { _, err := s.ListApps(ctx); return err }},
		{"UpdateApp", func() error {
			_, err := s.UpdateApp(ctx, "app", false, func(a *registry.App) error {
				a.Version = 99
				return nil
			})
			return err
		}},
		{"UpdateApp create", func() error {
			_, err := s.UpdateApp(ctx, "new", true, func(*registry.App) error { return nil })
			return err
		}},
		{"DeleteApp", func() error { return s.DeleteApp(ctx, "app") }},
		{"PutRelease", func() error { return s.PutRelease(ctx, fullRelease("app", "r2", 2)) }},
		{"GetRelease", func() error { _, err := s.GetRelease(ctx, "app", "r1"); return err }},
		{"ListReleases", func() error { _, err := s.ListReleases(ctx, "app"); return err }},
		{"Join", func() error { _, err := s.Join(ctx, node("n"), time.Minute); return err }},
		{"Nodes", func() error { _, err := s.Nodes(ctx); return err }},
		{"WatchNodes", func() error {
			return s.WatchNodes(ctx, func([]registry.Node) { t.Error("WatchNodes called fn") })
		}},
		{"WatchApps", func() error {
			return s.WatchApps(ctx, func([]registry.AppEvent) { t.Error("WatchApps called fn") })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, context.Canceled) {
				t.Fatalf("%s with a cancelled context = %v, want context.Canceled", tt.name, err)
			}
		})
	}
	// Nothing the cancelled calls would have written is there.
	checkApp(t, "GetApp", getApp(t, s, "app"), fullApp("app"))
	if _, err := s.GetApp(t.Context(), "new"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("GetApp(new) = %v, want ErrNotFound", err)
	}
	checkReleases(t, s, "app", fullRelease("app", "r1", 1))
}

func testReopen(t *testing.T, s registry.Store, reopen func(*testing.T, registry.Store) registry.Store) {
	apps := []registry.App{fullApp("api"), fullApp("web"), {Name: "bare"}}
	for _, a := range apps {
		createApp(t, s, a)
	}
	rels := []registry.Release{fullRelease("web", "r2", 2), fullRelease("web", "r1", 1)}
	for _, r := range rels {
		putRelease(t, s, r)
	}
	if err := s.DeleteApp(t.Context(), "api"); err != nil {
		t.Fatal(err)
	}

	s = reopen(t, s)
	got, err := s.ListApps(t.Context())
	if err != nil {
		t.Fatalf("ListApps after reopen: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("ListApps after reopen has %d apps, want 2", len(got))
	}
	checkApp(t, "ListApps after reopen", got[0], apps[2])
	checkApp(t, "ListApps after reopen", got[1], apps[1])
	checkReleases(t, s, "web", rels...)
	if _, err := s.GetApp(t.Context(), "api"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("deleted app is back after reopen: %v", err)
	}

	// The reopened store is writable.
	if _, err := s.UpdateApp(t.Context(), "web", false, func(a *registry.App) error { a.Version++; return nil }); err != nil {
		t.Fatalf("UpdateApp after reopen: %v", err)
	}
	putRelease(t, s, fullRelease("web", "r3", 3))
}

func checkReleases(t *testing.T, s registry.Store, app string, want ...registry.Release) {
	t.Helper()
	got, err := s.ListReleases(t.Context(), app)
	if err != nil {
		t.Fatalf("ListReleases(%q): %v", app, err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListReleases(%q) returned %d releases %v, want %d %v", app, len(got), ids(got), len(want), ids(want))
	}
	for i := range got {
		checkRelease(t, fmt.Sprintf("ListReleases(%q)[%d]", app, i), got[i], want[i])
	}
}

func ids(rs []registry.Release) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s@v%d", r.ID, r.Version))
	}
	return out
}

func checkApp(t *testing.T, what string, got, want registry.App) {
	t.Helper()
	if g, w := normApp(got), normApp(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s = %+v,\nwant %+v", what, g, w)
	}
}

func checkRelease(t *testing.T, what string, got, want registry.Release) {
	t.Helper()
	if g, w := normRelease(got), normRelease(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("%s = %+v,\nwant %+v", what, g, w)
	}
}

// normApp puts a in the form the suite compares: times as UTC instants and a
// nil Env for an empty one.
func normApp(a registry.App) registry.App {
	if len(a.Env) == 0 {
		a.Env = nil
	}
	a.CreatedAt = a.CreatedAt.UTC()
	a.UpdatedAt = a.UpdatedAt.UTC()
	return a
}

func normRelease(r registry.Release) registry.Release {
	r.CreatedAt = r.CreatedAt.UTC()
	return r
}
