package sandbox_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/registry/bolt"
	"github.com/frostdev/frost/internal/sandbox"
	"github.com/frostdev/frost/internal/sandbox/sandboxtest"
	"github.com/frostdev/frost/internal/snapshot"
)

// A cluster in one process: nodes are managers over one registry, each
// with its own runtime and checkpoint store, and a shared store in memory
// (the real one, replica over S3, is tested in e2e).

type cluster struct {
	t      *testing.T
	reg    *bolt.Store
	shared *fakeShared
	mu     sync.Mutex
	down   map[string]bool
}

type clusterNode struct {
	*sandbox.Manager
	rt    *sandboxtest.Runtime
	snaps *snapshot.Store
	dir   string
}

func newCluster(t *testing.T) *cluster {
	reg, err := bolt.Open(filepath.Join(t.TempDir(), "reg.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return &cluster{t: t, reg: reg, shared: &fakeShared{blobs: map[string][]byte{}}, down: map[string]bool{}}
}

func (c *cluster) live(node string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.down[node]
}

func (c *cluster) setDown(node string, down bool) {
	c.mu.Lock()
	c.down[node] = down
	c.mu.Unlock()
}

// node starts (or, given an old node's dir, restarts) node name;
// shared false leaves it without shared storage.
func (c *cluster) node(name, dir string, shared bool) *clusterNode {
	c.t.Helper()
	if dir == "" {
		dir = c.t.TempDir()
	}
	snaps, err := snapshot.Open(filepath.Join(dir, "snaps"), snapshot.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := sandbox.DefaultConfig()
	cfg.Dir = filepath.Join(dir, "scratch")
	cfg.BaseRootFS = dir
	cfg.Key = []byte("0123456789abcdef0123456789abcdef")
	cfg.IDTag = name[:1] + "000"
	cfg.Node = name
	cfg.Live = c.live
	if shared {
		cfg.Shared = c.shared
	}
	rt := sandboxtest.New()
	m, err := sandbox.New(cfg, c.reg, snaps, rt)
	if err != nil {
		c.t.Fatal(err)
	}
	return &clusterNode{Manager: m, rt: rt, snaps: snaps, dir: dir}
}

// fakeShared is shared storage in memory: blobs by digest.
type fakeShared struct {
	mu        sync.Mutex
	blobs     map[string][]byte
	forgotten int
	down      bool // GetCheckpoint fails as an unreachable store does
	puts      int
}

func (f *fakeShared) PutCheckpoint(ctx context.Context, store *snapshot.Store, want snapshot.Want) (registry.SharedSnapshot, error) {
	var b bytes.Buffer
	if err := store.Export(ctx, want, &b); err != nil {
		return registry.SharedSnapshot{}, err
	}
	sum := sha256.Sum256(b.Bytes())
	d := hex.EncodeToString(sum[:])
	f.mu.Lock()
	f.blobs[d] = b.Bytes()
	f.puts++
	f.mu.Unlock()
	return registry.SharedSnapshot{Release: want.Release, Blob: d, Size: int64(b.Len())}, nil
}

func (f *fakeShared) GetCheckpoint(ctx context.Context, store *snapshot.Store, ref registry.SharedSnapshot, want snapshot.Want) error {
	f.mu.Lock()
	b, ok := f.blobs[ref.Blob]
	down := f.down
	f.mu.Unlock()
	switch {
	case down:
		return errors.New("connection refused")
	case !ok:
		return fmt.Errorf("%w: no blob %s", snapshot.ErrNotFound, ref.Blob)
	}
	m, _, err := store.Import(ctx, bytes.NewReader(b), 1<<30)
	if err == nil && m.Release != want.Release {
		store.Delete(m.Release)
		err = fmt.Errorf("%w: wrong checkpoint", snapshot.ErrCorrupt)
	}
	return err
}

func (f *fakeShared) ForgetCheckpoint(owner string, ref registry.SharedSnapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.blobs, ref.Blob)
	f.forgotten++
	return nil
}

func (f *fakeShared) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.blobs)
}

