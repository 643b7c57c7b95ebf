package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/registry/bolt"
	"github.com/frostdev/frost/internal/sandbox"
	"github.com/frostdev/frost/internal/sandbox/sandboxtest"
	"github.com/frostdev/frost/internal/snapshot"
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

// Template names are each tenant's own: two tenants' snapshots of one
// name live side by side, each used by its tenant; a tenant's name comes
// before the admin's; the admin names a tenant's as TENANT/NAME; an
// admin's build of a name a tenant uses replaces nothing of the tenant's.
func TestTemplateNamesPerTenant(t *testing.T) {
	e := newEnv(t)
	admin := context.Background()
	acme, bob := registry.WithTenant(admin, "acme"), registry.WithTenant(admin, "bob")
	snap := func(ctx context.Context, name, content string) {
		t.Helper()
		src, err := e.m.Create(ctx, api.SandboxCreateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.WriteFile(ctx, src.ID, "/root/who", 0, strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.m.Snapshot(ctx, src.ID, name); err != nil {
			t.Fatalf("%s's snapshot %q: %v", content, name, err)
		}
	}
	// from creates a sandbox of ref and says whose template it started
	// from, and the key its record keeps.
	from := func(ctx context.Context, ref string) (string, string) {
		t.Helper()
		sb, err := e.m.Create(ctx, api.SandboxCreateRequest{Template: ref})
		if err != nil {
			t.Fatalf("create from %q: %v", ref, err)
		}
		var b bytes.Buffer
		if err := e.m.ReadFile(ctx, sb.ID, "/root/who", &b); err != nil && !errors.Is(err, sandbox.ErrNoFile) {
			t.Fatal(err)
		}
		return b.String(), sb.Template // "": a built template's
	}
	snap(acme, "app", "acme")
	snap(bob, "app", "bob") // refused while names were global
	if who, key := from(acme, "app"); who != "acme" || key != "acme/app" {
		t.Errorf("acme's app: %s's, key %q", who, key)
	}
	if who, key := from(bob, "app"); who != "bob" || key != "bob/app" {
		t.Errorf("bob's app: %s's, key %q", who, key)
	}
	if who, _ := from(admin, "bob/app"); who != "bob" {
		t.Errorf("the admin's bob/app: %s's", who)
	}
	if _, err := e.m.Create(bob, api.SandboxCreateRequest{Template: "acme/app"}); !errors.Is(err, sandbox.ErrInvalid) {
		t.Errorf("bob creates from acme/app: %v", err)
	}
	if _, err := e.m.Create(admin, api.SandboxCreateRequest{Template: "app"}); !errors.Is(err, sandbox.ErrInvalid) {
		t.Errorf("the admin's plain app, before it has one: %v", err)
	}

	// The admin's app: the admin's, and nothing of the tenants' changes.
	snap(admin, "app", "admin")
	if who, key := from(admin, "app"); who != "admin" || key != "app" {
		t.Errorf("the admin's app: %s's, key %q", who, key)
	}
	if who, _ := from(acme, "app"); who != "acme" {
		t.Errorf("acme's app beside the admin's: %s's", who)
	}
	// The admin's build of a name bob uses is the admin's alone.
	snap(bob, "tool", "bob")
	if _, err := e.m.BuildTemplate(admin, "tool", e.dir, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	if who, key := from(bob, "tool"); who != "bob" || key != "bob/tool" {
		t.Errorf("bob's tool after the admin built one: %s's, key %q", who, key)
	}
	if who, key := from(admin, "tool"); who != "" || key != "tool" {
		t.Errorf("the admin's built tool: %q's, key %q", who, key)
	}
	// A tenant cannot take a name of the admin's, which it sees.
	snapErr := func(ctx context.Context, name string) error {
		src, err := e.m.Create(ctx, api.SandboxCreateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.m.Snapshot(ctx, src.ID, name)
		return err
	}
	if err := snapErr(bob, "base"); !errors.Is(err, sandbox.ErrInvalid) || !strings.Contains(err.Error(), "the admin's") {
		t.Errorf("bob's snapshot named base: %v", err)
	}
	if err := snapErr(acme, "app"); !errors.Is(err, sandbox.ErrInvalid) {
		t.Errorf("acme's second app: %v", err)
	}

	refs := func(ctx context.Context) []string {
		list, err := e.m.Templates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, t := range list {
			out = append(out, api.TemplateRef(t))
		}
		return out
	}
	if got := refs(admin); !slices.Equal(got, []string{"acme/app", "app", "base", "bob/app", "bob/tool", "tool"}) {
		t.Errorf("the admin's list: %v", got)
	}
	if got := refs(bob); !slices.Equal(got, []string{"app", "base", "bob/app", "bob/tool", "tool"}) {
		t.Errorf("bob's list: %v", got)
	}

	// Deletes: each its own; the admin a tenant's by its full name.
	if err := e.m.DeleteTemplate(bob, "app"); err != nil {
		t.Fatal(err)
	}
	if who, _ := from(bob, "app"); who != "admin" {
		t.Errorf("bob's app after bob deleted its own: %s's", who)
	}
	if err := e.m.DeleteTemplate(bob, "app"); !errors.Is(err, sandbox.ErrForbidden) {
		t.Errorf("bob deletes the admin's app: %v", err)
	}
	if err := e.m.DeleteTemplate(bob, "acme/app"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("bob deletes acme/app: %v", err)
	}
	if err := e.m.DeleteTemplate(admin, "acme/app"); err != nil {
		t.Fatal(err)
	}
	if who, _ := from(acme, "app"); who != "admin" {
		t.Errorf("acme's app after the admin deleted acme's: %s's", who)
	}
	if err := e.m.DeleteTemplate(admin, "acme//app"); !errors.Is(err, sandbox.ErrInvalid) {
		t.Errorf("a malformed name: %v", err)
	}
}

// A tenant's template recorded before names were per tenant (under its
// plain name, its Tenant set) goes on working for its tenant alone, and
// the admin cannot build over it.
func TestTemplateRecordedUnderPlainName(t *testing.T) {
	dir := t.TempDir()
	reg, err := bolt.Open(filepath.Join(dir, "reg.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	snaps, err := snapshot.Open(filepath.Join(dir, "snaps"), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := registry.Template{Name: "old", Tenant: "acme", Runtime: "fake", RootFS: dir}
	st := &plainKeyed{Store: reg, old: old}
	cfg := sandbox.DefaultConfig()
	cfg.Dir, cfg.BaseRootFS, cfg.Key = filepath.Join(dir, "scratch"), dir, []byte("0123456789abcdef0123456789abcdef")
	m, err := sandbox.New(cfg, st, snaps, sandboxtest.New())
	if err != nil {
		t.Fatal(err)
	}
	admin := context.Background()
	acme, bob := registry.WithTenant(admin, "acme"), registry.WithTenant(admin, "bob")
	sb, err := m.Create(acme, api.SandboxCreateRequest{Template: "old"})
	if err != nil || sb.Template != "old" {
		t.Fatalf("acme creates from its old template: %+v %v", sb, err)
	}
	if _, err := m.Create(acme, api.SandboxCreateRequest{Template: "acme/old"}); err != nil {
		t.Errorf("acme/old: %v", err)
	}
	if _, err := m.Create(bob, api.SandboxCreateRequest{Template: "old"}); !errors.Is(err, sandbox.ErrInvalid) {
		t.Errorf("bob creates from acme's old template: %v", err)
	}
	if _, err := m.Create(admin, api.SandboxCreateRequest{Template: "old"}); !errors.Is(err, sandbox.ErrInvalid) {
		t.Errorf("the admin's plain old is the admin's, and there is none: %v", err)
	}
	if _, err := m.BuildTemplate(admin, "old", dir, nil, io.Discard); !errors.Is(err, sandbox.ErrInvalid) {
		t.Errorf("the admin builds over acme's old template: %v", err)
	}
	if err := m.DeleteTemplate(bob, "old"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("bob deletes acme's old template: %v", err)
	}
	if err := m.DeleteTemplate(acme, "old"); err != nil || !st.gone {
		t.Fatalf("acme deletes its old template: %v (gone %v)", err, st.gone)
	}
}

// plainKeyed is a registry holding one template under its plain name, as
// the registry kept a tenant's before names were per tenant.
type plainKeyed struct {
	*bolt.Store
	old  registry.Template
	gone bool
}

func (p *plainKeyed) GetTemplate(ctx context.Context, key string) (registry.Template, error) {
	if key == p.old.Name && !p.gone {
		return p.old, nil
	}
	return p.Store.GetTemplate(ctx, key)
}

func (p *plainKeyed) DeleteTemplate(ctx context.Context, key string) error {
	if key == p.old.Name && !p.gone {
		p.gone = true
		return nil
	}
	return p.Store.DeleteTemplate(ctx, key)
}
