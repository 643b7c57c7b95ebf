package node

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/snapshot"
)

// Scale to zero. An app whose program implements runtime.Freezer is frozen
// after Release.Idle without requests (or by FreezeApp): its snapshot is
// baked if the store has none for the release, then every instance and the
// memory they hold is dropped; only the compiled code stays (a.frozen). The
// next request wakes it: the snapshot is read and verified (package
// snapshot), restored without running init, handed the current environment,
// and passes the liveness gate before it serves (runtime.Freezer.Wake). A
// snapshot that is missing or fails any check is counted by reason, logged,
// quarantined (unless missing), and the app boots cold instead: a bad
// snapshot is never served.

// Fallback reasons, the label of frost_snapshot_fallbacks_total.
const (
	fallbackMissing      = "missing"
	fallbackCorrupt      = "corrupt"
	fallbackIncompatible = "incompatible"
	fallbackWrongRelease = "wrong_release"
	fallbackBadImage     = "bad_image"
	fallbackUnavailable  = "unavailable" // shared storage could not be reached
)

// fallbackReason names why a snapshot could not be used.
func fallbackReason(err error) string {
	switch {
	case errors.Is(err, errFetch) && !errors.Is(err, snapshot.ErrCorrupt):
		return fallbackUnavailable
	case errors.Is(err, snapshot.ErrNotFound):
		return fallbackMissing
	case errors.Is(err, snapshot.ErrIncompatible):
		return fallbackIncompatible
	case errors.Is(err, snapshot.ErrWrongRelease):
		return fallbackWrongRelease
	case errors.Is(err, runtime.ErrBadImage):
		return fallbackBadImage
	default:
		return fallbackCorrupt
	}
}

// want is what a release's snapshot must be.
func (n *Node) want(rel registry.Release) snapshot.Want {
	w := snapshot.Want{App: rel.App, Release: rel.ID, Runtime: rel.Runtime}
	if t, ok := n.rt.(runtime.Thawer); ok {
		w.RuntimeVersion = t.ImageVersion()
	}
	return w
}

// wake brings a frozen program to life: from the release's snapshot if it
// is sound, else cold. A node that lacks the snapshot pulls it from the
// cluster's shared storage first, if there is one. It returns the boot
// kind and the time the pull took.
func (n *Node) wake(ctx context.Context, a *app, rel registry.Release, prog runtime.Program) (runtime.Boot, time.Duration, error) {
	f := prog.(runtime.Freezer)
	var fetch time.Duration
	if n.snaps != nil {
		var bufs snapshot.Buffers
		if pb, ok := n.rt.(runtime.PartBuffers); ok {
			bufs = pb.PartBuffer
		}
		m, parts, err := n.snaps.GetInto(ctx, n.want(rel), bufs)
		lent := err == nil // read here for this wake alone: Wake takes the buffers over
		if errors.Is(err, snapshot.ErrNotFound) && n.cfg.Shared != nil {
			start := time.Now()
			fm, fparts, ferr := n.cfg.Shared.FetchSnapshot(ctx, rel.App, rel.ID)
			fetch = time.Since(start)
			switch {
			case ferr == nil:
				// Verified as it was imported: no need to read it back.
				m, parts, err = fm, fparts, n.want(rel).Match(fm)
			case errors.Is(ferr, snapshot.ErrNotFound):
				fetch = 0
			default:
				err = fmt.Errorf("%w: %w", errFetch, ferr)
			}
		}
		if err == nil {
			img := &runtime.Image{Version: m.RuntimeVersion, Meta: m.Meta, Parts: make(map[string][]byte, len(parts)), Lent: lent}
			for _, p := range parts {
				img.Parts[p.Name] = p.Data
			}
			var boot runtime.Boot
			if boot, err = f.Wake(ctx, img); err == nil {
				if n.cfg.Shared != nil {
					n.cfg.Shared.Woke(rel.App, rel.ID)
				}
				return boot, fetch, nil
			}
			if ctx.Err() != nil {
				return 0, 0, err
			}
		}
		n.fallback(a, rel, err)
	}
	boot, err := f.Wake(ctx, nil)
	return boot, fetch, err
}

// errFetch marks a snapshot that could not be pulled from shared storage.
var errFetch = errors.New("pulling the snapshot from shared storage failed")

