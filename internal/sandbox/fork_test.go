package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/sandbox"
)

// TestSnapshotAndFork: a running sandbox's state becomes a template (it
// runs on after) and forks, each with its files, settings and the
// caller's tenancy; a paused one stays paused; the fork's checkpoint is
// gone once the forks started; names, counts and the base template are
// checked; a deleted template is gone, its sandboxes not.
func TestSnapshotAndFork(t *testing.T) {
	e := newEnv(t)
	ctx := registry.WithTenant(context.Background(), "acme")
	src, err := e.m.Create(ctx, api.SandboxCreateRequest{Env: map[string]string{"K": "v"}, Metadata: map[string]string{"who": "agent"}, MemoryBytes: 256 << 20, Timeout: api.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.WriteFile(ctx, src.ID, "/root/notes.txt", 0, strings.NewReader("step 1")); err != nil {
		t.Fatal(err)
	}
	read := func(id, p string) string {
		t.Helper()
		var b bytes.Buffer
		if err := e.m.ReadFile(ctx, id, p, &b); err != nil {
			t.Fatalf("read %s:%s: %v", id, p, err)
		}
		return b.String()
	}
	checkpoints := func() int {
		list, err := e.snaps.List()
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}
	snapsBefore := checkpoints()

	e.advance(10 * time.Minute)
	tpl, err := e.m.Snapshot(ctx, src.ID, "after-step-1")
	if err != nil || tpl.Name != "after-step-1" || tpl.From != src.ID || tpl.Snapshot == nil {
		t.Fatalf("snapshot: %+v %v", tpl, err)
	}
	// Running again, expiring when it would have.
	if got, _ := e.m.Get(ctx, src.ID); got.State != api.SandboxRunning || !got.ExpiresAt.Equal(src.ExpiresAt) {
		t.Fatalf("after the snapshot: %s, expires %v (was %v)", got.State, got.ExpiresAt, src.ExpiresAt)
	}
	// It goes on; what comes from the template is the state at the snapshot.
	e.m.WriteFile(ctx, src.ID, "/root/notes.txt", 0, strings.NewReader("step 2"))
	fromTpl, err := e.m.Create(ctx, api.SandboxCreateRequest{Template: "after-step-1"})
	if err != nil || fromTpl.Boot != "restore" || read(fromTpl.ID, "/root/notes.txt") != "step 1" {
		t.Fatalf("create from the snapshot: %+v %v", fromTpl, err)
	}
	if _, err := e.m.Snapshot(ctx, src.ID, "after-step-1"); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("a name in use: %v", err)
	}
	if _, err := e.m.Snapshot(ctx, src.ID, "Bad Name"); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("a bad name: %v", err)
	}

	forks, err := e.m.Fork(ctx, src.ID, 3, 0)
	if err != nil || len(forks) != 3 {
		t.Fatalf("fork: %d %v", len(forks), err)
	}
	for _, f := range forks {
		if f.ID == src.ID || f.State != api.SandboxRunning || f.Tenant != "acme" || f.Template != "base" || f.Metadata["who"] != "agent" ||
			f.Limits.MemoryBytes != 256<<20 || read(f.ID, "/root/notes.txt") != "step 2" {
			t.Fatalf("fork: %+v", f)
		}
	}
	if got, _ := e.m.Get(ctx, src.ID); got.State != api.SandboxRunning {
		t.Fatalf("after the fork the sandbox is %s", got.State)
	}
	// A paused sandbox forks without waking.
	if _, err := e.m.Pause(ctx, src.ID); err != nil {
		t.Fatal(err)
	}
	more, err := e.m.Fork(ctx, src.ID, 1, 10*time.Minute)
	if err != nil || len(more) != 1 || more[0].ExpiresAt.Sub(e.now) != 10*time.Minute || read(more[0].ID, "/root/notes.txt") != "step 2" {
		t.Fatalf("fork of a paused one: %+v %v", more, err)
	}
	if got, _ := e.m.Get(ctx, src.ID); got.State != api.SandboxPaused {
		t.Fatalf("after forking it paused, it is %s", got.State)
	}
	for _, n := range []int{0, -1, sandbox.MaxForks + 1} {
		if _, err := e.m.Fork(ctx, src.ID, n, 0); !errors.Is(err, sandbox.ErrInvalid) {
			t.Fatalf("fork %d: %v", n, err)
		}
	}
	// The fork checkpoints are gone; the template's and the sandboxes' stay.
	// (The paused source has one, the snapshot template one.)
	if got := checkpoints(); got != snapsBefore+2 {
		t.Fatalf("%d checkpoints in the store, want %d", got, snapsBefore+2)
	}

	if err := e.m.DeleteTemplate(ctx, "after-step-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Create(ctx, api.SandboxCreateRequest{Template: "after-step-1"}); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("create from a deleted template: %v", err)
	}
	if read(fromTpl.ID, "/root/notes.txt") != "step 1" {
		t.Fatal("a sandbox made from the deleted template lost its file")
	}
	if err := e.m.DeleteTemplate(ctx, "base"); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("delete base: %v", err)
	}
	if err := e.m.DeleteTemplate(ctx, "nope"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("delete a missing one: %v", err)
	}
}

