package registrytest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/registry"
)

// The cluster half of the suite: membership (Join, Nodes, WatchNodes) and
// app watches. With Options.Peer the changes are made through a second store
// on the registry and watched through the first, as two processes would.

// wait bounds how long the suite waits for something that should happen at
// once (a watch delivering a change): generous, for slow machines.
const wait = 10 * time.Second

// peerOr returns another store on s's registry, or s if the backend has none.
func peerOr(t *testing.T, s registry.Store, opts Options) registry.Store {
	if opts.Peer == nil {
		return s
	}
	return opts.Peer(t, s)
}

func node(name string) registry.Node {
	return registry.Node{Name: name, HTTPAddr: "10.0.0.1:80", APIAddr: "10.0.0.1:7946", Started: at}
}

// join makes n a member until the test ends, or cancel is called; cancel
// waits until the membership has ended and checks it ended without error.
func join(t *testing.T, s registry.Store, n registry.Node, ttl time.Duration) (ch <-chan error, cancel func()) {
	t.Helper()
	ctx, stop := context.WithCancel(t.Context())
	ch, err := s.Join(ctx, n, ttl)
	if err != nil {
		stop()
		t.Fatalf("Join(%s): %v", n.Name, err)
	}
	return ch, func() {
		t.Helper()
		stop()
		for err := range ch {
			t.Errorf("Join(%s)'s channel after its ctx ended: %v, want it closed with no error", n.Name, err)
		}
	}
}

func nodeNames(nodes []registry.Node) []string {
	names := []string{}
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	return names
}

func checkNodes(t *testing.T, s registry.Store, want ...string) {
	t.Helper()
	nodes, err := s.Nodes(t.Context())
	if err != nil {
		t.Fatalf("Nodes: %v", err)
	}
	if got := nodeNames(nodes); !slices.Equal(got, append([]string{}, want...)) {
		t.Fatalf("Nodes = %q, want %q", got, want)
	}
}

