package etcd

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/frostdev/frost/internal/registry"
)

// Join implements registry.Store. The node's key is attached to a lease of
// ttl (rounded up to whole seconds; etcd raises it to its minimum) that the
// client keeps alive every ttl/3. The membership is lost when the keepalives
// stop being answered for ttl (the lease expired, or may have), or when the
// key is deleted or taken by another lease (a later Join of the name).
func (s *Store) Join(ctx context.Context, n registry.Node, ttl time.Duration) (<-chan error, error) {
	if err := registry.CheckJoin(ctx, n, ttl); err != nil {
		return nil, err
	}
	data, err := json.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", n.Name, err)
	}
	octx, cancel := s.op(ctx)
	lease, err := s.cli.Grant(octx, int64((ttl+time.Second-1)/time.Second))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("join %s: grant lease: %w", n.Name, s.err(ctx, err))
	}
	// The keepalives and the watch of our own key live until the membership
	// ends, not until ctx does: after ctx ends we still revoke.
	kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	fail := func(what string, err error) (<-chan error, error) {
		stop()
		s.revoke(ctx, lease.ID)
		return nil, fmt.Errorf("join %s: %s: %w", n.Name, what, s.err(ctx, err))
	}
	ka, err := s.cli.KeepAlive(kctx, lease.ID)
	if err != nil {
		return fail("keep lease alive", err)
	}
	key := s.key("nodes", n.Name)
	octx, cancel = s.op(ctx)
	put, err := s.cli.Put(octx, key, string(data), clientv3.WithLease(lease.ID))
	cancel()
	if err != nil {
		return fail("register", err)
	}
	wch := s.cli.Watch(kctx, key, clientv3.WithRev(put.Header.Revision+1))

	s.mu.Lock()
	if s.closed() {
		s.mu.Unlock()
		return fail("register", registry.ErrClosed)
	}
	s.joins.Add(1)
	s.mu.Unlock()
	ch := make(chan error, 1)
	go func() {
		defer s.joins.Done()
		defer stop()
		err := s.keep(ctx, n.Name, lease.ID, ka, wch)
		if err == nil || errors.Is(err, registry.ErrClosed) {
			// ctx ended or the store is closing: deregister, then say so.
			s.revoke(ctx, lease.ID)
		}
		if err != nil {
			ch <- fmt.Errorf("node %s: %w: %w", n.Name, registry.ErrMembershipLost, err)
		}
		close(ch)
		if err != nil && !errors.Is(err, registry.ErrClosed) {
			// The lease expired or no longer holds the key; revoking it
			// makes sure it holds nothing else.
			s.revoke(ctx, lease.ID)
		}
	}()
	return ch, nil
}

// keep drains the keepalive responses until the membership ends: nil when
// ctx ended, else why it was lost.
func (s *Store) keep(ctx context.Context, name string, id clientv3.LeaseID, ka <-chan *clientv3.LeaseKeepAliveResponse, wch clientv3.WatchChan) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return registry.ErrClosed
		case _, ok := <-ka:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("lease %x expired: etcd did not answer its keepalives (is this node cut off from etcd?)", int64(id))
			}
		case wr, ok := <-wch:
			if !ok {
				wch = nil // the keepalives still watch over the lease
				continue
			}
			for _, ev := range wr.Events {
				switch {
				case ev.Type == mvccpb.DELETE:
					return fmt.Errorf("its registration was deleted")
				case ev.Kv.Lease != int64(id):
					return fmt.Errorf("replaced by a later Join of %s", name)
				}
			}
		}
	}
}

// revoke revokes a lease, deleting the keys attached to it, best effort: if
// etcd does not answer within revokeTimeout, the lease expires on its own.
func (s *Store) revoke(ctx context.Context, id clientv3.LeaseID) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	s.cli.Revoke(rctx, id) // best effort: see above
}

// Nodes implements registry.Store.
func (s *Store) Nodes(ctx context.Context) ([]registry.Node, error) {
	nodes, err := list[registry.Node](ctx, s, "nodes", "node")
	slices.SortFunc(nodes, func(a, b registry.Node) int { return cmp.Compare(a.Name, b.Name) })
	return nodes, err
}

