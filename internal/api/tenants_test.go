package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	wire "github.com/frostdev/frost/api"
)

// createTenant makes a tenant through the API and returns its token.
func (e *env) createTenant(t *testing.T, name string) string {
	t.Helper()
	resp, b := e.adminJSON(t, "POST", "/v1/tenants", wire.TenantRequest{Name: name})
	var tn wire.Tenant
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &tn) != nil || tn.Name != name || !strings.HasPrefix(tn.Token, "frostt_"+name+"_") {
		t.Fatalf("create tenant %s: %d %s", name, resp.StatusCode, b)
	}
	return tn.Token
}

func (e *env) as(t *testing.T, tok, method, path string, v any) (*http.Response, []byte) {
	t.Helper()
	var body *bytes.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	} else {
		body = bytes.NewReader(nil)
	}
	return e.do(t, method, path, "Bearer "+tok, body)
}

func appNames(t *testing.T, b []byte) []string {
	t.Helper()
	var apps []wire.App
	if err := json.Unmarshal(b, &apps); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	var names []string
	for _, a := range apps {
		names = append(names, a.Name+"@"+a.Tenant)
	}
	return names
}

// TestTenants: a tenant's token sees, changes and reaches only its own
// apps; another tenant's app answers 404 as if it did not exist, and a
// deploy to its name 409; admin-only routes answer 403; only the admin
// manages tenants; a deleted tenant's token stops working.
func TestTenants(t *testing.T) {
	e := newEnv(t, token).serve(t)
	alice, bob := e.createTenant(t, "alice"), e.createTenant(t, "bob")
	resp, b := e.adminJSON(t, "POST", "/v1/tenants", wire.TenantRequest{Name: "alice"})
	checkError(t, resp, b, http.StatusConflict, wire.CodeConflict)
	resp, b = e.adminJSON(t, "POST", "/v1/tenants", wire.TenantRequest{Name: "Not_Valid"})
	checkError(t, resp, b, http.StatusBadRequest, wire.CodeInvalidRequest)

	mod := e.upload(t, "hello-c")
	resp, b = e.as(t, alice, "POST", "/v1/apps/shop/releases", wire.DeployRequest{Module: mod})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("alice deploys shop: %d %s", resp.StatusCode, b)
	}
	before := e.deploy(t, "admin-app", wire.DeployRequest{Module: mod}).Release

	// bob: alice's app does not exist for him.
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/apps/shop"}, {"DELETE", "/v1/apps/shop"}, {"GET", "/v1/apps/shop/logs"},
		{"POST", "/v1/apps/shop/freeze"}, {"POST", "/v1/apps/shop/wake"}, {"GET", "/v1/apps/admin-app"},
	} {
		resp, b := e.as(t, bob, c.method, c.path, nil)
		checkError(t, resp, b, http.StatusNotFound, wire.CodeNotFound)
	}
	resp, b = e.as(t, bob, "PATCH", "/v1/apps/shop/env", wire.EnvRequest{Set: map[string]string{"X": "1"}})
	checkError(t, resp, b, http.StatusNotFound, wire.CodeNotFound)
	for _, name := range []string{"shop", "admin-app"} {
		resp, b = e.as(t, bob, "POST", "/v1/apps/"+name+"/releases", wire.DeployRequest{Module: mod, Mode: "session"})
		checkError(t, resp, b, http.StatusConflict, wire.CodeConflict)
	}
	resp, b = e.as(t, bob, "GET", "/v1/apps", nil)
	if resp.StatusCode != 200 || len(appNames(t, b)) != 0 {
		t.Errorf("bob lists %d %s; want none", resp.StatusCode, b)
	}
	// Nothing bob tried changed anything.
	d, err := e.node.App(context.Background(), "shop")
	if err != nil || d.Tenant != "alice" || d.Mode != "request" || len(d.EnvKeys) != 0 {
		t.Fatalf("shop after bob's attempts: %+v, %v", d, err)
	}
	if d, _ := e.node.App(context.Background(), "admin-app"); d.Release != before {
		t.Errorf("admin-app's release changed under bob's deploy")
	}

	// alice sees hers; the admin sees every app and its owner.
	resp, b = e.as(t, alice, "GET", "/v1/apps", nil)
	if got := appNames(t, b); resp.StatusCode != 200 || strings.Join(got, ",") != "shop@alice" {
		t.Errorf("alice lists %v", got)
	}
	resp, b = e.admin(t, "GET", "/v1/apps", nil)
	if got := appNames(t, b); resp.StatusCode != 200 || strings.Join(got, ",") != "admin-app@,shop@alice" {
		t.Errorf("the admin lists %d %v", resp.StatusCode, got)
	}
	resp, b = e.as(t, alice, "PATCH", "/v1/apps/shop/env", wire.EnvRequest{Set: map[string]string{"K": "v"}})
	if resp.StatusCode != 200 {
		t.Errorf("alice sets her env: %d %s", resp.StatusCode, b)
	}

	// Admin-only routes.
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/tenants"}, {"POST", "/v1/tenants"}, {"DELETE", "/v1/tenants/bob"},
		{"GET", "/v1/status"}, {"GET", "/metrics"}, {"GET", "/v1/blobs/" + mod},
	} {
		resp, b := e.as(t, alice, c.method, c.path, nil)
		checkError(t, resp, b, http.StatusForbidden, wire.CodeForbidden)
	}

	// Tokens that are almost right.
	for _, tok := range []string{alice + "x", strings.Replace(alice, "alice", "bob", 1), "frostt_carol_" + strings.Repeat("0", 48), "frostt_alice", "frostt__x"} {
		resp, b := e.as(t, tok, "GET", "/v1/apps", nil)
		checkError(t, resp, b, http.StatusUnauthorized, wire.CodeUnauthorized)
	}

	// A tenant that owns an app cannot be deleted; then it can, and its
	// token is dead.
	resp, b = e.admin(t, "DELETE", "/v1/tenants/alice", nil)
	checkError(t, resp, b, http.StatusConflict, wire.CodeConflict)
	if resp, b := e.as(t, alice, "DELETE", "/v1/apps/shop", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("alice deletes shop: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.admin(t, "DELETE", "/v1/tenants/alice", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete alice: %d %s", resp.StatusCode, b)
	}
	resp, b = e.as(t, alice, "GET", "/v1/apps", nil)
	checkError(t, resp, b, http.StatusUnauthorized, wire.CodeUnauthorized)
	resp, b = e.admin(t, "GET", "/v1/tenants", nil)
	var ts []wire.Tenant
	if resp.StatusCode != 200 || json.Unmarshal(b, &ts) != nil || len(ts) != 1 || ts[0].Name != "bob" || ts[0].Token != "" {
		t.Errorf("tenants after deleting alice: %d %s", resp.StatusCode, b)
	}
}

