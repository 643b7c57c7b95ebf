package e2b

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/sandbox/sandboxtest"
)

const token = "frost_00ff11ee"

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(Config{AdminToken: token, Domain: "frost.test"}, newManager(t)))
	t.Cleanup(srv.Close)
	return srv
}

// call makes a request with the SDK's API key and decodes a JSON answer.
func call(t *testing.T, srv *httptest.Server, method, path string, body any, out any) (int, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, srv.URL+path, rd)
	req.Header.Set("X-API-Key", "e2b_00ff11ee")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode, resp.Header
}

type errBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func TestControlPlane(t *testing.T) {
	srv := newServer(t)

	// Without the key: 401 with E2B's error body.
	resp, err := http.Post(srv.URL+"/v2/sandboxes", "application/json", bytes.NewReader([]byte("{}")))
	if err != nil {
		t.Fatal(err)
	}
	var eb errBody
	json.NewDecoder(resp.Body).Decode(&eb)
	resp.Body.Close()
	if resp.StatusCode != 401 || eb.Code != 401 || eb.Message == "" {
		t.Fatalf("no key: %d %+v", resp.StatusCode, eb)
	}

	var sb sandboxBody
	status, _ := call(t, srv, "POST", "/v2/sandboxes", map[string]any{
		"templateID": "base", "timeout": 120, "metadata": map[string]string{"user": "ann"},
		"envVars": map[string]string{"K": "v"}, "secure": true, "allow_internet_access": true,
		"network": map[string]any{"allowOut": []string{}}, // fields Frost ignores are accepted
	}, &sb)
	if status != 201 || sb.SandboxID == "" || sb.ClientID == "" || sb.EnvdVersion != EnvdVersion || sb.EnvdAccessToken == "" || sb.Domain == nil || *sb.Domain != "frost.test" || sb.TemplateID != "base" {
		t.Fatalf("create: %d %+v", status, sb)
	}
	var other sandboxBody
	call(t, srv, "POST", "/sandboxes", map[string]any{"metadata": map[string]string{"user": "bob"}}, &other)

	var got listedSandbox
	if status, _ := call(t, srv, "GET", "/sandboxes/"+sb.SandboxID, nil, &got); status != 200 || got.State != "running" || got.Metadata["user"] != "ann" || got.EnvdAccessToken == "" || got.MemoryMB == 0 || got.CPUCount < 1 {
		t.Fatalf("get: %d %+v", status, got)
	}
	var list []listedSandbox
	call(t, srv, "GET", "/v2/sandboxes?metadata=user%3Dann&state=running,paused", nil, &list)
	if len(list) != 1 || list[0].SandboxID != sb.SandboxID {
		t.Fatalf("list by metadata: %+v", list)
	}
	_, hdr := call(t, srv, "GET", "/v2/sandboxes?limit=1", nil, &list)
	if len(list) != 1 || hdr.Get("X-Next-Token") == "" {
		t.Fatalf("page 1: %d, next %q", len(list), hdr.Get("X-Next-Token"))
	}
	_, hdr = call(t, srv, "GET", "/v2/sandboxes?limit=1&nextToken="+hdr.Get("X-Next-Token"), nil, &list)
	if len(list) != 1 || hdr.Get("X-Next-Token") != "" {
		t.Fatalf("page 2: %d, next %q", len(list), hdr.Get("X-Next-Token"))
	}

	if status, _ := call(t, srv, "POST", "/sandboxes/"+sb.SandboxID+"/timeout", map[string]int{"timeout": 600}, nil); status != 204 {
		t.Fatalf("timeout: %d", status)
	}
	if status, _ := call(t, srv, "POST", "/sandboxes/"+sb.SandboxID+"/pause", map[string]bool{"memory": true}, nil); status != 204 {
		t.Fatalf("pause: %d", status)
	}
	if status, _ := call(t, srv, "POST", "/sandboxes/"+sb.SandboxID+"/pause", nil, &eb); status != 409 || eb.Code != 409 {
		t.Fatalf("pause again: %d %+v", status, eb)
	}
	var back sandboxBody
	if status, _ := call(t, srv, "POST", "/v2/sandboxes/"+sb.SandboxID+"/connect", map[string]int{"timeout": 300}, &back); status != 201 || back.SandboxID != sb.SandboxID || back.EnvdAccessToken == "" {
		t.Fatalf("connect to a paused sandbox: %d %+v", status, back)
	}
	if status, _ := call(t, srv, "POST", "/sandboxes/"+sb.SandboxID+"/connect", map[string]int{"timeout": 300}, &back); status != 200 {
		t.Fatalf("connect to a running sandbox: %d", status)
	}
	if status, _ := call(t, srv, "POST", "/sandboxes/"+sb.SandboxID+"/resume", map[string]int{"timeout": 300}, &eb); status != 409 {
		t.Fatalf("resume of a running sandbox: %d", status)
	}
	if status, _ := call(t, srv, "DELETE", "/sandboxes/"+sb.SandboxID, nil, nil); status != 204 {
		t.Fatalf("kill: %d", status)
	}
	if status, _ := call(t, srv, "DELETE", "/sandboxes/"+sb.SandboxID, nil, &eb); status != 404 || eb.Code != 404 {
		t.Fatalf("kill again: %d %+v", status, eb)
	}
	if status, _ := call(t, srv, "GET", "/sandboxes/"+sb.SandboxID, nil, &eb); status != 404 || eb.Code != 404 {
		t.Fatalf("get after kill: %d %+v", status, eb)
	}
	if status, _ := call(t, srv, "POST", "/v2/sandboxes", map[string]any{"templateID": "nope"}, &eb); status != 400 || eb.Code != 400 {
		t.Fatalf("unknown template: %d %+v", status, eb)
	}
}

