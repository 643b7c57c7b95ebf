package bolt

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/frostdev/frost/internal/registry"
)

// One machine is a cluster of one process: members live in memory, and
// watchers are told about changes in-process. Nothing but the end of a
// Join's ctx (or Close, or a Join of the same name) can end a membership,
// since no process other than this one can hold the file; ttl is checked
// and otherwise unused.

// cluster is the in-memory half of a Store: its members and its watchers.
type cluster struct {
	// appMu serializes the app writes (UpdateApp, DeleteApp) with telling
	// the app watchers about them, so watchers see changes in commit order,
	// and WatchApps's initial read with its registration, so no change falls
	// between them. It guards appWatchers.
	appMu       sync.Mutex
	appWatchers map[*queue[registry.AppEvent]]struct{}

	// memberMu guards members and nodeWatchers.
	memberMu     sync.Mutex
	members      map[string]*member
	nodeWatchers map[*queue[[]registry.Node]]struct{}

	done  chan struct{} // closed by Close
	joins sync.WaitGroup
}

// member is one Join's membership.
type member struct {
	node     registry.Node
	ch       chan error    // Join's channel; its goroutine sends and closes
	replaced chan struct{} // closed when a later Join takes the name
}

func (c *cluster) init() {
	c.appWatchers = map[*queue[registry.AppEvent]]struct{}{}
	c.members = map[string]*member{}
	c.nodeWatchers = map[*queue[[]registry.Node]]struct{}{}
	c.done = make(chan struct{})
}

// closeCluster ends every membership and watch; Close calls it before it
// closes the file.
func (s *Store) closeCluster() {
	close(s.done)
	s.joins.Wait()
}

func (s *Store) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Join implements registry.Store. The membership lasts until ctx ends, Close,
// or a later Join of the same name.
func (s *Store) Join(ctx context.Context, n registry.Node, ttl time.Duration) (<-chan error, error) {
	if err := registry.CheckJoin(ctx, n, ttl); err != nil {
		return nil, err
	}
	m := &member{node: n, ch: make(chan error, 1), replaced: make(chan struct{})}
	s.memberMu.Lock()
	if s.closed() {
		s.memberMu.Unlock()
		return nil, fmt.Errorf("join %s: %w", n.Name, registry.ErrClosed)
	}
	if old := s.members[n.Name]; old != nil {
		close(old.replaced)
	}
	s.members[n.Name] = m
	s.notifyNodes()
	s.joins.Add(1)
	s.memberMu.Unlock()

	go func() {
		defer s.joins.Done()
		defer close(m.ch)
		select {
		case <-ctx.Done():
			s.leave(m)
		case <-m.replaced:
			m.ch <- fmt.Errorf("node %s: %w: replaced by a later Join of the same name", n.Name, registry.ErrMembershipLost)
		case <-s.done:
			s.leave(m)
			m.ch <- fmt.Errorf("node %s: %w: %w", n.Name, registry.ErrMembershipLost, registry.ErrClosed)
		}
	}()
	return m.ch, nil
}

// leave removes m's registration unless a later Join replaced it.
func (s *Store) leave(m *member) {
	s.memberMu.Lock()
	defer s.memberMu.Unlock()
	if s.members[m.node.Name] == m {
		delete(s.members, m.node.Name)
		s.notifyNodes()
	}
}

// Nodes implements registry.Store.
func (s *Store) Nodes(ctx context.Context) ([]registry.Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.memberMu.Lock()
	defer s.memberMu.Unlock()
	return s.nodeList(), nil
}

// nodeList returns the members sorted by name. memberMu must be held.
func (s *Store) nodeList() []registry.Node {
	nodes := make([]registry.Node, 0, len(s.members))
	for _, m := range s.members {
		nodes = append(nodes, m.node)
	}
	slices.SortFunc(nodes, func(a, b registry.Node) int { return cmp.Compare(a.Name, b.Name) })
	return nodes
}

// notifyNodes gives every node watcher the current list. memberMu must be held.
func (s *Store) notifyNodes() {
	for q := range s.nodeWatchers {
		q.push(s.nodeList())
	}
}

// WatchNodes implements registry.Store. Lists that queue up while fn runs
// are skipped but the last: each call has the newest list.
func (s *Store) WatchNodes(ctx context.Context, fn func([]registry.Node)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q := newQueue[[]registry.Node]()
	s.memberMu.Lock()
	if s.closed() {
		s.memberMu.Unlock()
		return fmt.Errorf("watch nodes: %w", registry.ErrClosed)
	}
	first := s.nodeList()
	s.nodeWatchers[q] = struct{}{}
	s.memberMu.Unlock()
	defer func() {
		s.memberMu.Lock()
		delete(s.nodeWatchers, q)
		s.memberMu.Unlock()
	}()

	fn(first)
	return serve(ctx, s.done, "watch nodes", q, func(lists [][]registry.Node) { fn(lists[len(lists)-1]) })
}

// WatchApps implements registry.Store.
func (s *Store) WatchApps(ctx context.Context, fn func([]registry.AppEvent)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed() {
		return fmt.Errorf("watch apps: %w", registry.ErrClosed)
	}
	q := newQueue[registry.AppEvent]()
	s.appMu.Lock()
	apps, err := s.ListApps(ctx)
	if err == nil {
		s.appWatchers[q] = struct{}{}
	}
	s.appMu.Unlock()
	if err != nil {
		return fmt.Errorf("watch apps: %w", err)
	}
	defer func() {
		s.appMu.Lock()
		delete(s.appWatchers, q)
		s.appMu.Unlock()
	}()

	first := make([]registry.AppEvent, 0, len(apps))
	for _, a := range apps {
		first = append(first, registry.AppEvent{App: a})
	}
	fn(first)
	return serve(ctx, s.done, "watch apps", q, fn)
}

// serve hands what arrives on q to deliver, in order and never empty,
// until ctx ends or the store closes (done).
func serve[T any](ctx context.Context, done <-chan struct{}, what string, q *queue[T], deliver func([]T)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return fmt.Errorf("%s: %w", what, registry.ErrClosed)
		case <-q.wake:
			if items := q.take(); len(items) > 0 {
				deliver(items)
			}
		}
	}
}

// notifyApps gives every app watcher ev, each its own copy. appMu must be
// held, and the change committed.
func (s *Store) notifyApps(ev registry.AppEvent) {
	for q := range s.appWatchers {
		ev := ev
		ev.App.Env = maps.Clone(ev.App.Env)
		q.push(ev)
	}
}

// queue is a watcher's unbounded queue: writers never wait for a slow fn.
type queue[T any] struct {
	mu    sync.Mutex
	items []T
	wake  chan struct{} // has a value when items may be non-empty
}

func newQueue[T any]() *queue[T] { return &queue[T]{wake: make(chan struct{}, 1)} }

func (q *queue[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue[T]) take() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}
