package registrytest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/registry"
)

func fullSandbox(id string) registry.Sandbox {
	return registry.Sandbox{
		ID: id, Runtime: "gvisor", Template: "base", State: registry.SandboxPaused,
		Limits:   registry.SandboxLimits{MemoryBytes: 512 << 20, CPUs: 1.5, Pids: 256},
		Env:      map[string]string{"K": "v"},
		Metadata: map[string]string{"owner": "agent-7"},
		Timeout:  5 * time.Minute, OnTimeout: "pause", ExpiresAt: at.Add(time.Hour),
		Snapshot: "ab", Pauses: 2, CreatedAt: at, UpdatedAt: at.Add(time.Second),
	}
}

// testSandboxes: sandboxes round-trip every field, update atomically,
// list sorted, and delete.
func testSandboxes(t *testing.T, s registry.Store) {
	ctx := context.Background()
	if _, err := s.GetSandbox(ctx, "nope"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("GetSandbox missing = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateSandbox(ctx, "nope", false, func(*registry.Sandbox) error { return nil }); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("UpdateSandbox missing without create = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"zz9", "aa1", "mm5"} {
		want := fullSandbox(id)
		got, err := s.UpdateSandbox(ctx, id, true, func(sb *registry.Sandbox) error {
			if !reflect.DeepEqual(*sb, registry.Sandbox{ID: id}) {
				return fmt.Errorf("create got %+v, want a zero sandbox with its ID", *sb)
			}
			*sb = want
			return nil
		})
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("UpdateSandbox create = %+v, %v", got, err)
		}
	}
	got, err := s.GetSandbox(ctx, "mm5")
	if err != nil || !reflect.DeepEqual(got, fullSandbox("mm5")) {
		t.Fatalf("GetSandbox = %+v, %v; want %+v", got, err, fullSandbox("mm5"))
	}
	got.Env["K"] = "changed" // a copy: the store must not see it
	if again, _ := s.GetSandbox(ctx, "mm5"); again.Env["K"] != "v" {
		t.Fatal("a returned sandbox aliases the stored one")
	}
	boom := errors.New("boom")
	if _, err := s.UpdateSandbox(ctx, "mm5", false, func(sb *registry.Sandbox) error { sb.Pauses = 99; return boom }); err != boom {
		t.Fatalf("fn error = %v, want it exactly", err)
	}
	if _, err := s.UpdateSandbox(ctx, "mm5", false, func(sb *registry.Sandbox) error { sb.ID = "other"; return nil }); err == nil {
		t.Fatal("UpdateSandbox let fn change the ID")
	}
	if again, _ := s.GetSandbox(ctx, "mm5"); again.Pauses != 2 {
		t.Fatalf("a failed update was stored: pauses %d", again.Pauses)
	}
	list, err := s.ListSandboxes(ctx)
	if err != nil || len(list) != 3 || list[0].ID != "aa1" || list[1].ID != "mm5" || list[2].ID != "zz9" {
		t.Fatalf("ListSandboxes = %v, %v", list, err)
	}
	if err := s.DeleteSandbox(ctx, "mm5"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSandbox(ctx, "mm5"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second DeleteSandbox = %v, want ErrNotFound", err)
	}
	if _, err := s.GetSandbox(ctx, "mm5"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("GetSandbox after delete = %v", err)
	}

	// Concurrent updates of one sandbox are serialised: none is lost.
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.UpdateSandbox(ctx, "aa1", false, func(sb *registry.Sandbox) error { sb.Pauses++; return nil }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if sb, _ := s.GetSandbox(ctx, "aa1"); sb.Pauses != 2+16 {
		t.Fatalf("after 16 concurrent increments pauses = %d, want %d", sb.Pauses, 2+16)
	}
}

// testTemplates: templates round-trip, replace by name, list sorted, delete.
func testTemplates(t *testing.T, s registry.Store) {
	ctx := context.Background()
	if _, err := s.GetTemplate(ctx, "base"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("GetTemplate missing = %v", err)
	}
	want := registry.Template{Name: "py", Runtime: "gvisor", RootFS: "/cache/rootfs/abc", Setup: []string{"pip install x"}, Snapshot: "cd", CreatedAt: at}
	for _, tp := range []registry.Template{{Name: "base", Runtime: "gvisor", RootFS: "/r", CreatedAt: at}, {Name: "py", RootFS: "/old"}, want} {
		if err := s.PutTemplate(ctx, tp); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetTemplate(ctx, "py")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("GetTemplate = %+v, %v; want %+v", got, err, want)
	}
	list, err := s.ListTemplates(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "base" || list[1].Name != "py" {
		t.Fatalf("ListTemplates = %v, %v", list, err)
	}
	if err := s.DeleteTemplate(ctx, "py"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTemplate(ctx, "py"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second DeleteTemplate = %v", err)
	}
	if err := s.PutTemplate(ctx, registry.Template{}); err == nil {
		t.Fatal("PutTemplate accepted an empty name")
	}

	// Tenants' names are their own: the admin's "py" and two tenants'
	// live side by side under their keys, and go one at a time.
	mine := []registry.Template{{Name: "py", RootFS: "/admin"}, {Name: "py", Tenant: "acme", RootFS: "/acme"}, {Name: "py", Tenant: "bee", RootFS: "/bee"}}
	for _, tp := range mine {
		if err := s.PutTemplate(ctx, tp); err != nil {
			t.Fatal(err)
		}
	}
	for _, tp := range mine {
		if got, err := s.GetTemplate(ctx, registry.TemplateKey(tp.Tenant, "py")); err != nil || got.RootFS != tp.RootFS || got.Tenant != tp.Tenant {
			t.Fatalf("GetTemplate(%q) = %+v, %v; want %+v", tp.Key(), got, err, tp)
		}
	}
	list, err = s.ListTemplates(ctx)
	var keys []string
	for _, tp := range list {
		keys = append(keys, tp.Key())
	}
	if err != nil || !slices.Equal(keys, []string{"acme/py", "base", "bee/py", "py"}) {
		t.Fatalf("ListTemplates keys = %q, %v; want acme/py base bee/py py", keys, err)
	}
	if err := s.DeleteTemplate(ctx, "acme/py"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetTemplate(ctx, "py"); err != nil || got.RootFS != "/admin" {
		t.Fatalf("the admin's py after acme's went: %+v, %v", got, err)
	}
	if _, err := s.GetTemplate(ctx, "acme/py"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("acme's py after its delete: %v", err)
	}
}

func testTenants(t *testing.T, s registry.Store) {
	ctx := context.Background()
	if _, err := s.GetTenant(ctx, "acme"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("GetTenant missing = %v", err)
	}
	want := registry.Tenant{Name: "acme", TokenHash: "ab12", CreatedAt: at}
	for _, tn := range []registry.Tenant{{Name: "zeta", TokenHash: "z", CreatedAt: at}, want} {
		if err := s.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateTenant(ctx, registry.Tenant{Name: "acme", TokenHash: "other"}); !errors.Is(err, registry.ErrExists) {
		t.Fatalf("CreateTenant of a taken name = %v, want ErrExists", err)
	}
	got, err := s.GetTenant(ctx, "acme")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("GetTenant = %+v, %v; want %+v (not replaced)", got, err, want)
	}
	list, err := s.ListTenants(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "acme" || list[1].Name != "zeta" {
		t.Fatalf("ListTenants = %v, %v", list, err)
	}
	if err := s.DeleteTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTenant(ctx, "acme"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second DeleteTenant = %v", err)
	}
	for _, bad := range []string{"", "Acme", "a/b", "../x"} {
		if err := s.CreateTenant(ctx, registry.Tenant{Name: bad}); err == nil {
			t.Errorf("CreateTenant accepted the name %q", bad)
		}
	}
}