// fallback records a snapshot that could not be used.
func (n *Node) fallback(a *app, rel registry.Release, err error) {
	reason := fallbackReason(err)
	a.fallbacks.add(reason)
	n.metrics.fallbacks.WithLabelValues(a.name, reason).Inc()
	msg := fmt.Sprintf("snapshot of release v%d not used (%s): %v; booting cold", rel.Version, reason, err)
	level := "warn"
	if reason == fallbackMissing || reason == fallbackUnavailable {
		level = "info"
	} else if qerr := n.snaps.Quarantine(rel.ID, err.Error()); qerr != nil && !errors.Is(qerr, snapshot.ErrNotFound) {
		n.log.Error("quarantine failed", "app", a.name, "release", rel.ID, "err", qerr)
	} else {
		msg += "; the snapshot was quarantined"
	}
	n.logs.add(api.LogLine{App: a.name, Release: rel.ID, Stream: "frost", Level: level, Message: msg})
	if reason == fallbackMissing {
		n.log.Info("no snapshot; booting cold", "app", a.name, "release", rel.ID)
	} else {
		n.log.Warn("bad snapshot; booting cold", "app", a.name, "release", rel.ID, "reason", reason, "err", err)
	}
}

// bake stores the release's snapshot if the store has none.
func (n *Node) bake(ctx context.Context, rel registry.Release, prog runtime.Program) error {
	f, ok := prog.(runtime.Freezer)
	if !ok || n.snaps == nil {
		return nil
	}
	if _, _, _, err := n.snaps.Stat(rel.ID); err == nil {
		return nil
	}
	img, err := f.Image()
	if err != nil || img == nil {
		return err
	}
	parts := make([]snapshot.Part, 0, len(img.Parts))
	for name, data := range img.Parts {
		parts = append(parts, snapshot.Part{Name: name, Data: data})
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Name < parts[j].Name })
	w := n.want(rel)
	_, err = n.snaps.Put(ctx, snapshot.Manifest{Runtime: w.Runtime, RuntimeVersion: img.Version, App: rel.App, Release: rel.ID, Meta: img.Meta}, parts)
	if err != nil {
		n.metrics.bakeFailures.Inc()
		return fmt.Errorf("bake snapshot: %w", err)
	}
	n.logs.add(api.LogLine{App: rel.App, Release: rel.ID, Stream: "frost", Level: "info",
		Message: fmt.Sprintf("snapshot of release v%d baked", rel.Version)})
	if n.cfg.Shared != nil {
		if err := n.cfg.Shared.Baked(rel.App, rel.ID); err != nil {
			n.log.Error("queueing a snapshot's upload", "app", rel.App, "release", rel.ID, "err", err)
		}
	}
	return nil
}

// freeze bakes the app's snapshot if needed and freezes its program. With
// idle set it gives up if a request arrived meanwhile. It reports whether
// the app is frozen now.
func (n *Node) freeze(ctx context.Context, a *app, idle bool) (bool, error) {
	a.loadMu.Lock()
	defer a.loadMu.Unlock()
	l := a.cur.Load()
	if l == nil {
		return true, nil
	}
	f, ok := l.prog.(runtime.Freezer)
	if !ok || (idle && a.inflight.Load() > 0) {
		return false, nil
	}
	a.cur.Store(nil)
	// Requests that took l before the swap finish on it; new ones wait
	// for loadMu in load.
	for l.refs.Load() > 0 {
		time.Sleep(200 * time.Microsecond)
	}
	l.once.Do(func() {}) // never closed: it is kept, frozen
	err := n.bake(ctx, l.rel, l.prog)
	if err != nil {
		n.log.Warn("freezing without a snapshot; the next wake boots cold", "app", a.name, "err", err)
	}
	f.Freeze()
	a.frozen = l
	a.frozenAt.Store(n.cfg.Now().UnixNano())
	a.freezes.Add(1)
	n.froze.Store(true)
	n.metrics.freezes.WithLabelValues(a.name).Inc()
	n.logs.add(api.LogLine{App: a.name, Release: l.rel.ID, Stream: "frost", Level: "info", Message: "frozen to zero"})
	return true, err
}

// FreezeApp freezes an app now (frost freeze NAME).
func (n *Node) FreezeApp(ctx context.Context, name string) (api.AppDetail, error) {
	a := n.lookup(name)
	if a == nil {
		if _, err := n.reg.GetApp(ctx, name); err != nil {
			return api.AppDetail{}, err
		}
		return api.AppDetail{}, fmt.Errorf("%w: app %q has no release to freeze; deploy one first", ErrInvalid, name)
	}
	if _, err := n.freeze(ctx, a, false); err != nil {
		return api.AppDetail{}, err
	}
	return n.App(ctx, name)
}

// WakeApp makes the app ready to serve now (thawing or booting it if it
// is frozen) without serving a request: a gateway calls it when a TLS
// handshake names the app, so that the wake overlaps the handshake. The
// next request reports the wake in Server-Timing as usual.
func (n *Node) WakeApp(ctx context.Context, name string) error {
	a := n.lookup(name)
	if a == nil {
		_, err := n.reg.GetApp(ctx, name)
		if err == nil {
			err = fmt.Errorf("%w: app %q has no release to wake; deploy one first", ErrInvalid, name)
		}
		return err
	}
	a.lastUsed.Store(n.cfg.Now().UnixNano())
	l, err := n.acquire(ctx, a)
	if err != nil {
		return err
	}
	l.release()
	return nil
}

