package replica_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	wire "github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/blob"
	"github.com/frostdev/frost/internal/blob/dir"
	"github.com/frostdev/frost/internal/blob/s3"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/registry/etcd"
	"github.com/frostdev/frost/internal/replica"
	"github.com/frostdev/frost/internal/snapshot"
	"github.com/frostdev/frost/internal/testetcd"
	"github.com/frostdev/frost/internal/tests3"
)

// cluster is a shared S3 (a real versitygw) and registry (a real etcd),
// and the nodes that share them.
type cluster struct {
	t      testing.TB
	srv    tests3.Server
	remote *s3.Store
	reg    registry.Store
	clock  *clock
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	srv := tests3.Start(t)
	remote, err := s3.New(s3.Options{Endpoint: srv.Endpoint, Bucket: srv.Bucket, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PartSize: s3.MinPartSize, RetryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// The registry a cluster with shared storage runs on: a real etcd.
	reg, err := etcd.Open(t.Context(), etcd.Options{Endpoints: testetcd.Start(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return &cluster{t: t, srv: srv, remote: remote, reg: reg, clock: &clock{now: time.Now()}}
}

// node is one node's stores and replica.
type node struct {
	r     *replica.Replica
	local *dir.Store
	snaps *snapshot.Store
	dir   string
	stop  context.CancelFunc
	done  chan struct{}
}

func (c *cluster) node(name string, edit func(*replica.Config)) *node {
	c.t.Helper()
	d := c.t.TempDir()
	return c.reopen(name, d, edit)
}

// reopen starts a node on an existing data directory (a restart).
func (c *cluster) reopen(name, d string, edit func(*replica.Config)) *node {
	c.t.Helper()
	local, err := dir.New(filepath.Join(d, "blobs"))
	if err != nil {
		c.t.Fatal(err)
	}
	snaps, err := snapshot.Open(filepath.Join(d, "snapshots"), snapshot.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := replica.Config{Dir: filepath.Join(d, "replica"), Node: name, Local: local, Remote: c.remote,
		RemoteName: "s3://" + c.srv.Bucket, Snapshots: snaps, Registry: c.reg, Now: c.clock.Now,
		SweepEvery: time.Hour, Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, OpenTimeout: 2 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	r, err := replica.New(c.t.Context(), cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{r: r, local: local, snaps: snaps, dir: d, stop: cancel, done: make(chan struct{})}
	go func() { r.Run(ctx); close(n.done) }()
	c.t.Cleanup(n.close)
	return n
}

func (n *node) close() {
	n.stop()
	<-n.done
}

// drained waits until the node's outbox is empty.
func (n *node) drained(t *testing.T) wire.SharedStorage {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := n.r.Status()
		if st.Backlog == 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox not drained: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// hasBlob reports whether blob d is in S3 as a node uploads it: packed,
// under a reference from d. It returns the packed copy's size.
func (c *cluster) hasBlob(d string) (bool, int64) {
	c.t.Helper()
	p, err := c.remote.GetRef(c.t.Context(), "zstd-"+d)
	if errors.Is(err, blob.ErrNotFound) {
		return false, 0
	}
	if err != nil {
		c.t.Fatal(err)
	}
	info, err := c.remote.Stat(c.t.Context(), p)
	if errors.Is(err, blob.ErrNotFound) {
		return false, 0
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return true, info.Size
}

func (c *cluster) inRemote(d string) bool {
	c.t.Helper()
	_, err := c.remote.Stat(c.t.Context(), d)
	if err != nil && !errors.Is(err, blob.ErrNotFound) {
		c.t.Fatal(err)
	}
	return err == nil
}

// TestBlobs: a blob put on one node is uploaded, fetched once by another
// however many ask at the same time, and both copies are the same bytes.
func TestBlobs(t *testing.T) {
	c := newCluster(t)
	a, b := c.node("a", nil), c.node("b", nil)
	ctx := t.Context()
	data := randomBytes(1, 12<<20) // multipart
	d := digest(data)
	if _, err := a.r.Blobs().Put(ctx, "", bytes.NewReader(data), 0); err != nil {
		t.Fatal(err)
	}
	if st := a.drained(t); st.Uploads != 1 {
		t.Fatalf("status after the upload: %+v", st)
	}
	if ok, _ := c.hasBlob(d); !ok {
		t.Fatal("blob not in S3 after the outbox drained")
	}
	// A compressible blob goes up packed.
	text := bytes.Repeat([]byte("(module (func $handle_request (result i64) ...))\n"), 1<<16)
	if _, err := a.r.Blobs().Put(ctx, "", bytes.NewReader(text), 0); err != nil {
		t.Fatal(err)
	}
	a.drained(t)
	if ok, size := c.hasBlob(digest(text)); !ok || size > int64(len(text))/10 {
		t.Errorf("a %d-byte compressible blob is in S3: %v, %d bytes; want it packed", len(text), ok, size)
	}
	if c.inRemote(digest(text)) {
		t.Error("the blob is in S3 unpacked as well")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			rc, _, err := b.r.Blobs().Open(ctx, d)
			if err != nil {
				t.Error(err)
				return
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("read %d bytes, %v", len(got), err)
			}
		})
	}
	wg.Wait()
	if st := b.r.Status(); st.Fetches != 1 {
		t.Errorf("8 concurrent opens made %d fetches, want 1", st.Fetches)
	}
	if _, err := b.r.Blobs().Stat(ctx, digest([]byte("nowhere"))); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat of a blob nobody has = %v, want ErrNotFound", err)
	}
}

// TestOutage: with S3 down, puts land locally and queue, a fetch fails
// fast with ErrUnavailable (or comes from the fallback), the backlog
// survives a restart, and drains when S3 is back.
func TestOutage(t *testing.T) {
	c := newCluster(t)
	ctx := t.Context()
	aDir := t.TempDir()
	a := c.reopen("a", aDir, nil)
	c.srv.Stop()

	var ds []string
	for i := range 3 {
		data := randomBytes(uint64(10+i), 64<<10)
		info, err := a.r.Blobs().Put(ctx, "", bytes.NewReader(data), 0)
		if err != nil {
			t.Fatalf("Put with S3 down: %v", err)
		}
		ds = append(ds, info.Digest)
	}
	waitFor(t, "the worker to notice the outage", func() bool { return !a.r.Status().Reachable })
	st := a.r.Status()
	if st.Backlog != 3 || st.BacklogBytes != 3*64<<10 || st.LastError == "" || st.Oldest.IsZero() {
		t.Fatalf("status during the outage: %+v", st)
	}

	// Another node: no fallback → ErrUnavailable; with the first node's
	// store as fallback → the blob.
	b := c.node("b", nil)
	if _, err := b.r.Blobs().Stat(ctx, ds[0]); !errors.Is(err, replica.ErrUnavailable) {
		t.Errorf("fetch with S3 down = %v, want ErrUnavailable", err)
	}
	f := c.node("f", func(cfg *replica.Config) { cfg.Fallback = a.local })
	if _, err := f.r.Blobs().Stat(ctx, ds[1]); err != nil {
		t.Errorf("fetch from the fallback with S3 down: %v", err)
	}

	// A restart keeps the backlog.
	a.close()
	a = c.reopen("a", aDir, nil)
	if st := a.r.Status(); st.Backlog != 3 {
		t.Fatalf("after a restart the backlog is %d tasks, want 3", st.Backlog)
	}
	c.srv.Restart()
	if st := a.drained(t); st.Uploads != 3 || !st.Reachable {
		t.Fatalf("after S3 came back: %+v", st)
	}
	// b has nothing queued: it probes, and sees S3 back.
	waitFor(t, "a node with an empty outbox to see S3 back", func() bool { return b.r.Status().Reachable })
	for _, d := range ds {
		if ok, _ := c.hasBlob(d); !ok {
			t.Errorf("blob %s not uploaded after the outage", d)
		}
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// release makes an app with one release whose module is data.
func (c *cluster) release(name string, module []byte) registry.Release {
	c.t.Helper()
	ctx := c.t.Context()
	id := digest([]byte(name + "/" + digest(module)))
	if _, err := c.reg.UpdateApp(ctx, name, true, func(a *registry.App) error { a.Release = id; a.Version = 1; return nil }); err != nil {
		c.t.Fatal(err)
	}
	rel := registry.Release{ID: id, App: name, Version: 1, Runtime: "wasm", Module: digest(module), ModuleSize: int64(len(module))}
	if err := c.reg.PutRelease(ctx, rel); err != nil {
		c.t.Fatal(err)
	}
	return rel
}

var want = func(rel registry.Release) snapshot.Want {
	return snapshot.Want{App: rel.App, Release: rel.ID, Runtime: "wasm", RuntimeVersion: "test/1"}
}

// bake stores a snapshot of rel on n: memory of size bytes, half of it
// zeros, and a small part.
func (n *node) bake(t *testing.T, rel registry.Release, size int) []snapshot.Part {
	t.Helper()
	mem := make([]byte, size)
	copy(mem, randomBytes(7, size/2))
	parts := []snapshot.Part{{Name: "globals", Data: []byte("g0=1")}, {Name: "memory", Data: mem}}
	w := want(rel)
	if _, err := n.snaps.Put(t.Context(), snapshot.Manifest{Runtime: w.Runtime, RuntimeVersion: w.RuntimeVersion, App: w.App, Release: w.Release}, parts); err != nil {
		t.Fatal(err)
	}
	if err := n.r.Baked(rel.App, rel.ID); err != nil {
		t.Fatal(err)
	}
	return parts
}

func (c *cluster) app(name string) registry.App {
	c.t.Helper()
	ap, err := c.reg.GetApp(c.t.Context(), name)
	if err != nil {
		c.t.Fatal(err)
	}
	return ap
}

// TestSnapshotAcrossNodes: a snapshot baked on one node is uploaded,
// recorded on the app, and pulled by another node once for many
// concurrent wakes, byte for byte.
func TestSnapshotAcrossNodes(t *testing.T) {
	c := newCluster(t)
	a, b := c.node("a", nil), c.node("b", nil)
	rel := c.release("hello", []byte("module"))
	parts := a.bake(t, rel, 8<<20)
	a.drained(t)
	ref := c.app("hello").Snapshot
	if ref == nil || ref.Release != rel.ID || ref.Node != "a" || ref.Bytes != 8<<20+4 || !c.inRemote(ref.Blob) {
		t.Fatalf("shared snapshot after the upload: %+v", ref)
	}
	if ref.Size >= ref.Bytes*6/10 {
		t.Errorf("packed %d bytes for %d with half zeros: not sparse", ref.Size, ref.Bytes)
	}

	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 8 {
		wg.Go(func() {
			if _, _, err := b.r.FetchSnapshot(t.Context(), rel.App, rel.ID); err != nil {
				t.Error(err)
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if st := b.r.Status(); st.SnapshotFetches != 1 {
		t.Errorf("8 concurrent wakes made %d downloads, want 1", st.SnapshotFetches)
	}
	_, got, err := b.snaps.Get(t.Context(), want(rel))
	if err != nil {
		t.Fatal(err)
	}
	for i := range parts {
		if got[i].Name != parts[i].Name || !bytes.Equal(got[i].Data, parts[i].Data) {
			t.Errorf("part %s differs after the trip through S3", parts[i].Name)
		}
	}

	// A second bake of the same release elsewhere keeps the first record.
	cnode := c.node("c", nil)
	cnode.bake(t, rel, 8<<20)
	cnode.drained(t)
	if now := c.app("hello").Snapshot; now.Node != "a" || now.Blob != ref.Blob {
		t.Errorf("a second upload replaced the record: %+v", now)
	}
	// No record → ErrNotFound.
	other := c.release("other", []byte("module 2"))
	if _, _, err := b.r.FetchSnapshot(t.Context(), other.App, other.ID); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("fetch with no shared snapshot = %v, want ErrNotFound", err)
	}
}

// damage flips one byte in the middle of blob digest in S3.
func (c *cluster) damage(digest string) {
	c.t.Helper()
	ctx := c.t.Context()
	cl := c.srv.Client(c.t)
	obj, err := cl.GetObject(ctx, c.srv.Bucket, "sha256/"+digest, minio.GetObjectOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	b, err := io.ReadAll(obj)
	if err != nil {
		c.t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if _, err := cl.PutObject(ctx, c.srv.Bucket, "sha256/"+digest, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// TestDamagedSnapshot: a shared snapshot damaged in S3 is refused (nothing
// imported), forgotten, and uploaded again from the node that has it.
func TestDamagedSnapshot(t *testing.T) {
	c := newCluster(t)
	a, b := c.node("a", nil), c.node("b", nil)
	ctx := t.Context()
	rel := c.release("hello", []byte("module"))
	a.bake(t, rel, 1<<20)
	a.drained(t)
	ref := c.app("hello").Snapshot

	c.damage(ref.Blob)
	_, _, err := b.r.FetchSnapshot(ctx, rel.App, rel.ID)
	if !errors.Is(err, snapshot.ErrCorrupt) {
		t.Fatalf("fetch of a damaged snapshot = %v, want ErrCorrupt", err)
	}
	if _, _, err := b.snaps.Get(ctx, want(rel)); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("after a damaged fetch the node's store answers %v, want ErrNotFound", err)
	}
	if st := b.r.Status(); st.FetchFailures != 1 {
		t.Errorf("fetch failures = %d, want 1", st.FetchFailures)
	}
	if got := c.app("hello").Snapshot; got != nil {
		t.Fatalf("the damaged snapshot is still recorded: %+v", got)
	}
	b.drained(t) // deletes the damaged blob
	if c.inRemote(ref.Blob) {
		t.Error("the damaged blob is still in S3")
	}
	// The node that has a sound copy uploads it again on its next sweep.
	if err := a.r.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	a.drained(t)
	again := c.app("hello").Snapshot
	if again == nil || again.Blob != ref.Blob {
		t.Fatalf("after the sweep the shared snapshot is %+v, want the same packed bytes %s again", again, ref.Blob)
	}
	if _, _, err := b.r.FetchSnapshot(ctx, rel.App, rel.ID); err != nil {
		t.Fatalf("fetch after the repair: %v", err)
	}
}

// TestDeleteApp: deleting an app deletes its module and shared snapshot
// from S3, but not a module another app's release still uses.
func TestDeleteApp(t *testing.T) {
	c := newCluster(t)
	a := c.node("a", nil)
	ctx := t.Context()
	shared, own := []byte("shared module"), []byte("own module")
	for _, m := range [][]byte{shared, own} {
		if _, err := a.r.Blobs().Put(ctx, "", bytes.NewReader(m), 0); err != nil {
			t.Fatal(err)
		}
	}
	gone := c.release("gone", own)
	c.release("stays", shared)
	// gone's second release uses the shared module too.
	rel2 := registry.Release{ID: digest([]byte("gone v2")), App: "gone", Version: 2, Runtime: "wasm", Module: digest(shared)}
	if err := c.reg.PutRelease(ctx, rel2); err != nil {
		t.Fatal(err)
	}
	a.bake(t, gone, 64<<10)
	a.drained(t)
	ap := c.app("gone")
	rels, err := c.reg.ListReleases(ctx, "gone")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.reg.DeleteApp(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := a.r.AppDeleted(ap, rels); err != nil {
		t.Fatal(err)
	}
	if st := a.drained(t); st.Deletes != 2 {
		t.Errorf("deleted %d blobs, want 2 (own module and snapshot)", st.Deletes)
	}
	if ok, _ := c.hasBlob(digest(own)); ok || c.inRemote(ap.Snapshot.Blob) {
		t.Error("the deleted app's module or snapshot is still in S3")
	}
	if ok, _ := c.hasBlob(digest(shared)); !ok {
		t.Error("a module another app uses was deleted")
	}
}

// TestRegistryOutage: a task that fails on the registry (etcd unreachable)
// is retried until the registry answers, but S3, which is fine, is not
// taken for down: the node goes on fetching from it.
func TestRegistryOutage(t *testing.T) {
	c := newCluster(t)
	reg := &flakyRegistry{Store: c.reg}
	a := c.node("a", func(cfg *replica.Config) { cfg.Registry = reg })
	b := c.node("b", nil)
	ctx := t.Context()
	module := []byte("a module on b")
	if _, err := b.r.Blobs().Put(ctx, "", bytes.NewReader(module), 0); err != nil {
		t.Fatal(err)
	}
	b.drained(t)
	gone := c.release("gone", []byte("gone's module"))
	ap := c.app("gone")
	if err := c.reg.DeleteApp(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	reg.down.Store(true)
	if err := a.r.AppDeleted(ap, []registry.Release{gone}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); reg.refused.Load() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the deletion never asked the registry")
		}
	}
	if st := a.r.Status(); !st.Reachable || st.LastError != "" || st.Backlog != 1 {
		t.Errorf("with the registry down: %+v; want S3 reachable, the deletion queued", st)
	}
	rc, _, err := a.r.Blobs().Open(ctx, digest(module))
	if err != nil {
		t.Fatalf("fetch from S3 while the registry is down: %v", err)
	}
	rc.Close()
	reg.down.Store(false)
	if st := a.drained(t); st.Deletes != 1 {
		t.Errorf("after the registry came back: %+v; want the module deleted", st)
	}
}

// flakyRegistry refuses to list apps while down.
type flakyRegistry struct {
	registry.Store
	down    atomic.Bool
	refused atomic.Int64
}

func (f *flakyRegistry) ListApps(ctx context.Context) ([]registry.App, error) {
	if f.down.Load() {
		f.refused.Add(1)
		return nil, errors.New("etcdserver: no leader")
	}
	return f.Store.ListApps(ctx)
}

// TestSweep: a shared snapshot of a release the app left, or one not
// woken from for the TTL, is dropped; waking keeps it.
func TestSweep(t *testing.T) {
	c := newCluster(t)
	a := c.node("a", func(cfg *replica.Config) { cfg.TTL = time.Hour })
	ctx := t.Context()
	for _, name := range []string{"idle", "busy", "moved"} {
		rel := c.release(name, []byte(name))
		a.bake(t, rel, 64<<10)
	}
	a.drained(t)
	blobs := map[string]string{}
	for _, name := range []string{"idle", "busy", "moved"} {
		blobs[name] = c.app(name).Snapshot.Blob
	}
	if _, err := c.reg.UpdateApp(ctx, "moved", false, func(ap *registry.App) error { ap.Release = digest([]byte("v2")); return nil }); err != nil {
		t.Fatal(err)
	}
	c.clock.add(50 * time.Minute)
	a.r.Woke("busy", c.app("busy").Release)
	waitFor(t, "the wake to be recorded", func() bool { return c.app("busy").Snapshot.Used.After(c.clock.Now().Add(-time.Minute)) })
	c.clock.add(20 * time.Minute) // idle: 70 minutes unused; busy: 20
	if err := a.r.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	a.drained(t)
	if c.app("idle").Snapshot != nil || c.inRemote(blobs["idle"]) {
		t.Error("the idle app's shared snapshot was not reaped")
	}
	if c.app("moved").Snapshot != nil || c.inRemote(blobs["moved"]) {
		t.Error("the shared snapshot of a release the app left was not dropped")
	}
	if c.app("busy").Snapshot == nil || !c.inRemote(blobs["busy"]) {
		t.Error("the recently woken app's shared snapshot was dropped")
	}
}

// TestCache: past its cap the local cache drops least recently used
// blobs, never one still queued for upload; a dropped blob comes back
// from S3.
func TestCache(t *testing.T) {
	c := newCluster(t)
	a := c.node("a", func(cfg *replica.Config) { cfg.CacheBytes = 3 << 20 })
	ctx := t.Context()
	c.srv.Stop() // nothing can be uploaded: nothing may be evicted
	var ds []string
	var datas [][]byte
	for i := range 6 {
		data := randomBytes(uint64(20+i), 1<<20)
		info, err := a.r.Blobs().Put(ctx, "", bytes.NewReader(data), 0)
		if err != nil {
			t.Fatal(err)
		}
		ds, datas = append(ds, info.Digest), append(datas, data)
	}
	if st := a.r.Status(); st.CacheBytes != 6<<20 || st.Evictions != 0 {
		t.Fatalf("with every blob queued: %+v; want all 6 MiB kept", st)
	}
	c.srv.Restart()
	st := a.drained(t)
	if st.CacheBytes > 3<<20 || st.Evictions != 3 {
		t.Fatalf("after the uploads: %+v; want 3 evicted, at most 3 MiB", st)
	}
	for i, d := range ds[:3] { // the three evicted
		rc, _, err := a.r.Blobs().Open(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, datas[i]) {
			t.Fatalf("blob %d: read %d bytes, %v", i, len(got), err)
		}
	}
	if st := a.r.Status(); st.Fetches != 3 || st.CacheBytes > 3<<20 {
		t.Errorf("after reading the evicted blobs: %+v; want 3 fetches, at most 3 MiB", st)
	}
}