// TestConcurrentForks: forks of one sandbox at the same time all start
// (each takes the checkpoint in turn), and the sandbox runs on.
func TestConcurrentForks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	src, err := e.m.Create(ctx, api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	e.m.WriteFile(ctx, src.ID, "/root/f", 0, strings.NewReader("x"))
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			forks, err := e.m.Fork(ctx, src.ID, 2, 0)
			if err == nil && len(forks) != 2 {
				err = errors.New("not two forks")
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := e.m.Get(ctx, src.ID); got.State != api.SandboxRunning {
		t.Fatalf("after the forks the sandbox is %s", got.State)
	}
}

// TestPinnedCheckpointOutlivesItsResume: a checkpoint a capture reads
// stays in the store when a resume spends it, and goes at the last unpin;
// unpinned, a resume removes it as before.
func TestPinnedCheckpointOutlivesItsResume(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb, err := e.m.Create(ctx, api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cycle := func() string {
		t.Helper()
		p, err := e.m.Pause(ctx, sb.ID)
		if err != nil || p.Snapshot == nil {
			t.Fatalf("pause: %+v %v", p, err)
		}
		return p.Snapshot.Release
	}
	exists := func(key string) bool {
		_, _, _, err := e.snaps.Stat(key)
		return err == nil
	}
	k := cycle()
	unpin1, unpin2 := e.m.PinCheckpoint(k), e.m.PinCheckpoint(k)
	if _, err := e.m.Resume(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	e.m.WaitSpent()
	if !exists(k) {
		t.Fatal("a pinned checkpoint was removed by the resume that spent it")
	}
	unpin1()
	if !exists(k) {
		t.Fatal("removed while another reader still pinned it")
	}
	unpin2()
	if exists(k) {
		t.Fatal("the spent checkpoint stayed after the last unpin")
	}
	k = cycle()
	if _, err := e.m.Resume(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	e.m.WaitSpent()
	if exists(k) {
		t.Fatal("an unpinned spent checkpoint stayed")
	}
}

// A tenant's snapshot is its own template: listed, used and deleted by it
// alone; the admin sees and deletes every one; a tenant cannot delete the
// admin's.
func TestTenantTemplates(t *testing.T) {
	e := newEnv(t)
	admin := context.Background()
	acme, bob := registry.WithTenant(admin, "acme"), registry.WithTenant(admin, "bob")
	src, err := e.m.Create(acme, api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := e.m.Snapshot(acme, src.ID, "acme-ready")
	if err != nil || tpl.Tenant != "acme" {
		t.Fatalf("acme's snapshot: %+v %v", tpl, err)
	}
	adminSrc, _ := e.m.Create(admin, api.SandboxCreateRequest{})
	if _, err := e.m.Snapshot(admin, adminSrc.ID, "shared"); err != nil {
		t.Fatal(err)
	}
	names := func(ctx context.Context) []string {
		list, err := e.m.Templates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, t := range list {
			out = append(out, t.Name)
		}
		slices.Sort(out)
		return out
	}
	if got := names(bob); !slices.Equal(got, []string{"base", "shared"}) {
		t.Errorf("bob's templates: %v", got)
	}
	if got := names(acme); !slices.Equal(got, []string{"acme-ready", "base", "shared"}) {
		t.Errorf("acme's templates: %v", got)
	}
	if got := names(admin); !slices.Equal(got, []string{"acme-ready", "base", "shared"}) {
		t.Errorf("the admin's templates: %v", got)
	}
	if _, err := e.m.Create(bob, api.SandboxCreateRequest{Template: "acme-ready"}); !errors.Is(err, sandbox.ErrInvalid) {
		t.Errorf("bob creates from acme's template: %v", err)
	}
	if _, err := e.m.Create(bob, api.SandboxCreateRequest{Template: "shared"}); err != nil {
		t.Errorf("bob creates from the admin's template: %v", err)
	}
	if _, err := e.m.Create(acme, api.SandboxCreateRequest{Template: "acme-ready"}); err != nil {
		t.Errorf("acme creates from its template: %v", err)
	}
	if err := e.m.DeleteTemplate(bob, "acme-ready"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("bob deletes acme's template: %v", err)
	}
	if err := e.m.DeleteTemplate(acme, "shared"); !errors.Is(err, sandbox.ErrForbidden) {
		t.Errorf("acme deletes the admin's template: %v", err)
	}
	if err := e.m.DeleteTemplate(acme, "acme-ready"); err != nil {
		t.Errorf("acme deletes its template: %v", err)
	}
	if err := e.m.DeleteTemplate(admin, "shared"); err != nil {
		t.Errorf("the admin deletes its template: %v", err)
	}
}
