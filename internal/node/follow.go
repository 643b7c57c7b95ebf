package node

import (
	"context"
	"errors"

	"github.com/frostdev/frost/internal/registry"
)

// Follow keeps the node's apps equal to the registry's until ctx ends: in
// a cluster, deploys, env changes and deletes made through other nodes
// reach this one. A new release is switched to lazily (its program loads,
// fetching its module if this node lacks it, on its first request here);
// requests in flight finish on the old one. On one machine every change
// is made through the one node and Follow has nothing to do.
func (n *Node) Follow(ctx context.Context) error {
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
