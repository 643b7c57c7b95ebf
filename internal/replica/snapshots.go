package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/frostdev/frost/internal/blob"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/snapshot"
)

// errMoved: the app no longer wants this snapshot recorded.
var errMoved = errors.New("app moved on")

// Baked queues the upload of a snapshot the node has just stored.
func (r *Replica) Baked(app, release string) error {
	var size int64
	if _, s, _, err := r.cfg.Snapshots.Stat(release); err == nil {
		size = s
	}
	_, err := r.box.add(task{Op: opSnapshot, App: app, Release: release, Size: size, Queued: r.now()})
	return err
}

// uploadSnapshot packs the node's snapshot of release, uploads it, and
// records it on the app, unless the app moved to another release or
// already records one (another node's) meanwhile.
func (r *Replica) uploadSnapshot(ctx context.Context, app, release string) error {
	m, _, _, err := r.cfg.Snapshots.Stat(release)
	if err != nil {
		if errors.Is(err, snapshot.ErrNotFound) || errors.Is(err, snapshot.ErrCorrupt) || errors.Is(err, snapshot.ErrIncompatible) {
			return fmt.Errorf("%w: %w", errDrop, err)
		}
		return notRemote(err)
	}
	ap, err := r.cfg.Registry.GetApp(ctx, app)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return fmt.Errorf("%w: app %s was deleted", errDrop, app)
	case err != nil:
		return notRemote(err)
	case ap.Release != release:
		return fmt.Errorf("%w: app %s moved to another release", errDrop, app)
	case ap.Snapshot != nil && ap.Snapshot.Release == release:
		return nil // another node's upload got there first
	}

	// Packed into a spool file, then uploaded (spoolPut).
	want := snapshot.Want{App: m.App, Release: m.Release, Runtime: m.Runtime, RuntimeVersion: m.RuntimeVersion}
	digest, size, err := r.spoolPut(ctx, func(w io.Writer) error { return r.cfg.Snapshots.Export(ctx, want, w) })
	if errors.Is(err, snapshot.ErrNotFound) || errors.Is(err, snapshot.ErrCorrupt) {
		return fmt.Errorf("%w: %w", errDrop, err)
	}
	if err != nil {
		return err
	}
	ref := &registry.SharedSnapshot{Release: release, Blob: digest, Size: size, Bytes: m.Size(),
		Node: r.cfg.Node, Uploaded: r.now().UTC(), Used: r.now().UTC()}
	var stale *registry.SharedSnapshot
	_, err = r.cfg.Registry.UpdateApp(ctx, app, false, func(a *registry.App) error {
		stale = nil
		if a.Release != release || a.Snapshot != nil && a.Snapshot.Release == release {
			return errMoved
		}
		stale = a.Snapshot
		a.Snapshot = ref
		return nil
	})
	switch {
	case errors.Is(err, errMoved) || errors.Is(err, registry.ErrNotFound):
		// Nothing refers to the upload unless another node's has the
		// same bytes.
		if cur, gerr := r.cfg.Registry.GetApp(ctx, app); gerr != nil || cur.Snapshot == nil || cur.Snapshot.Blob != digest {
			r.cfg.Remote.Delete(ctx, digest)
		}
		return nil
	case err != nil:
		return notRemote(err)
	}
	r.snapUploads.Add(1)
	r.log.Info("replica: snapshot uploaded", "app", app, "release", release, "packed", size, "bytes", m.Size())
	if stale != nil && stale.Blob != digest {
		r.box.add(task{Op: opDelete, App: app, Digests: []string{stale.Blob}, Queued: r.now()})
	}
	return nil
}