// TestTenantSandboxes: a tenant's sandboxes are its own in the same way.
func TestTenantSandboxes(t *testing.T) {
	e := newSandboxEnv(t)
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	alice, bob := e.createTenant(t, "alice"), e.createTenant(t, "bob")

	resp, b := e.as(t, alice, "POST", "/v1/sandboxes", wire.SandboxCreateRequest{})
	var sb wire.Sandbox
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &sb) != nil || sb.Tenant != "alice" {
		t.Fatalf("alice creates a sandbox: %d %s", resp.StatusCode, b)
	}
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/sandboxes/" + sb.ID, nil},
		{"POST", "/v1/sandboxes/" + sb.ID + "/exec", wire.ExecRequest{Cmd: []string{"true"}}},
		{"GET", "/v1/sandboxes/" + sb.ID + "/files?path=/etc/hostname", nil},
		{"POST", "/v1/sandboxes/" + sb.ID + "/pause", nil},
		{"POST", "/v1/sandboxes/" + sb.ID + "/fork", wire.ForkRequest{Count: 1}},
		{"GET", "/v1/sandboxes/" + sb.ID + "/metrics", nil},
		{"DELETE", "/v1/sandboxes/" + sb.ID, nil},
	} {
		resp, b := e.as(t, bob, c.method, c.path, c.body)
		checkError(t, resp, b, http.StatusNotFound, wire.CodeNotFound)
	}
	// Alice forks her own: the forks are hers. A snapshot is a template,
	// which every tenant sees: the admin's alone, as deleting one is.
	resp, b = e.as(t, alice, "POST", "/v1/sandboxes/"+sb.ID+"/fork", wire.ForkRequest{Count: 2})
	var forks []wire.Sandbox
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &forks) != nil || len(forks) != 2 || forks[0].Tenant != "alice" || forks[1].Tenant != "alice" {
		t.Fatalf("alice forks her sandbox: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.as(t, bob, "GET", "/v1/sandboxes/"+forks[0].ID, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("bob sees alice's fork: %d %s", resp.StatusCode, b)
	}
	// Her snapshot is her template: bob neither lists, uses nor deletes
	// it; she cannot delete the admin's.
	resp, b = e.as(t, alice, "POST", "/v1/sandboxes/"+sb.ID+"/snapshot", wire.SnapshotRequest{Name: "alices"})
	var tpl wire.Template
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &tpl) != nil || tpl.Tenant != "alice" {
		t.Fatalf("alice snapshots her sandbox: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.as(t, bob, "GET", "/v1/templates", nil); resp.StatusCode != 200 || strings.Contains(string(b), "alices") || !strings.Contains(string(b), `"base"`) {
		t.Errorf("bob lists templates: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.as(t, alice, "GET", "/v1/templates", nil); resp.StatusCode != 200 || !strings.Contains(string(b), "alices") {
		t.Errorf("alice lists templates: %d %s", resp.StatusCode, b)
	}
	resp, b = e.as(t, bob, "POST", "/v1/sandboxes", wire.SandboxCreateRequest{Template: "alices"})
	checkError(t, resp, b, http.StatusBadRequest, wire.CodeInvalidRequest)
	resp, b = e.as(t, bob, "DELETE", "/v1/templates/alices", nil)
	checkError(t, resp, b, http.StatusNotFound, wire.CodeNotFound)
	resp, b = e.as(t, alice, "DELETE", "/v1/templates/base", nil)
	checkError(t, resp, b, http.StatusBadRequest, wire.CodeInvalidRequest)
	resp, b = e.as(t, alice, "POST", "/v1/sandboxes", wire.SandboxCreateRequest{Template: "alices"})
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("alice creates from her snapshot: %d %s", resp.StatusCode, b)
	}
	// Names are each tenant's own: bob takes "alices" too, and the
	// admin names his as bob/alices.
	var bobs wire.Sandbox
	resp, b = e.as(t, bob, "POST", "/v1/sandboxes", wire.SandboxCreateRequest{})
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &bobs) != nil {
		t.Fatalf("bob creates: %d %s", resp.StatusCode, b)
	}
	resp, b = e.as(t, bob, "POST", "/v1/sandboxes/"+bobs.ID+"/snapshot", wire.SnapshotRequest{Name: "alices"})
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("bob's snapshot of the name alice uses: %d %s", resp.StatusCode, b)
	}
	resp, b = e.as(t, bob, "POST", "/v1/sandboxes", wire.SandboxCreateRequest{Template: "alices"})
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &bobs) != nil || bobs.Template != "bob/alices" {
		t.Errorf("bob creates from his alices: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.admin(t, "DELETE", "/v1/templates/bob/alices", nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("the admin deletes bob/alices: %d %s", resp.StatusCode, b)
	}
	resp, b = e.admin(t, "DELETE", "/v1/templates/bob/alices/x", nil)
	checkError(t, resp, b, http.StatusBadRequest, wire.CodeInvalidRequest)
	if resp, b := e.admin(t, "DELETE", "/v1/tenants/alice", nil); resp.StatusCode != http.StatusConflict || !strings.Contains(string(b), "template alices") {
		t.Errorf("deleting a tenant who owns a template: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.as(t, alice, "DELETE", "/v1/templates/alices", nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("alice deletes her template: %d %s", resp.StatusCode, b)
	}
	resp, b = e.as(t, bob, "GET", "/v1/sandboxes", nil)
	if resp.StatusCode != 200 || strings.Contains(string(b), sb.ID) {
		t.Errorf("bob lists %d %s", resp.StatusCode, b)
	}
	resp, b = e.as(t, alice, "GET", "/v1/sandboxes", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), sb.ID) {
		t.Errorf("alice lists %d %s", resp.StatusCode, b)
	}
	resp, b = e.as(t, alice, "POST", "/v1/templates", wire.TemplateBuildRequest{Name: "x"})
	checkError(t, resp, b, http.StatusForbidden, wire.CodeForbidden)
	if resp, b := e.as(t, alice, "DELETE", "/v1/sandboxes/"+sb.ID, nil); resp.StatusCode != http.StatusNoContent {
		t.Errorf("alice kills her sandbox: %d %s", resp.StatusCode, b)
	}
}

