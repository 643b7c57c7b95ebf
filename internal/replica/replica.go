// Package replica keeps a cluster node's local stores in step with the
// cluster's shared blob store (S3): what the node writes is uploaded, what
// it lacks is fetched, what the cluster deletes goes.
//
//   - Blobs (modules, assets) are written to the node's own store and their
//     upload queued; a blob the node lacks is fetched from the shared store
//     (then from peers), verified, and kept in a local cache whose size is
//     capped (least recently used first out, never a blob still queued).
//   - A snapshot baked on a node is packed (package snapshot: sparse
//     extents, zstd), uploaded as one blob, and recorded on the app in the
//     registry (registry.App.Snapshot). A node asked to wake an app whose
//     snapshot it lacks pulls it (FetchSnapshot): one download for any
//     number of concurrent wakes, every part verified on import; any
//     failure is an error, and the caller boots cold.
//   - Deleting an app queues the deletion of its blobs, done when no other
//     release refers to them; the sweep drops shared snapshots of apps
//     that moved to another release or were not woken for Config.TTL, and
//     re-queues the upload of a snapshot the node has that the registry
//     does not record.
//
// # Nothing lost
//
// Uploads and deletions go through the outbox: one file per task in
// DIR/outbox, written durably before the call that queued it returns, and
// removed only once the task is done. One worker runs the tasks in order;
// a task that fails for a reason that may pass (the shared store or the
// registry unreachable) is retried with backoff, forever, and holds the
// tasks behind it; one that can never succeed (its local source is gone)
// is dropped and logged. So while the shared store is down the node keeps
// serving from its caches, deploys still land, the backlog grows (Status,
// `frost status`, frost_replica_backlog_tasks) and drains when the store
// is back. A blob stays in the local cache until its upload is done.
package replica

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"

	wire "github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/blob"
	"github.com/frostdev/frost/internal/flight"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/snapshot"
)

// ErrUnavailable: the shared store could not be reached (or is known to be
// down). Checked with errors.Is.
var ErrUnavailable = errors.New("shared storage unavailable")

// errDrop marks a task that can never succeed: it is dropped, not retried.
var errDrop = errors.New("task dropped")

// notRemoteError marks a task's failure that is not the shared store's
// (the registry's, or this node's disk): the task is retried, but the
// store is not taken for down, so fetches from it go on.
type notRemoteError struct{ err error }

func (e notRemoteError) Error() string { return e.err.Error() }
func (e notRemoteError) Unwrap() error { return e.err }

// notRemote marks err (nil stays nil) as not the shared store's.
func notRemote(err error) error {
	if err == nil {
		return nil
	}
	return notRemoteError{err}
}

// Config configures a Replica. Zero fields take the defaults their
// comments give.
type Config struct {
	// Dir holds the outbox and upload spool files. Required.
	Dir string
	// Node is this node's name, recorded on the snapshots it uploads.
	Node string
	// Local is the node's own blob store; Remote the cluster's shared one;
	// RemoteName describes Remote in messages ("s3://bucket at host").
	// Local and Remote are required.
	Local      blob.Store
	Remote     Remote
	RemoteName string
	// Fallback, if set, is read from, and its blob verified and copied
	// into Local, when the shared store cannot give a blob
	// (peer.Store over Local: a blob whose upload is queued on another
	// node is still reachable there).
	Fallback blob.Store
	// Snapshots is the node's snapshot store. Required.
	Snapshots *snapshot.Store
	// Registry records the shared snapshots. Required.
	Registry registry.Store
	// CacheBytes caps the local blob store; 0: no cap.
	CacheBytes int64
	// TTL drops a shared snapshot not woken from for this long; 0: never.
	TTL time.Duration
	// MaxSnapshotBytes refuses to import a snapshot whose parts add up to
	// more (default 8 GiB).
	MaxSnapshotBytes int64
	// OpenTimeout bounds the wait for the shared store to start answering
	// a fetch a request waits on (default 5s).
	OpenTimeout time.Duration
	// SweepEvery is how often the sweep runs (default 1 minute).
	SweepEvery time.Duration
	// Backoff is the first retry delay of a failed task, doubling up to
	// MaxBackoff (defaults 250ms and 5s).
	Backoff, MaxBackoff time.Duration
	Logger              *slog.Logger
	Now                 func() time.Time
}

// Remote is the shared store: content-addressed blobs, and small named
// references to them (s3.Store).
type Remote interface {
	blob.Store
	PutRef(ctx context.Context, name, digest string) error
	GetRef(ctx context.Context, name string) (string, error)
	DeleteRef(ctx context.Context, name string) error
}

