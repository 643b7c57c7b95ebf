package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/registry/etcd"
	"github.com/frostdev/frost/internal/registry/registrytest"
	"github.com/frostdev/frost/internal/testetcd"
)

// TestStore runs the contract suite against a real etcd. Every store gets
// its own prefix; a peer opens its own client on the same prefix through a
// TCP proxy, which Kill cuts, as a crash or a partition would.
func TestStore(t *testing.T) {
	endpoints := testetcd.Start(t)
	var n atomic.Int64
	var mu sync.Mutex
	proxies := map[registry.Store]*proxy{}
	registrytest.RunWith(t,
		func(t *testing.T) registry.Store {
			return open(t, endpoints, fmt.Sprintf("/frost-test-%d/", n.Add(1)))
		},
		registrytest.Options{
			Reopen: func(t *testing.T, s registry.Store) registry.Store {
				if err := s.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				return open(t, endpoints, s.(*etcd.Store).Prefix())
			},
			Peer: func(t *testing.T, s registry.Store) registry.Store {
				p := startProxy(t, strings.TrimPrefix(endpoints[0], "http://"))
				peer := open(t, []string{"http://" + p.addr()}, s.(*etcd.Store).Prefix())
				mu.Lock()
				proxies[peer] = p
				mu.Unlock()
				return peer
			},
			Kill: func(t *testing.T, s registry.Store) {
				mu.Lock()
				p := proxies[s]
				mu.Unlock()
				p.cut()
			},
		})
}

