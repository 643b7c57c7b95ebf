package e2e

import (
	"strings"
	"testing"

	"github.com/frostdev/frost/internal/testguest"
)

// TestTenantsCLI: the admin creates a tenant with the CLI; the tenant's
// token deploys and manages its own app, which serves as any other; a
// second tenant sees nothing of it and cannot take its name; a tenant
// cannot manage tenants; the first cannot be removed while it owns an app.
func TestTenantsCLI(t *testing.T) {
	s := startServer(t, "")
	alice := strings.TrimSpace(s.mustFrost("tenant", "create", "alice"))
	bob := strings.TrimSpace(s.mustFrost("tenant", "create", "bob"))
	if !strings.HasPrefix(alice, "frostt_alice_") {
		t.Fatalf("tenant create printed %q, want the token", alice)
	}
	if out, errs, code := s.frostWithToken(alice, "deploy", "shop", testguest.Path(t, "hello-c")); code != 0 {
		t.Fatalf("alice deploys: %d %s %s", code, out, errs)
	}
	if resp, body := s.get("shop", "/"); resp.StatusCode != 200 || body != "hello from frost\n" {
		t.Fatalf("alice's app: %d %q", resp.StatusCode, body)
	}
	if out, _, code := s.frostWithToken(bob, "apps"); code != 0 || strings.Contains(out, "shop") {
		t.Errorf("bob's frost apps: %d %q", code, out)
	}
	if _, errs, code := s.frostWithToken(bob, "app", "shop"); code == 0 || !strings.Contains(errs, "no app named") {
		t.Errorf("bob's frost app shop: %d %q", code, errs)
	}
	if _, errs, code := s.frostWithToken(bob, "deploy", "shop", testguest.Path(t, "cgi")); code == 0 || !strings.Contains(errs, "taken") {
		t.Errorf("bob deploys over shop: %d %q", code, errs)
	}
	if _, errs, code := s.frostWithToken(alice, "tenant", "ls"); code == 0 || !strings.Contains(errs, "admin token") {
		t.Errorf("alice's frost tenant ls: %d %q", code, errs)
	}
	if _, errs, code := s.frost("tenant", "rm", "alice"); code == 0 || !strings.Contains(errs, "still owns app shop") {
		t.Errorf("removing a tenant with an app: %d %q", code, errs)
	}
	if out := s.mustFrost("apps"); !strings.Contains(out, "shop") {
		t.Errorf("the admin's frost apps lacks shop: %q", out)
	}
	if resp, body := s.get("shop", "/"); resp.StatusCode != 200 || body != "hello from frost\n" {
		t.Fatalf("alice's app after bob's attempts: %d %q", resp.StatusCode, body)
	}
}