// eventually polls cond until it holds or wait passes.
func eventually(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > wait {
			t.Fatalf("%s: not after %v", what, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// recvErr returns the next value on a Join channel; ok is false if it closed.
func recvErr(t *testing.T, ch <-chan error, within time.Duration) (err error, ok bool) {
	t.Helper()
	select {
	case err, ok := <-ch:
		return err, ok
	case <-time.After(within):
		t.Fatalf("Join's channel: nothing after %v", within)
		return nil, false
	}
}

// watch runs a Watch method until the test ends, recording fn's calls.
type watch[T any] struct {
	calls  chan T
	done   chan error
	cancel context.CancelFunc
}

func startWatch[T any](t *testing.T, run func(ctx context.Context, fn func(T)) error, clone func(T) T) *watch[T] {
	ctx, cancel := context.WithCancel(t.Context())
	w := &watch[T]{calls: make(chan T, 10000), done: make(chan error, 1), cancel: cancel}
	go func() { w.done <- run(ctx, func(v T) { w.calls <- clone(v) }) }()
	t.Cleanup(func() {
		cancel()
		<-w.done
	})
	return w
}

func watchNodes(t *testing.T, s registry.Store) *watch[[]registry.Node] {
	return startWatch(t, s.WatchNodes, slices.Clone)
}

func watchApps(t *testing.T, s registry.Store) *watch[[]registry.AppEvent] {
	return startWatch(t, s.WatchApps, slices.Clone)
}

// next returns fn's next call.
func (w *watch[T]) next(t *testing.T) T {
	t.Helper()
	select {
	case v := <-w.calls:
		return v
	case err := <-w.done:
		t.Fatalf("watch returned early: %v", err)
	case <-time.After(wait):
		t.Fatalf("watch: no call after %v", wait)
	}
	panic("unreachable")
}

// stop ends the watch and checks that it returned ctx's error.
func (w *watch[T]) stop(t *testing.T) {
	t.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("watch after its ctx ended returned %v, want context.Canceled", err)
		}
		w.done <- err // for the cleanup
	case <-time.After(wait):
		t.Fatalf("watch did not return %v after its ctx ended", wait)
	}
}

// untilNodes reads node lists until one has exactly want, checking that
// every list is sorted.
func untilNodes(t *testing.T, w *watch[[]registry.Node], want ...string) {
	t.Helper()
	want = append([]string{}, want...)
	var last []string
	deadline := time.After(wait)
	for {
		select {
		case nodes := <-w.calls:
			last = nodeNames(nodes)
			if !slices.IsSorted(last) {
				t.Fatalf("WatchNodes gave %q, not sorted by name", last)
			}
			if slices.Equal(last, want) {
				return
			}
		case err := <-w.done:
			t.Fatalf("WatchNodes returned early: %v", err)
		case <-deadline:
			t.Fatalf("WatchNodes: no list %q after %v; the last was %q", want, wait, last)
		}
	}
}

func testJoin(t *testing.T, s registry.Store, opts Options) {
	other := peerOr(t, s, opts)
	checkNodes(t, s)
	b := node("b-2")
	b.Started = time.Now() // local zone and a monotonic reading
	_, leaveB := join(t, other, b, time.Minute)
	_, leaveA := join(t, s, node("a"), time.Minute)
	// Join returns once every store lists the member.
	for _, st := range []registry.Store{s, other} {
		nodes, err := st.Nodes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want := []registry.Node{node("a"), b}
		for i := range want {
			want[i].Started = want[i].Started.UTC()
		}
		for i := range nodes {
			nodes[i].Started = nodes[i].Started.UTC()
		}
		if !reflect.DeepEqual(nodes, want) {
			t.Fatalf("Nodes = %+v,\nwant %+v", nodes, want)
		}
	}
	leaveA()
	// The registration is gone when the channel closes, for every store.
	checkNodes(t, s, "b-2")
	checkNodes(t, other, "b-2")
	leaveB()
	checkNodes(t, s)
	checkNodes(t, other)
}

// testJoinReplaces: a second Join of a name takes over the registration; the
// first loses its membership, and its leaving later removes nothing.
func testJoinReplaces(t *testing.T, s registry.Store, opts Options) {
	other := peerOr(t, s, opts)
	first := node("n")
	ch1, leave1 := join(t, s, first, time.Minute)
	second := node("n")
	second.HTTPAddr = "10.0.0.2:80"
	_, leave2 := join(t, other, second, time.Minute)

	nodes, err := s.Nodes(t.Context())
	if err != nil || len(nodes) != 1 || nodes[0].HTTPAddr != second.HTTPAddr {
		t.Fatalf("Nodes after the second Join = %+v, %v; want only the second", nodes, err)
	}
	err, ok := recvErr(t, ch1, wait)
	if !ok || !errors.Is(err, registry.ErrMembershipLost) {
		t.Fatalf("the replaced Join's channel gave %v (open %v), want ErrMembershipLost", err, ok)
	}
	if _, ok := recvErr(t, ch1, wait); ok {
		t.Fatal("the replaced Join's channel is still open after its error")
	}
	leave1()
	nodes, err = s.Nodes(t.Context())
	if err != nil || len(nodes) != 1 || nodes[0].HTTPAddr != second.HTTPAddr {
		t.Fatalf("Nodes after the replaced Join's ctx ended = %+v, %v; want the second still", nodes, err)
	}
	leave2()
	checkNodes(t, s)
}

func testJoinInvalid(t *testing.T, s registry.Store) {
	for _, name := range []string{"", "Upper", "a_b", "a.b", "a b", "a/b", "ünï", strings.Repeat("a", 64)} {
		if ch, err := s.Join(t.Context(), node(name), time.Minute); err == nil {
			t.Errorf("Join(%q) succeeded", name)
			_ = ch
		}
	}
	for _, ttl := range []time.Duration{0, -time.Second} {
		if _, err := s.Join(t.Context(), node("ok"), ttl); err == nil {
			t.Errorf("Join with ttl %v succeeded", ttl)
		}
	}
	checkNodes(t, s)
	if err := registry.CheckNodeName(strings.Repeat("a", 63)); err != nil {
		t.Errorf("CheckNodeName of 63 letters: %v", err)
	}
	if err := registry.CheckNodeName("node-0-b"); err != nil {
		t.Errorf("CheckNodeName(node-0-b): %v", err)
	}
}

func testWatchNodes(t *testing.T, s registry.Store, opts Options) {
	other := peerOr(t, s, opts)
	w := watchNodes(t, s)
	if first := w.next(t); len(first) != 0 {
		t.Fatalf("WatchNodes's first call = %q, want no nodes", nodeNames(first))
	}
	_, leaveA := join(t, other, node("a"), time.Minute)
	untilNodes(t, w, "a")
	_, leaveB := join(t, other, node("b"), time.Minute)
	untilNodes(t, w, "a", "b")
	leaveA()
	untilNodes(t, w, "b")
	leaveB()
	untilNodes(t, w)

	// A watch started later gets the current list first.
	_, leaveC := join(t, other, node("c"), time.Minute)
	defer leaveC()
	if first := watchNodes(t, s).next(t); !slices.Equal(nodeNames(first), []string{"c"}) {
		t.Fatalf("WatchNodes's first call = %q, want [c]", nodeNames(first))
	}
	w.stop(t)
}

// testWatchApps: the first call is the apps as they are; then every change,
// in order, once, and nothing for what is not a change to an app.
func testWatchApps(t *testing.T, s registry.Store, opts Options) {
	other := peerOr(t, s, opts)
	empty := watchApps(t, s)
	if first := empty.next(t); len(first) != 0 {
		t.Fatalf("WatchApps's first call on no apps = %+v, want none", first)
	}

	createApp(t, other, fullApp("b"))
	createApp(t, other, registry.App{Name: "a"})
	putRelease(t, other, fullRelease("b", "r1", 1))
	w := watchApps(t, s)
	first := w.next(t)
	if len(first) != 2 || first[0].Deleted || first[1].Deleted {
		t.Fatalf("WatchApps's first call = %+v, want apps a and b", first)
	}
	checkApp(t, "first call [0]", first[0].App, registry.App{Name: "a"})
	checkApp(t, "first call [1]", first[1].App, fullApp("b"))

	a7, err := other.UpdateApp(t.Context(), "a", false, func(a *registry.App) error { a.Version = 7; return nil })
	if err != nil {
		t.Fatal(err)
	}
	createApp(t, other, registry.App{Name: "c"})
	putRelease(t, other, fullRelease("c", "r1", 1)) // not a change to an app
	if err := other.DeleteApp(t.Context(), "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.UpdateApp(t.Context(), "c", false, func(*registry.App) error { return errors.New("no") }); err == nil {
		t.Fatal("UpdateApp with a failing fn succeeded")
	}
	if err := other.DeleteApp(t.Context(), "ghost"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatal(err)
	}
	c2, err := other.UpdateApp(t.Context(), "c", false, func(a *registry.App) error { a.Version = 2; return nil })
	if err != nil {
		t.Fatal(err)
	}
	createApp(t, other, registry.App{Name: "z"}) // the last: nothing may come between

	want := []registry.AppEvent{
		{App: a7}, {App: registry.App{Name: "c"}}, {App: registry.App{Name: "b"}, Deleted: true},
		{App: c2}, {App: registry.App{Name: "z"}},
	}
	var got []registry.AppEvent
	for len(got) < len(want) {
		got = append(got, w.next(t)...)
	}
	if len(got) != len(want) {
		t.Fatalf("WatchApps gave %d events after the first call, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].Deleted != want[i].Deleted {
			t.Fatalf("event %d = %+v, want %+v", i, got[i], want[i])
		}
		checkApp(t, fmt.Sprintf("event %d", i), got[i].App, want[i].App)
	}

	// The events are the watcher's own copies.
	got[0].App.Env = map[string]string{"K": "changed"}
	checkApp(t, "GetApp", getApp(t, s, "a"), a7)
	w.stop(t)
	empty.stop(t)
}

// testWatchAppsConcurrent: two stores (when the backend has them) increment
// one app's Version while a watch starts: no increment is lost, and the
// watch sees the app at some version and then every later one, once each,
// in order.
func testWatchAppsConcurrent(t *testing.T, s registry.Store, opts Options) {
	const each = 50
	writers := []registry.Store{s, peerOr(t, s, opts)}
	var wg sync.WaitGroup
	errs := make(chan error, len(writers)*each)
	for _, st := range writers {
		wg.Go(func() {
			for range each {
				if _, err := st.UpdateApp(t.Context(), "counter", true, func(a *registry.App) error {
					a.Version++
					return nil
				}); err != nil {
					errs <- err
				}
			}
		})
	}
	w := watchApps(t, s) // races with the writers on purpose
	v := -1
	for _, ev := range w.next(t) {
		if ev.App.Name == "counter" {
			v = ev.App.Version
		}
	}
	if v == -1 {
		v = 0 // not created yet: the next event must be version 1
	}
	for v < len(writers)*each {
		for _, ev := range w.next(t) {
			if ev.Deleted || ev.App.Name != "counter" || ev.App.Version != v+1 {
				t.Fatalf("after version %d WatchApps gave %+v, want version %d", v, ev, v+1)
			}
			v++
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("UpdateApp: %v", err)
	}
	if a := getApp(t, s, "counter"); a.Version != len(writers)*each {
		t.Fatalf("Version = %d after %d increments: updates were lost", a.Version, len(writers)*each)
	}
	w.stop(t)
}

// testCloseEndsMemberships: Close ends the store's memberships, with an
// error on their channels, and its watches, with ErrClosed.
func testCloseEndsMemberships(t *testing.T, s registry.Store, opts Options) {
	subject := peerOr(t, s, opts)
	ch, err := subject.Join(t.Context(), node("closing"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	nodes := watchNodes(t, subject)
	apps := watchApps(t, subject)
	nodes.next(t)
	apps.next(t)
	if err := subject.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err, ok := recvErr(t, ch, wait)
	if !ok || !errors.Is(err, registry.ErrMembershipLost) || !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Join's channel after Close gave %v (open %v), want ErrMembershipLost and ErrClosed", err, ok)
	}
	if _, ok := recvErr(t, ch, wait); ok {
		t.Fatal("Join's channel is still open after Close")
	}
	for what, w := range map[string]chan error{"WatchNodes": nodes.done, "WatchApps": apps.done} {
		select {
		case err := <-w:
			if !errors.Is(err, registry.ErrClosed) {
				t.Errorf("%s after Close returned %v, want ErrClosed", what, err)
			}
			w <- err
		case <-time.After(wait):
			t.Fatalf("%s did not return after Close", what)
		}
	}
	if subject != s {
		// Close deregistered the member: it does not linger until its ttl.
		checkNodes(t, s)
	}
}

// testMemberDies: a member whose process dies (or is cut off from the
// registry) leaves within about its ttl, and its Join reports the loss; the
// others stay, and the name can join again.
func testMemberDies(t *testing.T, s registry.Store, opts Options) {
	const ttl = 2 * time.Second // etcd's minimum lease with its default timing
	victim := opts.Peer(t, s)
	_, leave := join(t, s, node("survivor"), ttl)
	defer leave()
	lost, err := victim.Join(t.Context(), node("victim"), ttl)
	if err != nil {
		t.Fatal(err)
	}
	w := watchNodes(t, s)
	untilNodes(t, w, "survivor", "victim")

	opts.Kill(t, victim)
	killed := time.Now()
	gone := eventually(t, "the killed member leaves", func() bool {
		nodes, err := s.Nodes(t.Context())
		return err == nil && slices.Equal(nodeNames(nodes), []string{"survivor"})
	})
	t.Logf("the killed member left after %v (ttl %v)", gone.Round(time.Millisecond), ttl)
	if limit := ttl + 1500*time.Millisecond; gone > limit {
		t.Errorf("the killed member left after %v, want within %v", gone, limit)
	}
	untilNodes(t, w, "survivor")

	err, ok := recvErr(t, lost, max(ttl+3*time.Second-time.Since(killed), 100*time.Millisecond))
	if !ok || !errors.Is(err, registry.ErrMembershipLost) {
		t.Fatalf("the killed member's Join channel gave %v (open %v), want ErrMembershipLost", err, ok)
	}
	t.Logf("the killed member's Join reported %q after %v", err, time.Since(killed).Round(time.Millisecond))

	// More than ttl has passed: the survivor's heartbeats keep it.
	checkNodes(t, s, "survivor")

	// The restarted process joins again.
	restarted := opts.Peer(t, s)
	_, leaveAgain := join(t, restarted, node("victim"), ttl)
	defer leaveAgain()
	checkNodes(t, s, "survivor", "victim")
	untilNodes(t, w, "survivor", "victim")
}
