package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	wire "github.com/frostdev/frost/api"
)

// TestPublicBase: a control-API call carrying wire.PublicBaseHeader (a
// gateway forwarding it) is told app URLs under that base, in every answer
// that has one; a malformed base is ignored.
func TestPublicBase(t *testing.T) {
	e := newEnv(t, token).serve(t)
	hello := e.upload(t, "hello-c")
	e.deploy(t, "hello", wire.DeployRequest{Module: hello})

	get := func(method, path, base string) []byte {
		t.Helper()
		return callWithBase(t, e.h, method, path, base)
	}
	own := "http://hello.localhost:8080/"
	for _, c := range []struct{ base, want string }{
		{"", own},
		{"http://localhost:9090", "http://hello.localhost:9090/"},
		{"https://frost.example", "https://hello.frost.example/"},
		{"https://frost.example/", "https://hello.frost.example/"},
		{"ftp://frost.example", own},
		{"http://", own},
		{"http://frost.example/path", own},
		{"http://user@frost.example", own},
		{"http://frost.example?q=1", own},
		{"%zz", own},
	} {
		var d wire.AppDetail
		if err := json.Unmarshal(get("GET", "/v1/apps/hello", c.base), &d); err != nil || d.URL != c.want {
			t.Errorf("base %q: get gives %q, want %q", c.base, d.URL, c.want)
		}
		var list []wire.App
		if err := json.Unmarshal(get("GET", "/v1/apps", c.base), &list); err != nil || len(list) != 1 || list[0].URL != c.want {
			t.Errorf("base %q: list gives %+v, want %q", c.base, list, c.want)
		}
		if err := json.Unmarshal(get("POST", "/v1/apps/hello/freeze", c.base), &d); err != nil || d.URL != c.want {
			t.Errorf("base %q: freeze gives %q, want %q", c.base, d.URL, c.want)
		}
	}
}

// TestPublicBaseSandboxes: sandbox answers give the port URL under the
// public base too.
func TestPublicBaseSandboxes(t *testing.T) {
	h := newSandboxEnv(t).h
	call := func(method, path, base string) wire.Sandbox {
		t.Helper()
		var s wire.Sandbox
		if err := json.Unmarshal(callWithBase(t, h, method, path, base), &s); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return s
	}
	s := call("POST", "/v1/sandboxes", "http://localhost:9090")
	if want := "http://{port}-" + s.ID + ".localhost:9090/"; s.PortURL != want {
		t.Errorf("create: port URL %q, want %q", s.PortURL, want)
	}
	if got := call("GET", "/v1/sandboxes/"+s.ID, ""); got.PortURL == s.PortURL || got.PortURL == "" {
		t.Errorf("without the header: port URL %q, want the node's own", got.PortURL)
	}
	if got := call("GET", "/v1/sandboxes/"+s.ID, "https://frost.example"); got.PortURL != "https://{port}-"+s.ID+".frost.example/" {
		t.Errorf("get: port URL %q", got.PortURL)
	}
}

// callWithBase sends an admin call to h with the public base header (none
// for ""), fails the test unless it succeeds, and returns the body.
func callWithBase(t *testing.T, h http.Handler, method, path, base string) []byte {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if base != "" {
		req.Header.Set(wire.PublicBaseHeader, base)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, w.Code, w.Body)
	}
	return w.Body.Bytes()
}