// open opens a store and closes it when the test ends.
func open(t *testing.T, endpoints []string, prefix string) *etcd.Store {
	t.Helper()
	s, err := etcd.Open(t.Context(), etcd.Options{Endpoints: endpoints, Prefix: prefix, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestOpenUnreachable: with no etcd, Open fails promptly and says what to do.
func TestOpenUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	start := time.Now()
	s, err := etcd.Open(t.Context(), etcd.Options{Endpoints: []string{endpoint}, DialTimeout: 500 * time.Millisecond})
	if err == nil {
		s.Close()
		t.Fatal("Open with no etcd succeeded")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Open took %v to fail", took)
	}
	t.Log(err)
	for _, want := range []string{endpoint, "is it running", "scripts/etcd.sh"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestOpenInvalidOptions(t *testing.T) {
	for _, prefix := range []string{"frost/", "/frost", "frost"} {
		if s, err := etcd.Open(t.Context(), etcd.Options{Prefix: prefix}); err == nil {
			s.Close()
			t.Errorf("Open with prefix %q succeeded", prefix)
		}
	}
	if s, err := etcd.Open(t.Context(), etcd.Options{DialTimeout: -time.Second}); err == nil {
		s.Close()
		t.Error("Open with a negative DialTimeout succeeded")
	}
	if s, err := etcd.Open(t.Context(), etcd.Options{OpTimeout: -time.Second}); err == nil {
		s.Close()
		t.Error("Open with a negative OpTimeout succeeded")
	}
}

// TestUnavailable: with etcd cut off, every kind of call (a read, a list,
// a transaction, a read-modify-write, a join) fails with ErrUnavailable
// once OpTimeout has passed, instead of waiting for etcd to come back; a
// caller's own deadline or cancellation is still reported as such. Once
// etcd is reachable again the store works.
func TestUnavailable(t *testing.T) {
	endpoints := testetcd.Start(t)
	p := startProxy(t, strings.TrimPrefix(endpoints[0], "http://"))
	s, err := etcd.Open(t.Context(), etcd.Options{Endpoints: []string{"http://" + p.addr()}, Prefix: "/unavailable/", OpTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if _, err := s.UpdateApp(ctx, "web", true, func(*registry.App) error { return nil }); err != nil {
		t.Fatal(err)
	}
	p.pause()
	calls := map[string]func(context.Context) error{
		"GetApp":   func(ctx context.Context) error { _, err := s.GetApp(ctx, "web"); return err },
		"ListApps": func(ctx context.Context) error { _, err := s.ListApps(ctx); return err },
		"PutRelease": func(ctx context.Context) error {
			return s.PutRelease(ctx, registry.Release{App: "web", ID: "r1"})
		},
		"UpdateApp": func(ctx context.Context) error {
			_, err := s.UpdateApp(ctx, "web", false, func(a *registry.App) error { a.Env = map[string]string{"A": "1"}; return nil })
			return err
		},
		"DeleteApp": func(ctx context.Context) error { return s.DeleteApp(ctx, "web") },
		"Join": func(ctx context.Context) error {
			_, err := s.Join(ctx, registry.Node{Name: "n1", HTTPAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2"}, 3*time.Second)
			return err
		},
	}
	for name, call := range calls {
		done := make(chan error, 1)
		go func() { done <- call(ctx) }()
		select {
		case err := <-done:
			if !errors.Is(err, registry.ErrUnavailable) {
				t.Errorf("%s with etcd cut off: %v, want ErrUnavailable", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s with etcd cut off still waiting after 30s", name)
		}
	}
	// The caller's deadline, shorter than OpTimeout, is the caller's.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.GetApp(short, "web"); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("GetApp past the caller's deadline: %v, want context.DeadlineExceeded", err)
	}
	p.resume()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, err := s.GetApp(ctx, "web")
		if err == nil {
			if a.Env != nil {
				t.Errorf("an update refused while etcd was away was applied: %+v", a)
			}
			break
		}
		if !errors.Is(err, registry.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("GetApp after etcd came back: %v", err)
		}
	}
}

// TestForeignData: what Frost did not write is reported, never misread.
func TestForeignData(t *testing.T) {
	endpoints := testetcd.Start(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	put := func(k, v string) {
		t.Helper()
		if _, err := cli.Put(t.Context(), k, v); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("newer schema", func(t *testing.T) {
		put("/newer/schema", "99")
		s, err := etcd.Open(t.Context(), etcd.Options{Endpoints: endpoints, Prefix: "/newer/"})
		if err == nil {
			s.Close()
			t.Fatal("Open of a newer schema succeeded")
		}
		if !strings.Contains(err.Error(), "upgrade frost") {
			t.Fatalf("Open = %v, want advice to upgrade", err)
		}
	})
	t.Run("corrupt values", func(t *testing.T) {
		s := open(t, endpoints, "/corrupt/")
		put("/corrupt/apps/web", "{not json")
		put("/corrupt/nodes/n1", "[]")
		if _, err := s.GetApp(t.Context(), "web"); !errors.Is(err, etcd.ErrCorrupt) {
			t.Errorf("GetApp = %v, want ErrCorrupt", err)
		}
		if _, err := s.ListApps(t.Context()); !errors.Is(err, etcd.ErrCorrupt) {
			t.Errorf("ListApps = %v, want ErrCorrupt", err)
		}
		if _, err := s.UpdateApp(t.Context(), "web", false, func(*registry.App) error { return nil }); !errors.Is(err, etcd.ErrCorrupt) {
			t.Errorf("UpdateApp = %v, want ErrCorrupt", err)
		}
		if _, err := s.Nodes(t.Context()); !errors.Is(err, etcd.ErrCorrupt) {
			t.Errorf("Nodes = %v, want ErrCorrupt", err)
		}
		err := s.WatchApps(t.Context(), func([]registry.AppEvent) { t.Error("WatchApps called fn") })
		if !errors.Is(err, etcd.ErrCorrupt) {
			t.Errorf("WatchApps = %v, want ErrCorrupt", err)
		}
	})
	t.Run("other prefixes are invisible", func(t *testing.T) {
		put("/frost-other/apps/web", `{"name":"web"}`)
		s := open(t, endpoints, "/frost/")
		if apps, err := s.ListApps(t.Context()); err != nil || len(apps) != 0 {
			t.Fatalf("ListApps = %+v, %v; want none", apps, err)
		}
	})
}

// TestCompactedWatch: a watch that must resume after the revisions it needs
// were compacted away reads the apps again and delivers the difference.
func TestCompactedWatch(t *testing.T) {
	endpoints := testetcd.Start(t)
	p := startProxy(t, strings.TrimPrefix(endpoints[0], "http://"))
	watcher := open(t, []string{"http://" + p.addr()}, "/frost/")
	writer := open(t, endpoints, "/frost/")
	for _, name := range []string{"kept", "changed", "deleted"} {
		if _, err := writer.UpdateApp(t.Context(), name, true, func(*registry.App) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	calls := make(chan []registry.AppEvent, 100)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- watcher.WatchApps(ctx, func(evs []registry.AppEvent) { calls <- evs }) }()
	defer func() { cancel(); <-done }()
	if first := <-calls; len(first) != 3 {
		t.Fatalf("first call = %+v, want 3 apps", first)
	}

	// Cut the watcher off, change things, compact the history away, heal.
	p.pause()
	if _, err := writer.UpdateApp(t.Context(), "changed", false, func(a *registry.App) error { a.Version = 5; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := writer.DeleteApp(t.Context(), "deleted"); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.UpdateApp(t.Context(), "new", true, func(*registry.App) error { return nil }); err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(t.Context(), "/frost/schema")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(t.Context(), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	p.resume()

	got := map[string]registry.AppEvent{}
	timeout := time.After(30 * time.Second)
	for len(got) < 3 {
		select {
		case evs := <-calls:
			for _, ev := range evs {
				got[ev.App.Name] = ev
			}
		case <-timeout:
			t.Fatalf("after the compaction the watch gave %+v, want changed, deleted and new", got)
		}
	}
	if ev := got["changed"]; ev.Deleted || ev.App.Version != 5 {
		t.Errorf("changed: %+v", ev)
	}
	if ev := got["deleted"]; !ev.Deleted {
		t.Errorf("deleted: %+v", ev)
	}
	if ev := got["new"]; ev.Deleted {
		t.Errorf("new: %+v", ev)
	}
	if _, ok := got["kept"]; ok || len(got) != 3 {
		t.Errorf("events for unchanged apps: %+v", got)
	}
}

// proxy forwards TCP connections to an etcd, and can cut them: a member
// behind a cut proxy is as good as dead to the cluster.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	paused bool
	closed bool
}

func startProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.paused || p.closed {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close(); c.Close() }()
		go func() { io.Copy(c, up); up.Close(); c.Close() }()
	}
}

// pause drops every connection and refuses new ones until resume.
func (p *proxy) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = false
}

// cut drops every connection for good.
func (p *proxy) cut() {
	p.pause()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.l.Close()
}