// FuzzControlBodies sends arbitrary bodies to the E2B control plane's
// routes that take one (create, timeout, connect, resume) and arbitrary
// list filters: the answer is never a 5xx, an error is E2B's JSON
// {code, message} with the status as its code, and the sandbox made first
// keeps answering.
func FuzzControlBodies(f *testing.F) {
	h := New(Config{AdminToken: token, Domain: "frost.test"}, newManager(f))
	call := func(method, path string, body []byte) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, bytes.NewReader(body))
		r.Header.Set("X-API-Key", "e2b_00ff11ee")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := call("POST", "/sandboxes", []byte(`{"templateID":"base"}`))
	var sb struct {
		SandboxID string `json:"sandboxID"`
	}
	if w.Code != http.StatusCreated || json.Unmarshal(w.Body.Bytes(), &sb) != nil || sb.SandboxID == "" {
		f.Fatalf("create: %d %s", w.Code, w.Body)
	}
	routes := []string{"/sandboxes", "/sandboxes/" + sb.SandboxID + "/timeout", "/sandboxes/" + sb.SandboxID + "/connect",
		"/sandboxes/" + sb.SandboxID + "/resume", "/v2/sandboxes?metadata="}
	for i, s := range []string{
		`{"templateID":"base","timeout":30,"metadata":{"k":"v"},"envVars":{"A":"b"}}`, `{"templateID":"nope"}`, `{"timeout":-1}`,
		`{"timeout":60}`, `{"timeout":1e99}`, `{"timeout":"x"}`,
		`{"timeout":10}`, `{}`, `null`, ``, `[]`,
		`{"autoPause":true}`, `k%3Dv`, `%zz`, `a=b%26c=d`,
	} {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		path := routes[int(route)%len(routes)]
		method := "POST"
		if strings.HasSuffix(path, "metadata=") {
			method, path, body = "GET", path+url.QueryEscape(string(body)), nil
		}
		w := call(method, path, body)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var e errBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code != w.Code || e.Message == "" {
				t.Fatalf("%s %s %q: %d %q is not E2B's error shape", method, path, body, w.Code, w.Body)
			}
		}
		if w := call("GET", "/sandboxes/"+sb.SandboxID, nil); w.Code != http.StatusOK {
			t.Fatalf("the sandbox after %s %s %q: %d %s", method, path, body, w.Code, w.Body)
		}
	})
}

