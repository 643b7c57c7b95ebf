package node

import (
	"context"
	"errors"
	"time"

	"github.com/frostdev/frost/internal/registry"
)

// Follow keeps the node's apps equal to the registry's until ctx ends: in
// a cluster, deploys, env changes and deletes made through other nodes
// reach this one. A new release is switched to lazily (its program loads,
// fetching its module if this node lacks it, on its first request here);
// requests in flight finish on the old one. On one machine every change
// is made through the one node and Follow has nothing to do.
func (n *Node) Follow(ctx context.Context) error {
	n.following.Store(true)
	defer n.following.Store(false)
	first := true
	err := n.reg.WatchApps(ctx, func(evs []registry.AppEvent) {
		if first {
			// The registry's apps as of one instant: what is not among
			// them was deleted while this node was not watching.
			first = false
			seen := map[string]bool{}
			for _, ev := range evs {
				seen[ev.App.Name] = true
			}
			for name := range *n.apps.Load() {
				if !seen[name] {
					n.dropApp(ctx, name)
				}
			}
		}
		for _, ev := range evs {
			n.applyApp(ctx, ev)
		}
	})
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// Requests for apps this node does not know, while it follows the
// registry.
const (
	// missWait bounds how long such a request waits for the watch to
	// bring an app the registry has.
	missWait = 2 * time.Second
	// missEvery and missBurst pace the registry reads they make: at most
	// one every missEvery, missBurst at once, so that a flood of requests
	// for names that exist nowhere is not a flood of reads of the
	// registry. Past them a request is told the app does not exist.
	missEvery = 5 * time.Millisecond
	missBurst = 20
)

// awaitApp finds an app this node does not know, for a request while the
// node follows the registry. A deploy made through another node reaches
// this one by the watch, some milliseconds after the deploy was answered
// (more on a loaded machine): a request in between, say the first one
// after `frost deploy` returned, must not be told the app does not
// exist. So awaitApp asks the registry, and when the app is there it
// waits up to missWait for the watch to bring it rather than loading it
// itself: the watch stays the one writer of the node's apps (an app read
// and added beside it could undo a delete the watch has already
// applied). known reports that the registry has the app, also when the
// wait ended first.
func (n *Node) awaitApp(ctx context.Context, name string) (a *app, known bool) {
	if !n.following.Load() || !n.missAllowed(time.Now()) {
		return nil, false
	}
	changed := n.changed()
	if a := n.lookup(name); a != nil {
		return a, true
	}
	// The read is bounded as the wait is: with etcd away it would take
	// the registry's own bound (5 s), for every name asked for.
	rctx, cancel := context.WithTimeout(ctx, missWait)
	ap, err := n.reg.GetApp(rctx, name)
	cancel()
	if err != nil || ap.Release == "" {
		if err != nil && !errors.Is(err, registry.ErrNotFound) && ctx.Err() == nil {
			n.log.Warn("request for an app this node does not know: reading the registry", "app", name, "err", err)
		}
		return nil, false
	}
	timer := time.NewTimer(missWait)
	defer timer.Stop()
	for {
		select {
		case <-changed:
		case <-timer.C:
			n.log.Warn("the registry has an app the watch has not brought", "app", name, "waited", missWait)
			return nil, true
		case <-ctx.Done():
			return nil, true
		}
		changed = n.changed()
		if a := n.lookup(name); a != nil {
			return a, true
		}
	}
}

// missAllowed takes one of awaitApp's registry reads, if one is left at
// now (a GCRA bucket: missBurst reads, one more every missEvery).
func (n *Node) missAllowed(now time.Time) bool {
	t := now.UnixNano()
	for {
		next := n.missNext.Load()
		if next-t > int64(missBurst-1)*int64(missEvery) {
			return false
		}
		if n.missNext.CompareAndSwap(next, max(next, t)+int64(missEvery)) {
			return true
		}
	}
}

// applyApp brings one app up to the registry's version of it.
func (n *Node) applyApp(ctx context.Context, ev registry.AppEvent) {
	name := ev.App.Name
	if ev.Deleted {
		n.dropApp(ctx, name)
		return
	}
	ap := ev.App
	if ap.Release == "" {
		return
	}
	unlock := n.lockApp(name)
	defer unlock()
	a := n.lookup(name)
	if a != nil && a.release.Load().ID == ap.Release {
		// Same release: only the environment may have moved.
		a.loadMu.Lock()
		a.setEnv(ap)
		if l := a.cur.Load(); l != nil {
			l.prog.SetEnv(a.env.Load().vars)
		}
		a.loadMu.Unlock()
		return
	}
	rel, err := n.reg.GetRelease(ctx, name, ap.Release)
	if err != nil {
		n.log.Warn("follow: release missing", "app", name, "release", ap.Release, "err", err)
		return
	}
	if a == nil {
		n.putApp(n.newApp(ap, rel))
		n.log.Info("follow: app", "app", name, "version", rel.Version, "release", shortID(rel.ID))
		return
	}
	a.loadMu.Lock()
	a.release.Store(&rel)
	a.setEnv(ap)
	n.setBootCounters(a, rel.Mode)
	if old := a.cur.Swap(nil); old != nil {
		old.retire()
	}
	if f := a.frozen; f != nil {
		a.frozen = nil
		f.prog.Close(ctx)
	}
	a.loadMu.Unlock()
	if n.snaps != nil {
		n.snaps.DeleteApp(name, rel.ID)
	}
	n.log.Info("follow: release", "app", name, "version", rel.Version, "release", shortID(rel.ID))
}

// dropApp forgets an app deleted elsewhere.
func (n *Node) dropApp(ctx context.Context, name string) {
	unlock := n.lockApp(name)
	defer unlock()
	if n.lookup(name) != nil {
		n.forgetApp(ctx, name)
	}
}