// FuzzSandboxBodies sends arbitrary bodies to the sandbox and tenant
// routes that take JSON (create, exec, timeout, tenant create) over a
// fake sandbox runtime: the answer is never a 5xx, a 4xx is a well-formed
// JSON error, and the sandbox made at the start keeps answering.
func FuzzSandboxBodies(f *testing.F) {
	h := newSandboxEnv(f).h
	call := func(method, path string, body []byte) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := call("POST", "/v1/sandboxes", []byte(`{}`))
	var sb wire.Sandbox
	if w.Code != http.StatusCreated || json.Unmarshal(w.Body.Bytes(), &sb) != nil {
		f.Fatalf("create: %d %s", w.Code, w.Body)
	}
	routes := []string{"/v1/sandboxes", "/v1/sandboxes/" + sb.ID + "/exec", "/v1/sandboxes/" + sb.ID + "/timeout", "/v1/tenants"}
	for i, s := range []string{
		`{}`, `{"template":"base","env":{"A":"b"},"metadata":{"k":"v"},"timeout":"1m"}`, `{"memory_bytes":-1}`, `{"memory_bytes":1}`,
		`{"cmd":["echo","hi"]}`, `{"cmd":[]}`, `{"cmd":["sh","-c","exit 3"],"env":{"A":"b"},"cwd":"/tmp"}`, `{"cmd":null}`,
		`{"timeout":"5m"}`, `{"timeout":"-1s"}`, `{"timeout":1e99}`,
		`{"name":"acme"}`, `{"name":"A_B"}`, `{"name":""}`, `null`, `[]`, ``, `{"x":1}`,
	} {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		path := routes[int(route)%len(routes)]
		w := call("POST", path, body)
		if w.Code >= 500 {
			t.Fatalf("POST %s %q: %d %s", path, body, w.Code, w.Body)
		}
		if w.Code >= 400 {
			if _, err := decodeError(w.Header(), w.Body.Bytes()); err != nil {
				t.Fatalf("POST %s %q: %d: %v", path, body, w.Code, err)
			}
		}
		if w := call("GET", "/v1/sandboxes/"+sb.ID, nil); w.Code != http.StatusOK {
			t.Fatalf("the sandbox after POST %s %q: %d %s", path, body, w.Code, w.Body)
		}
	})
}