// TestDomainThroughGateway: a call a gateway forwarded (api.PublicBaseHeader)
// is told the gateway's domain, its https one when it has TLS (the SDK
// reaches sandboxes over TLS), in create, connect and get; a malformed
// base leaves the server's own.
func TestDomainThroughGateway(t *testing.T) {
	srv := newServer(t)
	var sb sandboxBody
	if status, _ := call(t, srv, "POST", "/sandboxes", map[string]any{}, &sb); status != 201 {
		t.Fatalf("create: %d", status)
	}
	for _, c := range []struct {
		bases []string
		want  string
	}{
		{nil, "frost.test"},
		{[]string{"http://gw.example:8080"}, "gw.example:8080"},
		{[]string{"http://gw.example:8080", "https://gw.example:8443"}, "gw.example:8443"},
		{[]string{"http://gw.example", "https://gw.example"}, "gw.example"},
		{[]string{"http://gw.example/path", "https://gw.example:8443"}, "frost.test"},
		{[]string{"%zz"}, "frost.test"},
	} {
		for _, r := range []struct{ method, path string }{
			{"POST", "/sandboxes"},
			{"POST", "/sandboxes/" + sb.SandboxID + "/connect"},
			{"GET", "/sandboxes/" + sb.SandboxID},
		} {
			req, _ := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader("{}"))
			req.Header.Set("X-API-Key", "e2b_00ff11ee")
			for _, b := range c.bases {
				req.Header.Add(api.PublicBaseHeader, b)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				Domain *string `json:"domain"`
			}
			json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if got.Domain == nil || *got.Domain != c.want {
				t.Errorf("%s %s with bases %q: %d, domain %v; want %q", r.method, r.path, c.bases, resp.StatusCode, got.Domain, c.want)
			}
		}
	}
}

// TestMetrics: GET /sandboxes/{id}/metrics answers E2B's SandboxMetric
// list (what sandbox.getMetrics() reads); bad bounds 400, unknown 404.
func TestMetrics(t *testing.T) {
	fake := sandboxtest.New()
	srv := httptest.NewServer(New(Config{AdminToken: token, Domain: "frost.test"}, newManagerWith(t, fake)))
	defer srv.Close()
	var sb sandboxBody
	if status, _ := call(t, srv, "POST", "/sandboxes", map[string]any{}, &sb); status != 201 {
		t.Fatalf("create: %d", status)
	}
	fake.Live[sb.SandboxID].SetUsage(runtime.BoxStats{CPU: 50 * time.Millisecond, Memory: 96 << 20, Cache: 8 << 20, MemoryLimit: 512 << 20, CPUs: 1.5})
	time.Sleep(200 * time.Millisecond)
	var list []sandboxMetric
	if status, _ := call(t, srv, "GET", "/sandboxes/"+sb.SandboxID+"/metrics", nil, &list); status != 200 || len(list) != 1 {
		t.Fatalf("metrics: %d %+v", status, list)
	}
	if m := list[0]; m.CPUCount != 2 || m.CPUUsedPct <= 0 || m.CPUUsedPct > 100 || m.MemUsed != 96<<20 || m.MemTotal != 512<<20 ||
		m.MemCache != 8<<20 || m.TimestampUnix != m.Timestamp.Unix() || time.Since(m.Timestamp) > time.Minute {
		t.Fatalf("metric: %+v", m)
	}
	if status, _ := call(t, srv, "GET", fmt.Sprintf("/sandboxes/%s/metrics?start=%d", sb.SandboxID, time.Now().Add(time.Hour).Unix()), nil, &list); status != 200 || len(list) != 0 {
		t.Fatalf("from an hour on: %d %+v", status, list)
	}
	if status, _ := call(t, srv, "GET", "/sandboxes/"+sb.SandboxID+"/metrics?end=soon", nil, nil); status != 400 {
		t.Fatalf("bad end: %d", status)
	}
	if status, _ := call(t, srv, "GET", "/sandboxes/nosuchsandbox0/metrics", nil, nil); status != 404 {
		t.Fatalf("unknown: %d", status)
	}
}