// inWarmPool says whether this node keeps the app ready: it is among the
// first Warm nodes of the app's ring order (a cluster's warm pool).
func (n *Node) inWarmPool(a *app) bool {
	warm := a.release.Load().Warm
	return warm > 0 && n.cfg.WarmRank != nil && n.cfg.WarmRank(a.name) < warm
}

// wakeInBackground wakes the app unless a wake is already under way.
func (n *Node) wakeInBackground(a *app) {
	if !a.waking.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer a.waking.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if l, err := n.acquire(ctx, a); err != nil {
			n.log.Warn("warm pool: wake", "app", a.name, "err", err)
		} else {
			l.release()
		}
	}()
}

// Run freezes idle apps and reaps the snapshot store until ctx ends.
func (n *Node) Run(ctx context.Context) {
	tick := time.NewTicker(n.cfg.IdleCheck)
	defer tick.Stop()
	lastReap, lastReturn := n.cfg.Now(), time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := n.cfg.Now()
		for _, a := range *n.apps.Load() {
			if n.inWarmPool(a) {
				// Kept ready: woken if it is not, never idle-frozen.
				if a.cur.Load() == nil {
					n.wakeInBackground(a)
				}
				continue
			}
			l := a.cur.Load()
			if l == nil || l.rel.Idle <= 0 || a.inflight.Load() > 0 {
				continue
			}
			if now.Sub(time.Unix(0, a.lastUsed.Load())) >= l.rel.Idle {
				if _, err := n.freeze(ctx, a, true); err != nil {
					n.log.Warn("idle freeze", "app", a.name, "err", err)
				}
			}
		}
		n.trimFrozen()
		if now.Sub(lastReturn) >= returnMemoryEvery && n.froze.Swap(false) {
			lastReturn = now
			returnMemory()
		}
		if n.snaps != nil && now.Sub(lastReap) >= n.cfg.ReapEvery {
			lastReap = now
			n.reap(ctx)
		}
	}
}

// returnMemoryEvery bounds how often Run forces a collection after freezes.
const returnMemoryEvery = 5 * time.Second

// returnMemory collects garbage and returns free memory to the operating
// system. A freeze frees an app's instances (their Wasm memory is returned
// at once, see wasm.Freeze) and their Go-side state (stacks, tables,
// buffers); but the Go heap only shrinks at its next collection, which a
// server that has just gone quiet may not run for minutes, and the
// scavenger then returns pages slowly. Frozen must mean no memory, so after
// freezes Run collects and returns at once, at most every
// returnMemoryEvery: a few milliseconds of CPU, rarely.
func returnMemory() { debug.FreeOSMemory() }

// trimFrozen closes the compiled code of the least recently used frozen
// apps beyond MaxFrozenCode; they wake later from the compile cache.
func (n *Node) trimFrozen() {
	type fz struct {
		a    *app
		used int64
	}
	var list []fz
	for _, a := range *n.apps.Load() {
		a.loadMu.Lock()
		if a.frozen != nil {
			list = append(list, fz{a, a.lastUsed.Load()})
		}
		a.loadMu.Unlock()
	}
	if len(list) <= n.cfg.MaxFrozenCode {
		return
	}
	sort.Slice(list, func(i, j int) bool { return list[i].used < list[j].used })
	for _, f := range list[:len(list)-n.cfg.MaxFrozenCode] {
		f.a.loadMu.Lock()
		if l := f.a.frozen; l != nil {
			f.a.frozen = nil
			l.prog.Close(context.Background())
		}
		f.a.loadMu.Unlock()
	}
}

// reap removes snapshots of deleted apps and old releases, and those
// unused past the store's TTL.
func (n *Node) reap(ctx context.Context) {
	current := map[string]string{}
	for name, a := range *n.apps.Load() {
		current[name] = a.release.Load().ID
	}
	removed, err := n.snaps.Reap(ctx, func(app, release string) bool { return current[app] == release })
	if err != nil {
		n.log.Warn("snapshot reap", "err", err)
	}
	if len(removed) > 0 {
		n.log.Info("snapshots reaped", "count", len(removed))
	}
}

// fallbackCounts counts snapshot fallbacks by reason.
type fallbackCounts struct {
	counts [len(fallbackNames)]uint64 // guarded by the app's loadMu
}

var fallbackNames = [...]string{fallbackMissing, fallbackCorrupt, fallbackIncompatible, fallbackWrongRelease, fallbackBadImage, fallbackUnavailable}

func (c *fallbackCounts) add(reason string) {
	for i, r := range fallbackNames {
		if r == reason {
			c.counts[i]++
		}
	}
}

func (c *fallbackCounts) snapshot() map[string]uint64 {
	m := make(map[string]uint64, len(fallbackNames))
	for i, r := range fallbackNames {
		m[r] = c.counts[i]
	}
	return m
}
