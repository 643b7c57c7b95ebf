package replica

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/snapshot"
)

// Checkpoints of paused agent sandboxes travel through the shared store
// the way app snapshots do (packed, one blob, verified on import), but
// they live in the sandbox manager's own snapshot store and are recorded
// on the sandbox (registry.Sandbox.Shared), not on an app: the sandbox
// package decides when to upload, fetch and forget them. These calls are
// the transport.

// PutCheckpoint packs the checkpoint want names from store and uploads it.
// It returns the reference to record; nothing refers to the blob until
// the caller records it (or calls ForgetCheckpoint).
func (r *Replica) PutCheckpoint(ctx context.Context, store *snapshot.Store, want snapshot.Want) (registry.SharedSnapshot, error) {
	m, _, _, err := store.Stat(want.Release)
	if err != nil {
		return registry.SharedSnapshot{}, fmt.Errorf("share checkpoint: %w", err)
	}
	digest, size, err := r.spoolPut(ctx, func(w io.Writer) error { return store.Export(ctx, want, w) })
	if err != nil {
		if !errors.As(err, new(notRemoteError)) && ctx.Err() == nil {
			r.failed(err)
		}
		return registry.SharedSnapshot{}, fmt.Errorf("share checkpoint %.12s with %s: %w", want.Release, r.cfg.RemoteName, err)
	}
	r.reached()
	r.snapUploads.Add(1)
	now := r.now().UTC()
	r.log.Info("replica: checkpoint uploaded", "owner", m.App, "checkpoint", want.Release, "packed", size, "bytes", m.Size())
	return registry.SharedSnapshot{Release: want.Release, Blob: digest, Size: size, Bytes: m.Size(), Node: r.cfg.Node, Uploaded: now, Used: now}, nil
}

// GetCheckpoint downloads the checkpoint ref names into store, verifying
// every part and that it is the checkpoint want names. Concurrent calls
// for one blob share one download. Errors wrap snapshot.ErrNotFound (the
// blob is gone), ErrUnavailable, or snapshot.ErrCorrupt (what arrived is
// damaged or not the checkpoint wanted); nothing is left in store then.
func (r *Replica) GetCheckpoint(ctx context.Context, store *snapshot.Store, ref registry.SharedSnapshot, want snapshot.Want) error {
	_, err := r.flight.Do(ctx, "checkpoint/"+ref.Blob, func(ctx context.Context) (any, error) {
		return nil, r.getCheckpoint(ctx, store, ref, want)
	})
	if err != nil && !errors.Is(err, snapshot.ErrNotFound) {
		r.fetchFailures.Add(1)
	}
	return err
}

func (r *Replica) getCheckpoint(ctx context.Context, store *snapshot.Store, ref registry.SharedSnapshot, want snapshot.Want) error {
	m, _, err := r.importBlob(ctx, store, ref.Blob, want)
	if err != nil {
		return fmt.Errorf("fetch checkpoint %.12s: %w", want.Release, err)
	}
	r.snapFetches.Add(1)
	r.log.Info("replica: checkpoint fetched", "owner", want.App, "checkpoint", want.Release, "packed", ref.Size, "bytes", m.Size(), "from", ref.Node)
	return nil
}

// ForgetCheckpoint queues the deletion of a checkpoint's blob from the
// shared store (durably: it is done even if the node restarts first),
// unless a sandbox record still refers to it when the task runs.
func (r *Replica) ForgetCheckpoint(owner string, ref registry.SharedSnapshot) error {
	_, err := r.box.add(task{Op: opDelete, App: owner, Digests: []string{ref.Blob}, Queued: r.now()})
	return err
}