// TestSnapshotsAndForks: createSnapshot, listSnapshots, create from a
// snapshot, fork and deleteSnapshot on E2B's routes (the fake runtime).
func TestSnapshotsAndForks(t *testing.T) {
	srv := newServer(t)
	var sb sandboxBody
	if status, _ := call(t, srv, "POST", "/v2/sandboxes", map[string]any{"metadata": map[string]string{"k": "v"}}, &sb); status != 201 {
		t.Fatalf("create: %d", status)
	}
	var snap snapshotInfo
	if status, _ := call(t, srv, "POST", "/sandboxes/"+sb.SandboxID+"/snapshots", map[string]any{"name": "snap-one"}, &snap); status != 201 || snap.SnapshotID != "snap-one" || len(snap.Names) != 1 {
		t.Fatalf("snapshot: %d %+v", status, snap)
	}
	var unnamed snapshotInfo
	if status, _ := call(t, srv, "POST", "/sandboxes/"+sb.SandboxID+"/snapshots", nil, &unnamed); status != 201 || !strings.HasPrefix(unnamed.SnapshotID, "snapshot-") {
		t.Fatalf("snapshot without a name: %d %+v", status, unnamed)
	}
	var list []snapshotInfo
	if call(t, srv, "GET", "/snapshots?sandboxID="+sb.SandboxID, nil, &list); len(list) != 2 {
		t.Fatalf("list: %+v", list)
	}
	if call(t, srv, "GET", "/snapshots?name=snap-one", nil, &list); len(list) != 1 || list[0].SnapshotID != "snap-one" {
		t.Fatalf("list by name: %+v", list)
	}
	if call(t, srv, "GET", "/snapshots?sandboxID=someoneelse0", nil, &list); len(list) != 0 {
		t.Fatalf("list of another sandbox: %+v", list)
	}
	var fromSnap sandboxBody
	if status, _ := call(t, srv, "POST", "/v2/sandboxes", map[string]any{"templateID": "snap-one"}, &fromSnap); status != 201 || fromSnap.TemplateID != "snap-one" {
		t.Fatalf("create from the snapshot: %d %+v", status, fromSnap)
	}
	var forks []forkResult
	if status, _ := call(t, srv, "POST", "/sandboxes/"+sb.SandboxID+"/fork", map[string]any{"count": 2, "timeout": 60}, &forks); status != 201 || len(forks) != 2 ||
		forks[0].Sandbox == nil || forks[1].Sandbox == nil || forks[0].Sandbox.SandboxID == forks[1].Sandbox.SandboxID || forks[0].Sandbox.EnvdAccessToken == "" {
		t.Fatalf("fork: %d %+v", status, forks)
	}
	for _, body := range []map[string]any{{"count": 0}, {"count": 17}, {"timeout": -1}} {
		if status, _ := call(t, srv, "POST", "/sandboxes/"+sb.SandboxID+"/fork", body, nil); status != 400 {
			t.Fatalf("fork %v: %d", body, status)
		}
	}
	if status, _ := call(t, srv, "POST", "/sandboxes/nosuchsandbox0/fork", nil, nil); status != 404 {
		t.Fatalf("fork of an unknown sandbox: %d", status)
	}
	if status, _ := call(t, srv, "DELETE", "/templates/snap-one", nil, nil); status != 204 {
		t.Fatalf("delete: %d", status)
	}
	if status, _ := call(t, srv, "DELETE", "/templates/snap-one", nil, nil); status != 404 {
		t.Fatalf("delete again: %d", status)
	}
}

