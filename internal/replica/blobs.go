package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/frostdev/frost/internal/blob"
)

// Blobs is the node's blob store in a cluster with shared storage: the
// local store as a bounded cache in front of the shared one. A Put lands
// locally and is queued for upload; a blob the node lacks is fetched from
// the shared store (or, failing that, from Config.Fallback: the peers),
// verified as it is stored, and served locally from then on.
type Blobs struct{ r *Replica }

var _ blob.Store = Blobs{}

// Local is the node's own store: what it serves to peers.
func (b Blobs) Local() blob.Store { return b.r.cfg.Local }

// Put implements blob.Store: the blob is stored locally and its upload
// queued before Put returns, so it survives a crash and an outage of the
// shared store.
func (b Blobs) Put(ctx context.Context, want string, rd io.Reader, limit int64) (blob.Info, error) {
	info, err := b.r.cfg.Local.Put(ctx, want, rd, limit)
	if err != nil {
		return info, err
	}
	b.r.cache.touch(info)
	if _, err := b.r.box.add(task{Op: opPut, Digests: []string{info.Digest}, Size: info.Size, Queued: b.r.now()}); err != nil {
		return blob.Info{}, fmt.Errorf("queue upload of blob %s: %w", info.Digest, err)
	}
	b.r.evict()
	return info, nil
}

// Open implements blob.Store, fetching the blob if the node lacks it.
func (b Blobs) Open(ctx context.Context, digest string) (io.ReadCloser, blob.Info, error) {
	rc, info, err := b.r.cfg.Local.Open(ctx, digest)
	if errors.Is(err, blob.ErrNotFound) {
		if err = b.r.fetchBlob(ctx, digest); err == nil {
			rc, info, err = b.r.cfg.Local.Open(ctx, digest)
		}
	}
	if err == nil {
		b.r.cache.touch(info)
	}
	return rc, info, err
}

// Stat implements blob.Store, fetching the blob if the node lacks it (a
// Stat precedes every load of a module).
func (b Blobs) Stat(ctx context.Context, digest string) (blob.Info, error) {
	info, err := b.r.cfg.Local.Stat(ctx, digest)
	if errors.Is(err, blob.ErrNotFound) {
		if err = b.r.fetchBlob(ctx, digest); err == nil {
			info, err = b.r.cfg.Local.Stat(ctx, digest)
		}
	}
	if err == nil {
		b.r.cache.touch(info)
	}
	return info, err
}

// Delete implements blob.Store: the local copy goes now, the shared one
// through the outbox (if no release refers to it then).
func (b Blobs) Delete(ctx context.Context, digest string) error {
	if err := blob.ValidateDigest(digest); err != nil {
		return err
	}
	if _, err := b.r.box.add(task{Op: opDelete, Digests: []string{digest}, Queued: b.r.now()}); err != nil {
		return err
	}
	b.r.cache.forget(digest)
	return b.r.cfg.Local.Delete(ctx, digest)
}

// List implements blob.Store (this node's cached blobs).
func (b Blobs) List(ctx context.Context, fn func(blob.Info) error) error {
	return b.r.cfg.Local.List(ctx, fn)
}

// fetchBlob copies a blob into the local store: from the shared store, or
// if it does not have it (yet: its upload may still be queued on another
// node) or cannot be reached, from the fallback. Concurrent fetches of one
// digest share one download.
func (r *Replica) fetchBlob(ctx context.Context, digest string) error {
	if err := blob.ValidateDigest(digest); err != nil {
		return err
	}
	_, err := r.flight.Do(ctx, "blob/"+digest, func(ctx context.Context) (any, error) {
		err := r.remoteBlob(ctx, digest)
		if err == nil {
			r.fetches.Add(1)
			return nil, nil
		}
		if r.cfg.Fallback != nil {
			ferr := r.copyFrom(ctx, r.cfg.Fallback, digest)
			if ferr == nil {
				r.fetches.Add(1)
				return nil, nil
			}
			if !errors.Is(ferr, blob.ErrNotFound) || errors.Is(err, blob.ErrNotFound) {
				err = errors.Join(err, ferr)
			}
		}
		if !errors.Is(err, blob.ErrNotFound) {
			// As far as this node can tell, the blob is nowhere: a
			// client deploying it uploads it again, rather than fail.
			err = fmt.Errorf("blob %s is not on this node (%w), and %w", digest, blob.ErrNotFound, err)
		}
		return nil, err
	})
	return err
}