// pausedWithFile creates a sandbox on n holding /root/keep.txt, pauses it
// and waits for its checkpoint's upload.
func pausedWithFile(t *testing.T, n *clusterNode, content string) api.Sandbox {
	t.Helper()
	ctx := context.Background()
	sb, err := n.Create(ctx, api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.WriteFile(ctx, sb.ID, "/root/keep.txt", 0, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Pause(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	n.WaitUploads()
	v, err := n.Get(ctx, sb.ID)
	if err != nil || v.Snapshot == nil || !v.Snapshot.Shared {
		t.Fatalf("after the pause and its upload: %+v %v, want a shared checkpoint", v, err)
	}
	return v
}

func readKeep(n *clusterNode, id string) (string, error) {
	var out bytes.Buffer
	err := n.ReadFile(context.Background(), id, "/root/keep.txt", &out)
	return out.String(), err
}

// TestTakeOver: a paused sandbox whose node left is resumed by the node
// asked for it, with its files; while its node is live, other nodes name
// it instead; back, the old node names the new holder and has dropped its
// stale checkpoint.
func TestTakeOver(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	a, b := c.node("a", "", true), c.node("b", "", true)
	sb := pausedWithFile(t, a, "kept")
	if sb.Node != "a" {
		t.Fatalf("holder %q, want a", sb.Node)
	}

	// Node a is live: b runs no copy, and says where it is.
	_, err := readKeep(b, sb.ID)
	if !errors.Is(err, sandbox.ErrElsewhere) || sandbox.Holder(err) != "a" {
		t.Fatalf("b, while a is live: %v (holder %q), want ErrElsewhere naming a", err, sandbox.Holder(err))
	}
	if got := b.HolderOf(ctx, sb.ID); got != "a" {
		t.Errorf("HolderOf on b: %q, want a", got)
	}
	if len(b.rt.Live) != 0 {
		t.Fatal("b booted a copy")
	}

	// Node a leaves: b takes it over.
	c.setDown("a", true)
	if got, err := readKeep(b, sb.ID); err != nil || got != "kept" {
		t.Fatalf("b after a left: %q %v, want the file", got, err)
	}
	v, _ := b.Get(ctx, sb.ID)
	if v.Node != "b" || v.Boot != "resume" || v.State != "running" {
		t.Fatalf("after the take-over: %+v, want running on b, resumed", v)
	}
	if c.shared.count() != 0 {
		t.Errorf("%d blobs left in shared storage: the spent checkpoint's upload must be forgotten", c.shared.count())
	}
	if got := b.HolderOf(ctx, sb.ID); got != "" {
		t.Errorf("HolderOf on the holder: %q", got)
	}

	// Node a comes back (a restart over its old store): its stale
	// checkpoint is gone, and it names b.
	c.setDown("a", false)
	a2 := c.node("a", a.dir, true)
	if list, _ := a2.snaps.List(); len(list) != 0 {
		t.Errorf("the old holder kept %d checkpoints: %+v", len(list), list)
	}
	_, err = readKeep(a2, sb.ID)
	if sandbox.Holder(err) != "b" {
		t.Fatalf("the old holder: %v, want a replay to b", err)
	}
	if _, err := a2.Pause(ctx, sb.ID); sandbox.Holder(err) != "b" {
		t.Errorf("pause on the old holder: %v, want a replay to b", err)
	}
	if err := a2.Kill(ctx, sb.ID); sandbox.Holder(err) != "b" {
		t.Errorf("kill on the old holder: %v, want a replay to b", err)
	}
	if len(a2.rt.Live) != 0 {
		t.Error("the old holder runs a copy")
	}

	// Paused again on b, killed: its upload is forgotten too.
	if _, err := b.Pause(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	b.WaitUploads()
	if c.shared.count() != 1 {
		t.Fatalf("%d blobs after the second pause, want 1", c.shared.count())
	}
	if err := b.Kill(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if c.shared.count() != 0 {
		t.Errorf("a killed sandbox's checkpoint is still in shared storage")
	}
}

// TestNoTakeOver: a sandbox is not taken over when its state cannot come
// along: it was running on the node that left, its checkpoint never
// reached shared storage, or there is none; and a take-over that cannot
// reach shared storage leaves it paused for a retry, not booted afresh.
func TestNoTakeOver(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	a, b := c.node("a", "", true), c.node("b", "", true)
	running, err := a.Create(ctx, api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	lone := c.node("l", "", false) // no shared storage
	unshared, err := lone.Create(ctx, api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lone.Pause(ctx, unshared.ID); err != nil {
		t.Fatal(err)
	}
	sb := pausedWithFile(t, a, "kept")
	c.setDown("a", true)
	c.setDown("l", true)

	for _, tc := range []struct{ id, want string }{
		{running.ID, "its processes and memory are there"},
		{unshared.ID, "before its checkpoint reached shared storage"},
	} {
		_, err := readKeep(b, tc.id)
		if !errors.Is(err, sandbox.ErrElsewhere) || !strings.Contains(err.Error(), tc.want) || sandbox.Holder(err) != "" {
			t.Errorf("%s: %v, want ErrElsewhere saying %q", tc.id, err, tc.want)
		}
	}
	if len(b.rt.Live) != 0 || b.rt.Boots != 0 {
		t.Fatalf("b booted %d sandboxes", b.rt.Boots)
	}

	c.shared.mu.Lock()
	c.shared.down = true
	c.shared.mu.Unlock()
	_, err = readKeep(b, sb.ID)
	if !errors.Is(err, sandbox.ErrElsewhere) || !strings.Contains(err.Error(), "cannot be reached now") {
		t.Fatalf("shared storage down: %v, want ErrElsewhere asking for a retry", err)
	}
	if r, _ := c.reg.GetSandbox(ctx, sb.ID); r.State != registry.SandboxPaused || r.Shared == nil || b.rt.Boots != 0 {
		t.Fatalf("after a failed fetch: %+v, boots %d; want it paused with its shared checkpoint", r, b.rt.Boots)
	}
	c.shared.mu.Lock()
	c.shared.down = false
	c.shared.mu.Unlock()
	if got, err := readKeep(b, sb.ID); err != nil || got != "kept" {
		t.Fatalf("retry: %q %v", got, err)
	}
}

// TestTakeOverRace: nodes asked at once for a sandbox whose node left:
// exactly one resumes it; the others name that one.
func TestTakeOverRace(t *testing.T) {
	c := newCluster(t)
	a := c.node("a", "", true)
	sb := pausedWithFile(t, a, "kept")
	c.setDown("a", true)
	nodes := []*clusterNode{c.node("b", "", true), c.node("c", "", true), c.node("d", "", true)}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { _, errs[i] = readKeep(n, sb.ID) })
	}
	wg.Wait()
	r, _ := c.reg.GetSandbox(context.Background(), sb.ID)
	running := 0
	for i, n := range nodes {
		running += len(n.rt.Live)
		name := string(rune('b' + i))
		switch {
		case name == r.Node && errs[i] != nil:
			t.Errorf("the holder %s: %v", name, errs[i])
		case name != r.Node && sandbox.Holder(errs[i]) != r.Node:
			t.Errorf("node %s: %v, want a replay to %s", name, errs[i], r.Node)
		}
	}
	if running != 1 {
		t.Fatalf("%d copies run, want 1 (holder %q)", running, r.Node)
	}
}

// TestCorruptSharedCheckpoint: a damaged upload is never restored: the
// sandbox boots afresh from its template and says why.
func TestCorruptSharedCheckpoint(t *testing.T) {
	c := newCluster(t)
	a, b := c.node("a", "", true), c.node("b", "", true)
	sb := pausedWithFile(t, a, "kept")
	c.setDown("a", true)
	c.shared.mu.Lock()
	for d, blob := range c.shared.blobs {
		blob = bytes.Clone(blob)
		blob[len(blob)/2] ^= 0x40
		c.shared.blobs[d] = blob
	}
	c.shared.mu.Unlock()
	v, err := b.Resume(context.Background(), sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v.Boot != "cold" || b.Fallback(sb.ID) != "corrupt" || v.Node != "b" {
		t.Fatalf("from a damaged upload: %+v, fallback %q; want a cold boot on b, corrupt", v, b.Fallback(sb.ID))
	}
}

// TestTemplateAcrossNodes: a template built on one node creates sandboxes
// on every node from its checkpoint (fetched from shared storage), never
// from the bare root file system; without a shared copy, other nodes send
// the create to the node that built it.
func TestTemplateAcrossNodes(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	a, b := c.node("a", "", true), c.node("b", "", true)
	if _, err := a.BuildTemplate(ctx, "py", a.dir, []string{"pip install x"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	sb, err := b.Create(ctx, api.SandboxCreateRequest{Template: "py"})
	if err != nil || sb.Boot != "restore" || b.rt.Boots != 0 {
		t.Fatalf("create from a's template on b: %+v %v (boots %d); want a restore of its checkpoint", sb, err, b.rt.Boots)
	}
	// A rebuild replaces the checkpoint b fetched: b deletes its copy
	// once it is unused for the grace, not before.
	if n := has(t, b.snaps, "template-py"); n != 1 {
		t.Fatalf("b holds %d checkpoints of template py, want 1", n)
	}
	if _, err := a.BuildTemplate(ctx, "py", a.dir, []string{"pip install x y"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	b.TidyTemplates(ctx, time.Hour)
	if has(t, b.snaps, "template-py") != 1 {
		t.Fatal("b deleted the replaced template's checkpoint within the grace")
	}
	b.TidyTemplates(ctx, 0)
	if has(t, b.snaps, "template-py") != 0 {
		t.Fatal("b kept the checkpoint of a template rebuilt since")
	}
	sb2, err := b.Create(ctx, api.SandboxCreateRequest{Template: "py"})
	if err != nil || sb2.Boot != "restore" {
		t.Fatalf("create from the rebuilt template on b: %+v %v", sb2, err)
	}
	if has(t, b.snaps, "template-py") != 1 {
		t.Fatal("b did not fetch the rebuilt template's checkpoint")
	}
	if err := b.Kill(ctx, sb2.ID); err != nil {
		t.Fatal(err)
	}
	b.TidyTemplates(ctx, 0)
	if has(t, b.snaps, "template-py") != 1 {
		t.Fatal("b deleted the checkpoint of the current template")
	}

	lone := c.node("l", "", false) // no shared storage
	if _, err := lone.BuildTemplate(ctx, "lone", lone.dir, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	_, err = b.Create(ctx, api.SandboxCreateRequest{Template: "lone"})
	if sandbox.Holder(err) != "l" || b.rt.Boots != 0 {
		t.Fatalf("create from an unshared template elsewhere: %v (boots %d); want a replay to l", err, b.rt.Boots)
	}
	if list, _ := b.List(ctx); len(list) != 1 {
		t.Errorf("the refused create left a record: %d sandboxes", len(list))
	}
	c.setDown("l", true)
	if _, err := b.Create(ctx, api.SandboxCreateRequest{Template: "lone"}); !errors.Is(err, sandbox.ErrElsewhere) || !strings.Contains(err.Error(), "build the template again") {
		t.Fatalf("its builder gone: %v", err)
	}
}

// has counts the checkpoints of owner in store.
func has(t *testing.T, store *snapshot.Store, owner string) int {
	t.Helper()
	list, err := store.List()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range list {
		if s.App == owner {
			n++
		}
	}
	return n
}