// E2B's allowInternetAccess and network.allowOut/denyOut become the
// sandbox's network limits; a host name among them is refused (400).
func TestNetworkRules(t *testing.T) {
	m := newManager(t)
	srv := httptest.NewServer(New(Config{AdminToken: token, Domain: "frost.test"}, m))
	t.Cleanup(srv.Close)
	var sb sandboxBody
	if status, _ := call(t, srv, "POST", "/sandboxes", map[string]any{
		"allow_internet_access": false,
		"network":               map[string]any{"allowOut": []string{"198.51.100.0/24"}, "denyOut": []string{"198.51.100.9"}},
	}, &sb); status != 201 {
		t.Fatalf("create: %d", status)
	}
	got, err := m.Get(context.Background(), sb.SandboxID)
	want := &api.SandboxNetwork{Offline: true, AllowOut: []string{"198.51.100.0/24"}, DenyOut: []string{"198.51.100.9/32"}}
	if err != nil || !reflect.DeepEqual(got.Network, want) {
		t.Fatalf("network %+v (%v), want %+v", got.Network, err, want)
	}
	if status, _ := call(t, srv, "POST", "/sandboxes", map[string]any{"allow_internet_access": true}, &sb); status != 201 {
		t.Fatalf("create with the internet: %d", status)
	}
	if got, _ := m.Get(context.Background(), sb.SandboxID); got.Network != nil {
		t.Fatalf("allow_internet_access true: network %+v", got.Network)
	}
	// The SDK's getInfo reads allowInternetAccess and network; its
	// updateNetwork replaces them, clearing what it leaves out.
	var info listedSandbox
	call(t, srv, "GET", "/sandboxes/"+sb.SandboxID, nil, &info)
	if info.AllowInternetAccess == nil || !*info.AllowInternetAccess || info.Network == nil || len(info.Network.AllowOut) != 0 || !info.Network.AllowPublicTraffic {
		t.Fatalf("detail of an unlimited sandbox: %+v %+v", info.AllowInternetAccess, info.Network)
	}
	if status, _ := call(t, srv, "PUT", "/sandboxes/"+sb.SandboxID+"/network", map[string]any{"allow_internet_access": false, "allowOut": []string{"198.51.100.7"}}, nil); status != 204 {
		t.Fatalf("update network: %d", status)
	}
	call(t, srv, "GET", "/sandboxes/"+sb.SandboxID, nil, &info)
	if *info.AllowInternetAccess || !reflect.DeepEqual(info.Network.AllowOut, []string{"198.51.100.7/32"}) || len(info.Network.DenyOut) != 0 {
		t.Fatalf("detail after the update: %v %+v", *info.AllowInternetAccess, info.Network)
	}
	var eb errBody
	if status, _ := call(t, srv, "PUT", "/sandboxes/"+sb.SandboxID+"/network", map[string]any{"denyOut": []string{"not-an-address"}}, &eb); status != 400 {
		t.Fatalf("update with a bad address: %d %+v", status, eb)
	}
	if status, _ := call(t, srv, "POST", "/sandboxes", map[string]any{"network": map[string]any{"denyOut": []string{"pypi.org"}}}, &eb); status != 400 || !strings.Contains(eb.Message, "pypi.org") {
		t.Fatalf("a host name in denyOut: %d %+v", status, eb)
	}
	if status, _ := call(t, srv, "POST", "/sandboxes", map[string]any{"network": map[string]any{"allowOut": []string{"pypi.org"}, "denyOut": []string{"0.0.0.0/0"}}}, &sb); status != 201 {
		t.Fatalf("a host name in allowOut: %d", status)
	}
	call(t, srv, "GET", "/sandboxes/"+sb.SandboxID, nil, &info)
	if !reflect.DeepEqual(info.Network.AllowOut, []string{"pypi.org"}) {
		t.Fatalf("allowOut with a host name: %+v", info.Network)
	}
}