// A tenant's token, or its E2B shape (api.E2BKey), is an E2B API key
// that acts as the tenant; a made-up secret is refused.
func TestTenantE2BKeys(t *testing.T) {
	e := newSandboxEnv(t)
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	alice := e.createTenant(t, "alice")
	e.createTenant(t, "bob")
	call := func(key, method, path string) (int, []byte) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader("{}"))
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for _, key := range []string{alice, wire.E2BKey(alice)} {
		status, b := call(key, "POST", "/sandboxes")
		var sb struct {
			SandboxID string `json:"sandboxID"`
		}
		if status != http.StatusCreated || json.Unmarshal(b, &sb) != nil {
			t.Fatalf("create with %s: %d %s", key[:8], status, b)
		}
		resp, b := e.admin(t, "GET", "/v1/sandboxes/"+sb.SandboxID, nil)
		var s wire.Sandbox
		if resp.StatusCode != 200 || json.Unmarshal(b, &s) != nil || s.Tenant != "alice" {
			t.Fatalf("a sandbox created with %s: %d %s", key[:8], resp.StatusCode, b)
		}
	}
	// A key found is remembered, and forgotten as its tenant goes.
	carol := wire.E2BKey(e.createTenant(t, "carol"))
	for range 2 {
		if status, b := call(carol, "GET", "/v2/sandboxes"); status != http.StatusOK {
			t.Fatalf("carol's key: %d %s", status, b)
		}
	}
	if resp, b := e.admin(t, "DELETE", "/v1/tenants/carol", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete carol: %d %s", resp.StatusCode, b)
	}
	if status, b := call(carol, "GET", "/v2/sandboxes"); status != http.StatusUnauthorized {
		t.Fatalf("a deleted tenant's key: %d %s", status, b)
	}
	for _, key := range []string{"e2b_0123456789abcdef", "frostt_alice_0123", "e2b_", "frostt_nobody_00"} {
		if status, b := call(key, "GET", "/v2/sandboxes"); status != http.StatusUnauthorized {
			t.Errorf("key %q: %d %s", key, status, b)
		}
	}
}

// BenchmarkE2BKeys is an E2B call's authentication (GET /v2/sandboxes on
// an empty server, in process) with 1,000 tenants, by key: the admin's,
// a tenant's token (one lookup), its e2b_SECRET shape (a hash per tenant
// until the one that matches: the last here).
func BenchmarkE2BKeys(b *testing.B) {
	e := newSandboxEnv(b)
	var last string
	for i := range 1000 {
		r := httptest.NewRequest("POST", "/v1/tenants", strings.NewReader(fmt.Sprintf(`{"name":"t%04d"}`, i)))
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		var tn wire.Tenant
		if w.Code != http.StatusCreated || json.Unmarshal(w.Body.Bytes(), &tn) != nil {
			b.Fatalf("tenant %d: %d %s", i, w.Code, w.Body)
		}
		last = tn.Token
	}
	for _, k := range []struct{ name, key string }{
		{"admin", "e2b_" + strings.TrimPrefix(token, "frost_")},
		{"tenant-token", last},
		{"tenant-e2b-shape", wire.E2BKey(last)},
	} {
		b.Run(k.name, func(b *testing.B) {
			for b.Loop() {
				r := httptest.NewRequest("GET", "/v2/sandboxes", nil)
				r.Header.Set("X-API-Key", k.key)
				w := httptest.NewRecorder()
				e.h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