// Replica is a node's link to the shared store. Run does its background
// work; the rest is safe for concurrent use.
type Replica struct {
	cfg   Config
	log   *slog.Logger
	box   *outbox
	cache cache

	flight flight.Group // one fetch per blob or snapshot at a time

	downUntil atomic.Pointer[time.Time] // the shared store failed: fail fetches fast until then
	errMu     sync.Mutex
	lastErr   string
	lastErrAt time.Time

	usedMu sync.Mutex
	used   map[string]time.Time // app/release → last Used recorded

	uploads, snapUploads, fetches, snapFetches, fetchFailures, deletes, evictions, dropped atomic.Int64
}

// New opens the outbox in cfg.Dir (tasks a crash left are run again) and
// indexes the local blob cache.
func New(ctx context.Context, cfg Config) (*Replica, error) {
	switch {
	case cfg.Dir == "":
		return nil, errors.New("replica: no directory")
	case cfg.Local == nil || cfg.Remote == nil || cfg.Snapshots == nil || cfg.Registry == nil:
		return nil, errors.New("replica: Local, Remote, Snapshots and Registry are required")
	}
	if cfg.RemoteName == "" {
		cfg.RemoteName = "shared storage"
	}
	if cfg.MaxSnapshotBytes <= 0 {
		cfg.MaxSnapshotBytes = 8 << 30
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = 5 * time.Second
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = time.Minute
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.Backoff {
		cfg.MaxBackoff = max(5*time.Second, cfg.Backoff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	box, err := openOutbox(filepath.Join(cfg.Dir, "outbox"))
	if err != nil {
		return nil, err
	}
	// Spool files of uploads a crash interrupted: their tasks pack again.
	if old, err := filepath.Glob(filepath.Join(cfg.Dir, ".spool-*")); err == nil {
		for _, f := range old {
			os.Remove(f)
		}
	}
	r := &Replica{cfg: cfg, log: cfg.Logger, box: box, cache: cache{used: map[string]cached{}}, used: map[string]time.Time{}}
	err = cfg.Local.List(ctx, func(info blob.Info) error {
		r.cache.mu.Lock()
		r.cache.used[info.Digest] = cached{size: info.Size, used: info.ModTime}
		r.cache.total += info.Size
		r.cache.mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replica: indexing the local blobs: %w", err)
	}
	return r, nil
}

// Blobs returns the node's blob store (see Blobs).
func (r *Replica) Blobs() Blobs { return Blobs{r} }

func (r *Replica) now() time.Time { return r.cfg.Now() }

// Run works through the outbox and sweeps until ctx ends.
func (r *Replica) Run(ctx context.Context) {
	go r.sweepLoop(ctx)
	r.evict()
	delay := time.Duration(0)
	for {
		t, ok := r.box.first()
		if !ok {
			// Nothing to do; but after a failure, probe the store now and
			// then, so that Status does not call it down once it is back.
			var probe <-chan time.Time
			if r.lastError() != "" {
				delay = min(max(2*delay, r.cfg.Backoff), r.cfg.MaxBackoff)
				probe = time.After(delay)
			}
			select {
			case <-ctx.Done():
				return
			case <-r.box.kick:
			case <-probe:
				if _, err := r.cfg.Remote.Stat(ctx, probeDigest); err == nil || errors.Is(err, blob.ErrNotFound) {
					r.reached()
					delay = 0
				} else if ctx.Err() == nil {
					r.failed(err)
				}
			}
			continue
		}
		err := r.do(ctx, t)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil || errors.Is(err, errDrop):
			if err != nil {
				r.dropped.Add(1)
				r.log.Warn("replica: task dropped", "op", t.Op, "app", t.App, "release", t.Release, "err", err)
			}
			if derr := r.box.done(t); derr != nil {
				r.log.Error("replica: outbox", "err", derr)
			}
			delay = 0
			continue
		}
		if !errors.As(err, new(notRemoteError)) {
			r.failed(err)
		}
		delay = min(max(2*delay, r.cfg.Backoff), r.cfg.MaxBackoff)
		d := delay/2 + mathrand.N(delay/2+1)
		r.log.Warn("replica: task failed; retrying", "op", t.Op, "app", t.App, "release", t.Release, "in", d.Round(time.Millisecond), "err", err)
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// probeDigest names a blob nobody stores: a Stat of it answers "not
// found" when the store is up.
const probeDigest = "0000000000000000000000000000000000000000000000000000000000000000"

// do runs one task: nil when done, an error wrapping errDrop when it can
// never be done, any other error to retry it.
func (r *Replica) do(ctx context.Context, t task) error {
	var err error
	switch t.Op {
	case opPut:
		err = r.upload(ctx, t.Digests[0])
	case opSnapshot:
		err = r.uploadSnapshot(ctx, t.App, t.Release)
	case opDelete:
		err = r.deleteUnreferenced(ctx, t.Digests)
	}
	if err == nil {
		r.reached()
	}
	return err
}

// packedRef names the reference from a blob's digest to its packed
// (zstd) copy in the shared store.
func packedRef(digest string) string { return "zstd-" + digest }

// upload copies a local blob to the shared store, packed: zstd-compressed
// into a spool file, stored under the packed bytes' digest, and named by
// the reference packedRef(digest). A blob already there is not sent again.
func (r *Replica) upload(ctx context.Context, digest string) error {
	if p, err := r.cfg.Remote.GetRef(ctx, packedRef(digest)); err == nil {
		if _, err := r.cfg.Remote.Stat(ctx, p); err == nil {
			return nil
		} else if !errors.Is(err, blob.ErrNotFound) {
			return err
		}
	} else if !errors.Is(err, blob.ErrNotFound) {
		return err
	}
	rc, info, err := r.cfg.Local.Open(ctx, digest)
	if errors.Is(err, blob.ErrNotFound) {
		return fmt.Errorf("%w: blob %s is no longer on this node", errDrop, digest)
	}
	if err != nil {
		return notRemote(err)
	}
	defer rc.Close()
	p, packed, err := r.spoolPut(ctx, func(w io.Writer) error {
		zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return err
		}
		if _, err := io.Copy(zw, rc); err != nil {
			zw.Close()
			return err
		}
		return zw.Close()
	})
	if errors.Is(err, blob.ErrDigestMismatch) {
		// The local copy went bad: drop it, it can be fetched again.
		r.cfg.Local.Delete(ctx, digest)
		r.cache.forget(digest)
		return fmt.Errorf("%w: the local copy of blob %s is damaged: %w", errDrop, digest, err)
	}
	if err != nil {
		return err
	}
	if err := r.cfg.Remote.PutRef(ctx, packedRef(digest), p); err != nil {
		return err
	}
	r.uploads.Add(1)
	r.log.Debug("replica: uploaded blob", "blob", digest, "size", info.Size, "packed", packed)
	r.evict()
	return nil
}

// spoolPut stores what write writes in the shared store, as one blob: it
// is written to a spool file in Dir, hashing as it goes, then uploaded
// from the file, so that a retry sends the same bytes and the store can
// resume a multipart upload of the same digest. It returns the blob's
// digest and size. Only the upload's errors are the shared store's.
func (r *Replica) spoolPut(ctx context.Context, write func(io.Writer) error) (string, int64, error) {
	spool, err := os.CreateTemp(r.cfg.Dir, ".spool-*")
	if err != nil {
		return "", 0, notRemote(err)
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	h := sha256.New()
	if err := write(io.MultiWriter(spool, h)); err != nil {
		return "", 0, notRemote(err)
	}
	size, err := spool.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", 0, notRemote(err)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return "", 0, notRemote(err)
	}
	digest := hex.EncodeToString(h.Sum(nil))
	if _, err := r.cfg.Remote.Put(ctx, digest, spool, 0); err != nil {
		return "", 0, err
	}
	return digest, size, nil
}

// deleteUnreferenced deletes the digests no release and no shared
// snapshot refers to, from the shared store and this node's cache.
func (r *Replica) deleteUnreferenced(ctx context.Context, digests []string) error {
	refs, err := r.references(ctx)
	if err != nil {
		return notRemote(err)
	}
	for _, d := range digests {
		if refs[d] {
			continue
		}
		if err := r.cfg.Remote.Delete(ctx, d); err != nil {
			return err
		}
		// Its packed copy, if it was uploaded as one.
		switch p, err := r.cfg.Remote.GetRef(ctx, packedRef(d)); {
		case err == nil:
			if err := r.cfg.Remote.Delete(ctx, p); err != nil {
				return err
			}
			if err := r.cfg.Remote.DeleteRef(ctx, packedRef(d)); err != nil {
				return err
			}
		case !errors.Is(err, blob.ErrNotFound):
			return err
		}
		if !r.box.pending(d) {
			r.cfg.Local.Delete(ctx, d)
			r.cache.forget(d)
		}
		r.deletes.Add(1)
	}
	return nil
}

// references lists every blob the registry refers to: releases'
// modules and assets, apps' shared snapshots, paused sandboxes' shared
// checkpoints.
func (r *Replica) references(ctx context.Context) (map[string]bool, error) {
	apps, err := r.cfg.Registry.ListApps(ctx)
	if err != nil {
		return nil, err
	}
	sbs, err := r.cfg.Registry.ListSandboxes(ctx)
	if err != nil {
		return nil, err
	}
	refs := map[string]bool{}
	for _, sb := range sbs {
		if sb.Shared != nil {
			refs[sb.Shared.Blob] = true
		}
	}
	for _, ap := range apps {
		if ap.Snapshot != nil {
			refs[ap.Snapshot.Blob] = true
		}
		rels, err := r.cfg.Registry.ListReleases(ctx, ap.Name)
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			return nil, err
		}
		for _, rel := range rels {
			refs[rel.Module] = true
			if rel.Assets != "" {
				refs[rel.Assets] = true
			}
		}
	}
	return refs, nil
}

// AppDeleted queues the deletion of a deleted app's blobs: its releases'
// modules and assets and its shared snapshot, each unless another app's
// release still refers to it when the task runs.
func (r *Replica) AppDeleted(ap registry.App, rels []registry.Release) error {
	var ds []string
	seen := map[string]bool{}
	add := func(d string) {
		if d != "" && !seen[d] {
			seen[d] = true
			ds = append(ds, d)
		}
	}
	for _, rel := range rels {
		add(rel.Module)
		add(rel.Assets)
	}
	if ap.Snapshot != nil {
		add(ap.Snapshot.Blob)
	}
	if len(ds) == 0 {
		return nil
	}
	_, err := r.box.add(task{Op: opDelete, App: ap.Name, Digests: ds, Queued: r.now()})
	return err
}

// failed records a failure to reach the shared store: fetches fail fast
// for a while.
func (r *Replica) failed(err error) {
	r.errMu.Lock()
	r.lastErr, r.lastErrAt = err.Error(), r.now()
	r.errMu.Unlock()
	until := r.now().Add(2 * time.Second)
	r.downUntil.Store(&until)
	select { // the worker starts probing
	case r.box.kick <- struct{}{}:
	default:
	}
}

// reached records that the shared store answered.
func (r *Replica) reached() {
	if r.downUntil.Load() != nil {
		r.downUntil.Store(nil)
	}
	r.errMu.Lock()
	r.lastErr = ""
	r.errMu.Unlock()
}

func (r *Replica) lastError() string {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.lastErr
}

// Status reports the backlog and counters.
func (r *Replica) Status() wire.SharedStorage {
	n, bytes, oldest := r.box.backlog()
	r.errMu.Lock()
	lastErr, lastAt := r.lastErr, r.lastErrAt
	r.errMu.Unlock()
	return wire.SharedStorage{
		Remote: r.cfg.RemoteName, Reachable: lastErr == "",
		Backlog: n, BacklogBytes: bytes, Oldest: oldest, LastError: lastErr, LastErrorAt: lastAt,
		Uploads: r.uploads.Load(), SnapshotUploads: r.snapUploads.Load(), Fetches: r.fetches.Load(),
		SnapshotFetches: r.snapFetches.Load(), FetchFailures: r.fetchFailures.Load(), Deletes: r.deletes.Load(),
		Dropped: r.dropped.Load(), Evictions: r.evictions.Load(),
		CacheBytes: r.cache.bytes(), CacheCap: r.cfg.CacheBytes,
	}
}

var (
	descBacklog      = prometheus.NewDesc("frost_replica_backlog_tasks", "Uploads and deletions queued for the shared store.", nil, nil)
	descBacklogBytes = prometheus.NewDesc("frost_replica_backlog_bytes", "Bytes queued for upload to the shared store.", nil, nil)
	descReachable    = prometheus.NewDesc("frost_replica_reachable", "1 while the shared store answers, 0 after a failure.", nil, nil)
	descOps          = prometheus.NewDesc("frost_replica_operations_total", "Shared-store operations done, by kind.", []string{"op"}, nil)
	descCache        = prometheus.NewDesc("frost_replica_cache_bytes", "Bytes in the node's local blob cache.", nil, nil)
)

// Describe implements prometheus.Collector.
func (r *Replica) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBacklog, descBacklogBytes, descReachable, descOps, descCache} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (r *Replica) Collect(ch chan<- prometheus.Metric) {
	s := r.Status()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	gauge(descBacklog, float64(s.Backlog))
	gauge(descBacklogBytes, float64(s.BacklogBytes))
	reachable := 0.0
	if s.Reachable {
		reachable = 1
	}
	gauge(descReachable, reachable)
	gauge(descCache, float64(s.CacheBytes))
	for op, v := range map[string]int64{"upload": s.Uploads, "snapshot_upload": s.SnapshotUploads, "fetch": s.Fetches,
		"snapshot_fetch": s.SnapshotFetches, "fetch_failure": s.FetchFailures, "delete": s.Deletes, "drop": s.Dropped, "evict": s.Evictions} {
		ch <- prometheus.MustNewConstMetric(descOps, prometheus.CounterValue, float64(v), op)
	}
}