// A tenant's key acts as that tenant: its sandboxes, snapshots and
// forks are its own; another tenant's answer 404 as if they did not
// exist; lists show it its own; the admin's key sees everything.
func TestTenantKeys(t *testing.T) {
	m := newManager(t)
	keys := map[string]string{"frostt_acme_k1": "acme", "frostt_bob_k2": "bob"}
	srv := httptest.NewServer(New(Config{AdminToken: token, Domain: "frost.test", Tenant: func(_ context.Context, key string) (string, error) {
		if name, ok := keys[key]; ok {
			return name, nil
		}
		return "", errors.New("unknown key")
	}}, m))
	t.Cleanup(srv.Close)
	as := func(key, method, path string, body, out any) int {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, srv.URL+path, rd)
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	var sb sandboxBody
	if status := as("frostt_acme_k1", "POST", "/sandboxes", map[string]any{}, &sb); status != 201 {
		t.Fatalf("acme creates: %d", status)
	}
	if s, err := m.Get(context.Background(), sb.SandboxID); err != nil || s.Tenant != "acme" {
		t.Fatalf("the sandbox's tenant: %+v %v", s.Tenant, err)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/sandboxes/" + sb.SandboxID},
		{"POST", "/sandboxes/" + sb.SandboxID + "/timeout"},
		{"PUT", "/sandboxes/" + sb.SandboxID + "/network"},
		{"POST", "/v2/sandboxes/" + sb.SandboxID + "/connect"},
		{"POST", "/sandboxes/" + sb.SandboxID + "/pause"},
		{"POST", "/sandboxes/" + sb.SandboxID + "/fork"},
		{"POST", "/sandboxes/" + sb.SandboxID + "/snapshots"},
		{"GET", "/sandboxes/" + sb.SandboxID + "/metrics"},
		{"DELETE", "/sandboxes/" + sb.SandboxID},
	} {
		if status := as("frostt_bob_k2", c.method, c.path, map[string]any{"timeout": 60}, nil); status != 404 {
			t.Errorf("bob: %s %s: %d, want 404", c.method, c.path, status)
		}
	}
	var list []listedSandbox
	as("frostt_bob_k2", "GET", "/v2/sandboxes", nil, &list)
	if len(list) != 0 {
		t.Errorf("bob lists %+v", list)
	}
	as("frostt_acme_k1", "GET", "/v2/sandboxes", nil, &list)
	if len(list) != 1 || list[0].SandboxID != sb.SandboxID {
		t.Errorf("acme lists %+v", list)
	}
	as("e2b_00ff11ee", "GET", "/v2/sandboxes", nil, &list)
	if len(list) != 1 {
		t.Errorf("the admin lists %+v", list)
	}
	var snap struct {
		SnapshotID string `json:"snapshotID"`
	}
	if status := as("frostt_acme_k1", "POST", "/sandboxes/"+sb.SandboxID+"/snapshots", map[string]any{"name": "acme-snap"}, &snap); status != 201 || snap.SnapshotID != "acme-snap" {
		t.Fatalf("acme snapshots its sandbox: %d %+v", status, snap)
	}
	var snaps []struct {
		SnapshotID string `json:"snapshotID"`
	}
	as("frostt_bob_k2", "GET", "/snapshots", nil, &snaps)
	if len(snaps) != 0 {
		t.Errorf("bob lists snapshots %+v", snaps)
	}
	if status := as("frostt_bob_k2", "POST", "/sandboxes", map[string]any{"templateID": "acme-snap"}, nil); status != 400 {
		t.Errorf("bob creates from acme's snapshot: %d", status)
	}
	if status := as("frostt_bob_k2", "DELETE", "/templates/acme-snap", nil, nil); status != 404 {
		t.Errorf("bob deletes acme's snapshot: %d", status)
	}
	// Names are each tenant's own: bob takes acme's too; the admin sees
	// both, by TENANT/NAME, and deletes bob's so named.
	var bobs sandboxBody
	if status := as("frostt_bob_k2", "POST", "/sandboxes", map[string]any{}, &bobs); status != 201 {
		t.Fatalf("bob creates: %d", status)
	}
	if status := as("frostt_bob_k2", "POST", "/sandboxes/"+bobs.SandboxID+"/snapshots", map[string]any{"name": "acme-snap"}, &snap); status != 201 || snap.SnapshotID != "acme-snap" {
		t.Fatalf("bob's snapshot named as acme's: %d %+v", status, snap)
	}
	as("e2b_00ff11ee", "GET", "/snapshots", nil, &snaps)
	if len(snaps) != 2 || snaps[0].SnapshotID != "acme/acme-snap" || snaps[1].SnapshotID != "bob/acme-snap" {
		t.Errorf("the admin lists snapshots %+v", snaps)
	}
	if status := as("e2b_00ff11ee", "DELETE", "/templates/bob%2Facme-snap", nil, nil); status != 204 {
		t.Errorf("the admin deletes bob/acme-snap: %d", status)
	}
	if status := as("frostt_acme_k1", "DELETE", "/templates/acme-snap", nil, nil); status != 204 {
		t.Errorf("acme deletes its snapshot: %d", status)
	}
	if status := as("frostt_nobody_k3", "GET", "/v2/sandboxes", nil, nil); status != 401 {
		t.Errorf("an unknown key: %d", status)
	}
}