// FetchSnapshot pulls the shared snapshot of app's release into the
// node's snapshot store, verifying every part as it is imported. Any
// number of concurrent calls for one release share one download. The
// error wraps snapshot.ErrNotFound if the registry records no shared
// snapshot of the release, ErrUnavailable if the shared store cannot be
// reached, snapshot.ErrCorrupt (or blob.ErrDigestMismatch) if what
// arrived is damaged; the caller then boots cold.
//
// It returns the snapshot as imported, verified, for the caller to restore
// without reading it back; callers sharing a download share its parts,
// which none may modify.
func (r *Replica) FetchSnapshot(ctx context.Context, app, release string) (snapshot.Manifest, []snapshot.Part, error) {
	v, err := r.flight.Do(ctx, "snapshot/"+release, func(ctx context.Context) (any, error) {
		m, parts, err := r.fetchSnapshot(ctx, app, release)
		return &fetched{m, parts}, err
	})
	if err != nil {
		if !errors.Is(err, snapshot.ErrNotFound) {
			r.fetchFailures.Add(1)
		}
		return snapshot.Manifest{}, nil, err
	}
	got := v.(*fetched)
	return got.m, got.parts, nil
}

type fetched struct {
	m     snapshot.Manifest
	parts []snapshot.Part
}

func (r *Replica) fetchSnapshot(ctx context.Context, app, release string) (snapshot.Manifest, []snapshot.Part, error) {
	fail := func(err error) (snapshot.Manifest, []snapshot.Part, error) { return snapshot.Manifest{}, nil, err }
	ap, err := r.cfg.Registry.GetApp(ctx, app)
	if err != nil {
		return fail(fmt.Errorf("fetch snapshot: %w", err))
	}
	ref := ap.Snapshot
	if ref == nil || ref.Release != release {
		return fail(fmt.Errorf("%w: no shared snapshot of release %.12s", snapshot.ErrNotFound, release))
	}
	m, parts, err := r.importBlob(ctx, r.cfg.Snapshots, ref.Blob, snapshot.Want{App: app, Release: release})
	if err != nil {
		if errors.Is(err, snapshot.ErrNotFound) || errors.Is(err, snapshot.ErrCorrupt) {
			// Gone or damaged in the shared store: forget it, so that
			// the next bake uploads a sound one and no other node tries
			// it.
			r.forgetShared(ctx, app, ref)
		}
		return fail(fmt.Errorf("fetch snapshot %.12s: %w", release, err))
	}
	r.snapFetches.Add(1)
	r.log.Info("replica: snapshot fetched", "app", app, "release", release, "packed", ref.Size, "bytes", m.Size(), "from", ref.Node)
	return m, parts, nil
}

// importBlob imports the packed snapshot in blob digest of the shared
// store into store, and checks that it is the one want names (App and
// Release; Runtime and RuntimeVersion too if set). It returns the
// snapshot as imported, verified. Errors wrap snapshot.ErrNotFound (the
// blob is missing), ErrUnavailable, or snapshot.ErrCorrupt (anything
// wrong with what arrived: damaged, incompatible, another snapshot);
// nothing stays in store then.
func (r *Replica) importBlob(ctx context.Context, store *snapshot.Store, digest string, want snapshot.Want) (snapshot.Manifest, []snapshot.Part, error) {
	rc, _, err := r.openRemote(ctx, func(ctx context.Context) (io.ReadCloser, blob.Info, error) {
		return r.cfg.Remote.Open(ctx, digest)
	})
	if errors.Is(err, blob.ErrNotFound) {
		return snapshot.Manifest{}, nil, fmt.Errorf("%w: blob %.12s is missing from %s", snapshot.ErrNotFound, digest, r.cfg.RemoteName)
	}
	if err != nil {
		return snapshot.Manifest{}, nil, err
	}
	defer rc.Close()
	m, parts, err := store.Import(ctx, rc, r.cfg.MaxSnapshotBytes)
	if err == nil {
		if m.App != want.App || m.Release != want.Release ||
			want.Runtime != "" && m.Runtime != want.Runtime || want.RuntimeVersion != "" && m.RuntimeVersion != want.RuntimeVersion {
			err = fmt.Errorf("%w: the shared blob holds %q %.12s (%s %s)", snapshot.ErrWrongRelease, m.App, m.Release, m.Runtime, m.RuntimeVersion)
		} else {
			// The blob's own SHA-256 is checked at its end: read past
			// the packed stream's last byte.
			_, err = io.Copy(io.Discard, rc)
		}
		if err != nil {
			store.Delete(m.Release)
		}
	}
	if err != nil {
		if !errors.Is(err, snapshot.ErrCorrupt) && (errors.Is(err, blob.ErrDigestMismatch) || errors.Is(err, snapshot.ErrIncompatible) || errors.Is(err, snapshot.ErrWrongRelease)) {
			err = fmt.Errorf("%w: %w", snapshot.ErrCorrupt, err)
		}
		return snapshot.Manifest{}, nil, fmt.Errorf("from %s: %w", r.cfg.RemoteName, err)
	}
	return m, parts, nil
}