// WatchNodes implements registry.Store.
func (s *Store) WatchNodes(ctx context.Context, fn func([]registry.Node)) error {
	nodes := map[string]registry.Node{} // by key
	call := func() {
		list := slices.SortedFunc(maps.Values(nodes), func(a, b registry.Node) int { return cmp.Compare(a.Name, b.Name) })
		if list == nil {
			list = []registry.Node{}
		}
		fn(list)
	}
	err := s.watchDir(ctx, "nodes",
		func(kvs []*mvccpb.KeyValue) error {
			clear(nodes)
			for _, kv := range kvs {
				var n registry.Node
				if err := decode(kv, &n); err != nil {
					return err
				}
				nodes[string(kv.Key)] = n
			}
			call()
			return nil
		},
		func(evs []*clientv3.Event) error {
			for _, ev := range evs {
				if ev.Type == mvccpb.DELETE {
					delete(nodes, string(ev.Kv.Key))
					continue
				}
				var n registry.Node
				if err := decode(ev.Kv, &n); err != nil {
					return err
				}
				nodes[string(ev.Kv.Key)] = n
			}
			call()
			return nil
		})
	return wrapErr("watch nodes", err)
}

// WatchApps implements registry.Store. The first call of fn is one read of
// the apps at revision R; the watch then starts at R+1. If etcd compacted
// away revisions the watch still needs (after a long disconnection), the
// apps are read again and fn gets the difference.
func (s *Store) WatchApps(ctx context.Context, fn func([]registry.AppEvent)) error {
	known := map[string]int64{} // key → mod revision, as fn last heard
	first := true
	err := s.watchDir(ctx, "apps",
		func(kvs []*mvccpb.KeyValue) error {
			var evs []registry.AppEvent
			now := map[string]int64{}
			for _, kv := range kvs {
				now[string(kv.Key)] = kv.ModRevision
				if known[string(kv.Key)] == kv.ModRevision {
					continue
				}
				var a registry.App
				if err := decode(kv, &a); err != nil {
					return err
				}
				evs = append(evs, registry.AppEvent{App: a})
			}
			slices.SortFunc(evs, func(a, b registry.AppEvent) int { return cmp.Compare(a.App.Name, b.App.Name) })
			for k := range known {
				if _, ok := now[k]; !ok {
					evs = append(evs, registry.AppEvent{App: registry.App{Name: s.nameOf("apps", []byte(k))}, Deleted: true})
				}
			}
			known = now
			if first || len(evs) > 0 {
				if evs == nil {
					evs = []registry.AppEvent{}
				}
				first = false
				fn(evs)
			}
			return nil
		},
		func(wevs []*clientv3.Event) error {
			evs := make([]registry.AppEvent, 0, len(wevs))
			for _, ev := range wevs {
				k := string(ev.Kv.Key)
				if ev.Type == mvccpb.DELETE {
					delete(known, k)
					evs = append(evs, registry.AppEvent{App: registry.App{Name: s.nameOf("apps", ev.Kv.Key)}, Deleted: true})
					continue
				}
				var a registry.App
				if err := decode(ev.Kv, &a); err != nil {
					return err
				}
				known[k] = ev.Kv.ModRevision
				evs = append(evs, registry.AppEvent{App: a})
			}
			fn(evs)
			return nil
		})
	return wrapErr("watch apps", err)
}

// watchDir reads the directory kind and gives its entries to reset, then
// watches it from the next revision and gives apply the events of each watch
// response (in revision order, never empty), until ctx ends, the store is
// closed, or reset, apply or the watch fail. When etcd ends the watch
// (leader lost) it resumes after the last event seen; when the revisions it
// needs were compacted it reads the directory again and calls reset.
func (s *Store) watchDir(ctx context.Context, kind string, reset func([]*mvccpb.KeyValue) error, apply func([]*clientv3.Event) error) error {
	dir := s.dir(kind)
	var rev int64 // the revision that reset or apply last saw
	relist := true
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.closed() {
			return registry.ErrClosed
		}
		if relist {
			octx, cancel := s.op(ctx)
			resp, err := s.cli.Get(octx, dir, clientv3.WithPrefix())
			cancel()
			if err != nil {
				return s.err(ctx, err)
			}
			if err := reset(resp.Kvs); err != nil {
				return err
			}
			rev, relist = resp.Header.Revision, false
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, dir, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		var werr error
		for wr := range wch {
			if wr.CompactRevision != 0 {
				relist = true
				break
			}
			if err := wr.Err(); err != nil {
				werr = err
				break
			}
			if len(wr.Events) == 0 {
				continue
			}
			if err := apply(wr.Events); err != nil {
				cancel()
				return err
			}
			rev = wr.Events[len(wr.Events)-1].Kv.ModRevision
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case s.closed() || s.cli.Ctx().Err() != nil:
			return registry.ErrClosed
		case werr != nil && !errors.Is(werr, rpctypes.ErrNoLeader):
			return werr
		case !relist:
			// etcd ended the watch (no leader, or the stream broke):
			// resume after the last event, once a leader may be back.
			select {
			case <-ctx.Done():
			case <-s.done:
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// wrapErr adds what to errors other than ctx's.
func wrapErr(what string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}