// copyFrom copies a blob from src into the local store, verifying it.
func (r *Replica) copyFrom(ctx context.Context, src blob.Store, digest string) error {
	rc, _, err := src.Open(ctx, digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	info, err := r.cfg.Local.Put(ctx, digest, rc, 0)
	if err != nil {
		return err
	}
	r.cache.touch(info)
	r.evict()
	return nil
}

func (r *Replica) remoteBlob(ctx context.Context, digest string) error {
	rc, err := r.openPacked(ctx, digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	info, err := r.cfg.Local.Put(ctx, digest, rc, 0)
	if err != nil {
		return fmt.Errorf("fetch blob %s from %s: %w", digest, r.cfg.RemoteName, err)
	}
	r.cache.touch(info)
	r.evict()
	return nil
}

// openPacked opens a blob uploaded packed (upload) as a reader of its
// bytes, unpacked; or, if there is no packed copy, the blob itself. The
// caller verifies the bytes against digest (Local.Put does).
func (r *Replica) openPacked(ctx context.Context, digest string) (io.ReadCloser, error) {
	var packed bool
	rc, _, err := r.openRemote(ctx, func(ctx context.Context) (io.ReadCloser, blob.Info, error) {
		p, err := r.cfg.Remote.GetRef(ctx, packedRef(digest))
		if errors.Is(err, blob.ErrNotFound) {
			return r.cfg.Remote.Open(ctx, digest)
		}
		if err != nil {
			return nil, blob.Info{}, err
		}
		packed = true
		return r.cfg.Remote.Open(ctx, p)
	})
	if err != nil || !packed {
		return rc, err
	}
	zr, err := zstd.NewReader(rc, zstd.WithDecoderConcurrency(1))
	if err != nil {
		rc.Close()
		return nil, err
	}
	return unpacked{zr, rc}, nil
}

// unpacked reads a packed blob's bytes.
type unpacked struct {
	zr *zstd.Decoder
	rc io.ReadCloser
}

func (u unpacked) Read(p []byte) (int, error) { return u.zr.Read(p) }

func (u unpacked) Close() error {
	u.zr.Close()
	return u.rc.Close()
}

// openRemote runs open, which opens a blob in the shared store, for a
// caller that waits: if the store is known to be down it fails at once,
// and if it does not answer within OpenTimeout it fails then (the store's
// own retries may take much longer). Reading the body is not bounded.
func (r *Replica) openRemote(ctx context.Context, open func(context.Context) (io.ReadCloser, blob.Info, error)) (io.ReadCloser, blob.Info, error) {
	if until := r.downUntil.Load(); until != nil && r.now().Before(*until) {
		return nil, blob.Info{}, fmt.Errorf("%s: %w: down since its last failure (%s)", r.cfg.RemoteName, ErrUnavailable, r.lastError())
	}
	ctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(r.cfg.OpenTimeout, cancel)
	rc, info, err := open(ctx)
	if !timer.Stop() {
		if err == nil {
			rc.Close()
		}
		// Our timeout, not the caller's cancellation.
		err = fmt.Errorf("no answer within %v", r.cfg.OpenTimeout)
	}
	if err != nil {
		cancel()
		if errors.Is(err, blob.ErrNotFound) {
			return nil, blob.Info{}, err
		}
		r.failed(err)
		return nil, blob.Info{}, fmt.Errorf("%s: %w: %w", r.cfg.RemoteName, ErrUnavailable, err)
	}
	r.reached()
	return readCloser{rc, cancel}, info, nil
}

type readCloser struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (rc readCloser) Close() error {
	err := rc.ReadCloser.Close()
	rc.cancel()
	return err
}

// cache tracks the local store's blobs, their sizes and last uses, for
// LRU eviction past Config.CacheBytes.
type cache struct {
	mu    sync.Mutex
	used  map[string]cached
	total int64
}

type cached struct {
	size int64
	used time.Time
}

func (c *cache) touch(info blob.Info) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.used[info.Digest]
	if ok {
		c.total -= old.size
	}
	c.used[info.Digest] = cached{size: info.Size, used: time.Now()}
	c.total += info.Size
}

func (c *cache) forget(digest string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.used[digest]; ok {
		c.total -= old.size
		delete(c.used, digest)
	}
}

func (c *cache) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// victims returns the least recently used digests to drop to get within
// limit, skipping those keep says to keep.
func (c *cache) victims(limit int64, keep func(string) bool) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.total <= limit {
		return nil
	}
	type e struct {
		d string
		cached
	}
	all := make([]e, 0, len(c.used))
	for d, v := range c.used {
		all = append(all, e{d, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].used.Before(all[j].used) })
	var out []string
	over := c.total - limit
	for _, v := range all {
		if over <= 0 {
			break
		}
		if keep(v.d) {
			continue
		}
		out = append(out, v.d)
		over -= v.size
	}
	return out
}

// evict drops least recently used local blobs past the cache's cap. A blob
// whose upload is queued is never dropped: it may be the only copy.
func (r *Replica) evict() {
	if r.cfg.CacheBytes <= 0 {
		return
	}
	for _, d := range r.cache.victims(r.cfg.CacheBytes, r.box.pending) {
		if err := r.cfg.Local.Delete(context.Background(), d); err != nil {
			r.log.Warn("replica: evicting blob", "blob", d, "err", err)
			continue
		}
		r.cache.forget(d)
		r.evictions.Add(1)
	}
}
