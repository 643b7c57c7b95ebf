package replica_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/snapshot"
)

// TestCheckpointAcrossNodes: a sandbox checkpoint (file parts, in a store
// of its own) goes to S3 packed and comes back on another node byte for
// byte; a damaged or foreign copy is refused with nothing imported; a
// forgotten one leaves S3 unless a sandbox still records it.
func TestCheckpointAcrossNodes(t *testing.T) {
	c := newCluster(t)
	a, b := c.node("a", nil), c.node("b", nil)
	ctx := t.Context()
	storeA, err := snapshot.Open(filepath.Join(a.dir, "checkpoints"), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	storeB, err := snapshot.Open(filepath.Join(b.dir, "checkpoints"), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// runsc's image files: one mostly holes.
	img := t.TempDir()
	pages := make([]byte, 4<<20)
	copy(pages[1<<20:], randomBytes(3, 1<<20))
	files := map[string][]byte{"checkpoint.img": randomBytes(4, 300<<10), "pages.img": pages}
	paths := map[string]string{}
	for name, data := range files {
		paths[name] = filepath.Join(img, name)
		if err := os.WriteFile(paths[name], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	key := "c0ffee" + string(bytes.Repeat([]byte("0"), 58))
	w := snapshot.Want{App: "sandbox-a000xxxxxxxxxxxxxxxx", Release: key, Runtime: "gvisor", RuntimeVersion: "runsc/1"}
	if _, err := storeA.PutFiles(ctx, snapshot.Manifest{App: w.App, Release: w.Release, Runtime: w.Runtime, RuntimeVersion: w.RuntimeVersion}, paths); err != nil {
		t.Fatal(err)
	}

	ref, err := a.r.PutCheckpoint(ctx, storeA, w)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Release != key || ref.Node != "a" || !c.inRemote(ref.Blob) || ref.Bytes != int64(len(pages)+300<<10) {
		t.Fatalf("uploaded %+v", ref)
	}
	if ref.Size >= ref.Bytes/2 {
		t.Errorf("packed %d bytes for %d, three quarters holes: not sparse", ref.Size, ref.Bytes)
	}

	// Another node asking for another checkpoint than the blob holds.
	other := w
	other.Release = "beef" + key[4:]
	if err := b.r.GetCheckpoint(ctx, storeB, ref, other); !errors.Is(err, snapshot.ErrCorrupt) {
		t.Errorf("fetch as another checkpoint: %v, want ErrCorrupt", err)
	}
	if list, _ := storeB.List(); len(list) != 0 {
		t.Fatalf("a refused fetch left %+v", list)
	}

	if err := b.r.GetCheckpoint(ctx, storeB, ref, w); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := storeB.GetFiles(ctx, w, out); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s differs after the trip through S3 (%v)", name, err)
		}
	}

	// Damaged in S3: refused, nothing imported.
	storeB.Delete(key)
	c.damage(ref.Blob)
	if err := b.r.GetCheckpoint(ctx, storeB, ref, w); !errors.Is(err, snapshot.ErrCorrupt) {
		t.Errorf("fetch of a damaged copy: %v, want ErrCorrupt", err)
	}
	if list, _ := storeB.List(); len(list) != 0 {
		t.Fatalf("a damaged fetch left %+v", list)
	}

	// Forgetting deletes it, unless a sandbox record still refers to it.
	if _, err := c.reg.UpdateSandbox(ctx, "a000xxxxxxxxxxxxxxxx", true, func(r *registry.Sandbox) error {
		*r = registry.Sandbox{ID: "a000xxxxxxxxxxxxxxxx", State: registry.SandboxPaused, Snapshot: key, Shared: &ref}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.r.ForgetCheckpoint(w.App, ref); err != nil {
		t.Fatal(err)
	}
	a.drained(t)
	if !c.inRemote(ref.Blob) {
		t.Fatal("a checkpoint a paused sandbox records was deleted")
	}
	if err := c.reg.DeleteSandbox(ctx, "a000xxxxxxxxxxxxxxxx"); err != nil {
		t.Fatal(err)
	}
	if err := a.r.ForgetCheckpoint(w.App, ref); err != nil {
		t.Fatal(err)
	}
	a.drained(t)
	if c.inRemote(ref.Blob) {
		t.Error("a forgotten checkpoint is still in S3")
	}
	if err := b.r.GetCheckpoint(ctx, storeB, ref, w); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("fetch of a deleted copy: %v, want ErrNotFound", err)
	}
}