// forgetShared clears the app's shared snapshot if it is still ref, and
// queues the deletion of its blob.
func (r *Replica) forgetShared(ctx context.Context, app string, ref *registry.SharedSnapshot) bool {
	cleared := false
	_, err := r.cfg.Registry.UpdateApp(ctx, app, false, func(a *registry.App) error {
		cleared = false
		if a.Snapshot == nil || a.Snapshot.Blob != ref.Blob || a.Snapshot.Release != ref.Release {
			return errMoved
		}
		a.Snapshot = nil
		cleared = true
		return nil
	})
	if err != nil || !cleared {
		return false
	}
	r.box.add(task{Op: opDelete, App: app, Digests: []string{ref.Blob}, Queued: r.now()})
	return true
}

// Woke records that the node woke app's release from a snapshot, so that
// the sweep does not drop the shared copy as unused. It writes the
// registry at most once per tenth of the TTL per app.
func (r *Replica) Woke(app, release string) {
	if r.cfg.TTL <= 0 {
		return
	}
	every := r.cfg.TTL / 10
	now := r.now()
	key := app + "/" + release
	r.usedMu.Lock()
	if last, ok := r.used[key]; ok && now.Sub(last) < every {
		r.usedMu.Unlock()
		return
	}
	r.used[key] = now
	r.usedMu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.cfg.Registry.UpdateApp(ctx, app, false, func(a *registry.App) error {
			if a.Snapshot == nil || a.Snapshot.Release != release || now.Sub(a.Snapshot.Used) < every {
				return errMoved
			}
			a.Snapshot.Used = now.UTC()
			return nil
		})
	}()
}

func (r *Replica) sweepLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.SweepEvery)
	defer t.Stop()
	for {
		if err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("replica: sweep", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep drops shared snapshots of apps that moved to another release or
// were not woken from for TTL, and queues the upload of this node's
// snapshot of an app's current release when the registry records none.
// Every node sweeps; each change is conditional, so they do not collide.
func (r *Replica) Sweep(ctx context.Context) error {
	apps, err := r.cfg.Registry.ListApps(ctx)
	if err != nil {
		return err
	}
	now := r.now()
	for _, ap := range apps {
		ref := ap.Snapshot
		switch {
		case ref != nil && ref.Release != ap.Release:
			r.forgetShared(ctx, ap.Name, ref)
		case ref != nil && r.cfg.TTL > 0 && now.Sub(latest(ref.Used, ref.Uploaded)) > r.cfg.TTL:
			if r.forgetShared(ctx, ap.Name, ref) {
				r.log.Info("replica: shared snapshot reaped", "app", ap.Name, "release", ref.Release, "unused", now.Sub(latest(ref.Used, ref.Uploaded)).Round(time.Second))
			}
		case ref == nil && ap.Release != "":
			if m, _, used, err := r.cfg.Snapshots.Stat(ap.Release); err == nil && m.App == ap.Name &&
				(r.cfg.TTL <= 0 || now.Sub(used) <= r.cfg.TTL) {
				r.Baked(ap.Name, ap.Release)
			}
		}
	}
	return nil
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
