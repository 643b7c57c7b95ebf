package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wire "github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/api"
	"github.com/frostdev/frost/internal/blob"
	"github.com/frostdev/frost/internal/blob/dir"
	"github.com/frostdev/frost/internal/node"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/registry/bolt"
	"github.com/frostdev/frost/internal/runtime/wasm"
	"github.com/frostdev/frost/internal/sandbox"
	"github.com/frostdev/frost/internal/testguest"
)

const (
	token = "t"
	// maxModule is the upload limit of the test server: the test guests
	// used here are far smaller.
	maxModule = 1 << 20
)

// env is a control API over a real node, registry, blob store and runtime.
type env struct {
	h     *api.Handler
	node  *node.Node
	blobs blob.Store
	reg   registry.Store
	url   string // of an httptest server; "" until serve is called
}

func newEnv(t testing.TB, adminToken string) *env {
	t.Helper()
	reg, err := bolt.Open(filepath.Join(t.TempDir(), "reg.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return newEnvOver(t, adminToken, reg, nil)
}

// newEnvOver is a control API over a real node on reg, with sandboxes (nil:
// none); its url is not set.
func newEnvOver(t testing.TB, adminToken string, reg registry.Store, sandboxes *sandbox.Manager) *env {
	t.Helper()
	d := t.TempDir()
	blobs, err := dir.New(filepath.Join(d, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := wasm.New(wasm.Config{CacheDir: filepath.Join(d, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	n, err := node.New(context.Background(), node.DefaultConfig(), reg, blobs, rt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(context.Background()) })
	h := api.New(api.Config{AdminToken: adminToken, Version: "test", Domain: "localhost", HTTPAddr: "127.0.0.1:8080", MaxModuleBytes: maxModule, Registry: reg}, n, blobs, sandboxes)
	return &env{h: h, node: n, blobs: blobs, reg: reg}
}

// serve starts a real HTTP server in front of the handler.
func (e *env) serve(t testing.TB) *env {
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// do sends a request over HTTP with the given Authorization header ("" for
// none) and returns the response and its whole body.
func (e *env) do(t testing.TB, method, path, auth string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// admin sends a request with the right token.
func (e *env) admin(t testing.TB, method, path string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	return e.do(t, method, path, "Bearer "+token, body)
}

func (e *env) adminJSON(t testing.TB, method, path string, v any) (*http.Response, []byte) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return e.admin(t, method, path, bytes.NewReader(b))
}

// upload stores a test guest and returns its digest.
func (e *env) upload(t testing.TB, guest string) string {
	t.Helper()
	b, err := os.ReadFile(testguest.Path(t, guest))
	if err != nil {
		t.Fatal(err)
	}
	info, err := e.blobs.Put(context.Background(), digest(b), bytes.NewReader(b), 0)
	if err != nil {
		t.Fatal(err)
	}
	return info.Digest
}

// deploy deploys a test guest through the API and returns the answer.
func (e *env) deploy(t testing.TB, name string, req wire.DeployRequest) wire.AppDetail {
	t.Helper()
	resp, b := e.adminJSON(t, "POST", "/v1/apps/"+name+"/releases", req)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("deploy %s: %d %s", name, resp.StatusCode, b)
	}
	var d wire.AppDetail
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("deploy %s: %v in %s", name, err, b)
	}
	return d
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// checkError checks that an answer is the JSON error {code, message} with
// the given status and code, and nothing else.
func checkError(t testing.TB, resp *http.Response, body []byte, status int, code string) wire.Error {
	t.Helper()
	e, err := decodeError(resp.Header, body)
	if err != nil {
		t.Fatalf("%d: %v", resp.StatusCode, err)
	}
	if resp.StatusCode != status || e.Code != code {
		t.Fatalf("got %d %q (%s); want %d %q", resp.StatusCode, e.Code, e.Message, status, code)
	}
	return e
}

// decodeError parses a JSON error answer strictly.
func decodeError(h http.Header, body []byte) (wire.Error, error) {
	var e wire.Error
	if ct := h.Get("Content-Type"); ct != "application/json" {
		return e, fmt.Errorf("Content-Type %q; want application/json (body %q)", ct, body)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("error body %q: %v", body, err)
	}
	if dec.More() {
		return e, fmt.Errorf("error body %q has more than one value", body)
	}
	if e.Code == "" || e.Message == "" {
		return e, fmt.Errorf("error body %q lacks a code or message", body)
	}
	return e, nil
}

// routes is every route of the API, with a body that would be valid.
var routes = []struct{ method, path, body string }{
	{"GET", "/metrics", ""},
	{"HEAD", "/v1/blobs/" + digest([]byte("x")), ""},
	{"PUT", "/v1/blobs/" + digest([]byte("x")), "x"},
	{"GET", "/v1/apps", ""},
	{"GET", "/v1/apps/x", ""},
	{"POST", "/v1/apps/x/releases", `{"module":"` + digest([]byte("x")) + `"}`},
	{"DELETE", "/v1/apps/x", ""},
	{"PATCH", "/v1/apps/x/env", `{"set":{"A":"b"}}`},
	{"GET", "/v1/apps/x/logs", ""},
	{"POST", "/v1/apps/x/freeze", ""},
	{"POST", "/v1/apps/x/wake", ""},
	{"GET", "/v1/status", ""},
	{"GET", "/v1/blobs/" + digest([]byte("x")), ""},
	{"GET", "/v1/tenants", ""},
	{"POST", "/v1/tenants", `{"name":"mallory"}`},
	{"DELETE", "/v1/tenants/x", ""},
	{"POST", "/v1/sandboxes", "{}"},
	{"GET", "/v1/sandboxes", ""},
	{"GET", "/v1/sandboxes/x", ""},
	{"DELETE", "/v1/sandboxes/x", ""},
	{"POST", "/v1/sandboxes/x/exec", `{"cmd":["true"]}`},
	{"GET", "/v1/sandboxes/x/files?path=/", ""},
	{"PUT", "/v1/sandboxes/x/files?path=/x", "x"},
	{"GET", "/v1/templates", ""},
	{"POST", "/v1/templates", `{"name":"x"}`},
	{"GET", "/v1/nope", ""},
	{"POST", "/v1/health", ""},
	{"GET", "/", ""},
}

func TestUnauthorized(t *testing.T) {
	e := newEnv(t, token).serve(t)
	auths := []struct{ name, header string }{
		{"none", ""},
		{"wrong token", "Bearer x"},
		{"token prefix", "Bearer tt"},
		{"empty token", "Bearer "},
		{"scheme only", "Bearer"},
		{"two spaces", "Bearer  t"},
		{"no scheme", "t"},
		{"basic", "Basic t"},
	}
	for _, r := range routes {
		for _, a := range auths {
			t.Run(r.method+" "+r.path+"/"+a.name, func(t *testing.T) {
				resp, body := e.do(t, r.method, r.path, a.header, strings.NewReader(r.body))
				if r.method == "HEAD" {
					if resp.StatusCode != http.StatusUnauthorized {
						t.Fatalf("HEAD: %d; want 401", resp.StatusCode)
					}
					return
				}
				checkError(t, resp, body, http.StatusUnauthorized, wire.CodeUnauthorized)
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("401 without WWW-Authenticate")
				}
			})
		}
	}
	// Nothing the unauthorised calls asked for happened.
	if _, err := e.blobs.Stat(context.Background(), digest([]byte("x"))); err == nil {
		t.Errorf("an unauthorised PUT stored a blob")
	}
	if apps, _ := e.node.Apps(context.Background()); len(apps) != 0 {
		t.Errorf("an unauthorised deploy made apps: %v", apps)
	}
	if ts, _ := e.reg.ListTenants(context.Background()); len(ts) != 0 {
		t.Errorf("an unauthorised call made tenants: %v", ts)
	}
}

func TestNoAdminTokenRefusesEverything(t *testing.T) {
	e := newEnv(t, "").serve(t)
	for _, auth := range []string{"", "Bearer ", "Bearer x"} {
		resp, body := e.do(t, "GET", "/v1/apps", auth, nil)
		checkError(t, resp, body, http.StatusUnauthorized, wire.CodeUnauthorized)
	}
}

func TestHealthIsOpen(t *testing.T) {
	e := newEnv(t, token).serve(t)
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + token} {
		resp, body := e.do(t, "GET", "/v1/health", auth, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("health with %q: %d %s", auth, resp.StatusCode, body)
		}
		var h wire.Health
		if err := json.Unmarshal(body, &h); err != nil {
			t.Fatal(err)
		}
		if h != (wire.Health{Status: "ok", Version: "test", Domain: "localhost", HTTP: "127.0.0.1:8080"}) {
			t.Errorf("health %+v", h)
		}
	}
}

func TestAuthorizedRoutes(t *testing.T) {
	e := newEnv(t, token).serve(t)
	resp, body := e.admin(t, "GET", "/v1/nope", nil)
	checkError(t, resp, body, http.StatusNotFound, wire.CodeNotFound)
	resp, body = e.admin(t, "GET", "/metrics", nil)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("go_goroutines")) {
		t.Errorf("metrics: %d %.200s", resp.StatusCode, body)
	}
	resp, body = e.admin(t, "GET", "/v1/apps", nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("no apps: %d %s", resp.StatusCode, body)
	}
}

func TestBlobs(t *testing.T) {
	e := newEnv(t, token).serve(t)
	ctx := context.Background()
	data := []byte("some module bytes")
	other := []byte("other bytes")
	big := bytes.Repeat([]byte{1}, maxModule+1)
	atLimit := bytes.Repeat([]byte{2}, maxModule)
	cases := []struct {
		name    string
		digest  string
		body    io.Reader // a bytes.Reader sends Content-Length; others send chunked
		status  int
		code    string // for errors
		stored  string // digest that must be stored afterwards, if any
		missing []string
	}{
		{name: "wrong digest", digest: digest(other), body: bytes.NewReader(data), status: 422, code: wire.CodeInvalidRequest, missing: []string{digest(other), digest(data)}},
		{name: "wrong digest, chunked", digest: digest(other), body: io.MultiReader(bytes.NewReader(data)), status: 422, code: wire.CodeInvalidRequest, missing: []string{digest(other), digest(data)}},
		{name: "malformed digest", digest: "abc", body: bytes.NewReader(data), status: 400, code: wire.CodeInvalidRequest, missing: []string{digest(data)}},
		{name: "upper-case digest", digest: strings.ToUpper(digest(data)), body: bytes.NewReader(data), status: 400, code: wire.CodeInvalidRequest, missing: []string{digest(data)}},
		{name: "too large", digest: digest(big), body: bytes.NewReader(big), status: 413, code: wire.CodeTooLarge, missing: []string{digest(big)}},
		{name: "too large, chunked", digest: digest(big), body: io.MultiReader(bytes.NewReader(big)), status: 413, code: wire.CodeTooLarge, missing: []string{digest(big)}},
		{name: "at the limit", digest: digest(atLimit), body: bytes.NewReader(atLimit), status: 201, stored: digest(atLimit)},
		{name: "new", digest: digest(data), body: bytes.NewReader(data), status: 201, stored: digest(data)},
		{name: "again", digest: digest(data), body: bytes.NewReader(data), status: 200, stored: digest(data)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := e.admin(t, "PUT", "/v1/blobs/"+c.digest, c.body)
			if c.code != "" {
				checkError(t, resp, body, c.status, c.code)
			} else {
				var b wire.Blob
				if resp.StatusCode != c.status || json.Unmarshal(body, &b) != nil || b.Digest != c.stored {
					t.Fatalf("%d %s; want %d with digest %s", resp.StatusCode, body, c.status, c.stored)
				}
				if resp, _ := e.admin(t, "HEAD", "/v1/blobs/"+c.stored, nil); resp.StatusCode != 200 || resp.ContentLength != b.Size {
					t.Errorf("HEAD after PUT: %d, %d bytes; want 200, %d", resp.StatusCode, resp.ContentLength, b.Size)
				}
				if resp, got := e.admin(t, "GET", "/v1/blobs/"+c.stored, nil); resp.StatusCode != 200 || digest(got) != c.stored {
					t.Errorf("GET after PUT: %d, %d bytes of another blob", resp.StatusCode, len(got))
				}
			}
			for _, d := range c.missing {
				if _, err := e.blobs.Stat(ctx, d); err == nil {
					t.Errorf("blob %s was stored", d)
				}
				if resp, _ := e.admin(t, "HEAD", "/v1/blobs/"+d, nil); resp.StatusCode != 404 {
					t.Errorf("HEAD %s: %d; want 404", d, resp.StatusCode)
				}
				if resp, _ := e.admin(t, "GET", "/v1/blobs/"+d, nil); resp.StatusCode != 404 {
					t.Errorf("GET %s: %d; want 404", d, resp.StatusCode)
				}
			}
		})
	}
}

func TestDeployErrors(t *testing.T) {
	e := newEnv(t, token).serve(t)
	hello := e.upload(t, "hello-c")
	cases := []struct {
		name   string
		app    string
		body   string
		status int
		code   string
		msg    string // in the message
	}{
		{name: "unknown field", app: "x", body: `{"module":"` + hello + `","modul":"x"}`, status: 400, code: wire.CodeInvalidRequest, msg: "modul"},
		{name: "unknown limit", app: "x", body: `{"module":"` + hello + `","limits":{"cpu":1}}`, status: 400, code: wire.CodeInvalidRequest, msg: "cpu"},
		{name: "two values", app: "x", body: `{"module":"` + hello + `"} {}`, status: 400, code: wire.CodeInvalidRequest},
		{name: "not JSON", app: "x", body: `module=` + hello, status: 400, code: wire.CodeInvalidRequest},
		{name: "empty body", app: "x", body: ``, status: 400, code: wire.CodeInvalidRequest},
		{name: "wrong type", app: "x", body: `{"module":1}`, status: 400, code: wire.CodeInvalidRequest},
		{name: "bad duration", app: "x", body: `{"module":"` + hello + `","limits":{"timeout":"soon"}}`, status: 400, code: wire.CodeInvalidRequest, msg: "soon"},
		{name: "body over 1 MiB", app: "x", body: `{"module":"` + hello + `","mode":"` + strings.Repeat("a", 1<<20) + `"}`, status: 400, code: wire.CodeInvalidRequest},
		{name: "bad name", app: "Bad", body: `{"module":"` + hello + `"}`, status: 400, code: wire.CodeInvalidRequest, msg: "Bad"},
		{name: "bad mode", app: "x", body: `{"module":"` + hello + `","mode":"batch"}`, status: 400, code: wire.CodeInvalidRequest, msg: "batch"},
		{name: "negative limit", app: "x", body: `{"module":"` + hello + `","limits":{"concurrency":-1}}`, status: 400, code: wire.CodeInvalidRequest},
		{name: "env key with =", app: "x", body: `{"module":"` + hello + `","env":{"A=B":"c"}}`, status: 400, code: wire.CodeInvalidRequest},
		{name: "module not uploaded", app: "x", body: `{"module":"` + digest([]byte("nothing")) + `"}`, status: 400, code: wire.CodeInvalidRequest, msg: "PUT /v1/blobs"},
		{name: "not wasm", app: "x", body: `{"module":"` + e.upload(t, "not-wasm") + `"}`, status: 422, code: wire.CodeInvalidModule},
		{name: "truncated wasm", app: "x", body: `{"module":"` + e.upload(t, "truncated") + `"}`, status: 422, code: wire.CodeInvalidModule},
		{name: "no known shape", app: "x", body: `{"module":"` + e.upload(t, "noshape") + `"}`, status: 422, code: wire.CodeInvalidModule, msg: "handle_request"},
		{name: "memory limit below the module's", app: "x", body: `{"module":"` + e.upload(t, "probe") + `","limits":{"memory_bytes":1}}`, status: 422, code: wire.CodeInvalidModule, msg: "memory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := e.admin(t, "POST", "/v1/apps/"+c.app+"/releases", strings.NewReader(c.body))
			er := checkError(t, resp, body, c.status, c.code)
			if !strings.Contains(er.Message, c.msg) {
				t.Errorf("message %q; want it to mention %q", er.Message, c.msg)
			}
			if strings.HasPrefix(er.Message, "internal error") {
				t.Errorf("message %q: a user error reported as internal", er.Message)
			}
			resp, body = e.admin(t, "GET", "/v1/apps/"+c.app, nil)
			checkError(t, resp, body, http.StatusNotFound, wire.CodeNotFound)
		})
	}
}

func TestAppLifecycle(t *testing.T) {
	e := newEnv(t, token).serve(t)
	hello := e.upload(t, "hello-c")

	resp, body := e.admin(t, "GET", "/v1/apps/hello", nil)
	checkError(t, resp, body, http.StatusNotFound, wire.CodeNotFound)

	d := e.deploy(t, "hello", wire.DeployRequest{Module: hello, Env: map[string]string{"B": "2", "A": "1"}, Limits: wire.Limits{Concurrency: 5}})
	if d.Name != "hello" || d.Shape != "http-wasm" || d.Mode != "request" || d.Version != 1 || len(d.Releases) != 1 ||
		d.Release != d.Releases[0].ID || d.Limits.Concurrency != 5 || d.Limits.MemoryBytes == 0 ||
		strings.Join(d.EnvKeys, ",") != "A,B" || d.URL != "http://hello.localhost:8080/" {
		t.Errorf("deploy answer %+v", d)
	}
	w := httptest.NewRecorder()
	e.node.ServeHTTP(w, httptest.NewRequest("GET", "http://hello.localhost/", nil))
	if w.Code != 200 || w.Body.String() != "hello from frost\n" {
		t.Errorf("the deployed app answers %d %q", w.Code, w.Body)
	}

	resp, body = e.admin(t, "GET", "/v1/apps", nil)
	var list []wire.App
	if resp.StatusCode != 200 || json.Unmarshal(body, &list) != nil || len(list) != 1 || list[0].Name != "hello" {
		t.Errorf("list: %d %s", resp.StatusCode, body)
	}
	resp, body = e.admin(t, "GET", "/v1/apps/hello", nil)
	var got wire.AppDetail
	if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil || got.Release != d.Release || got.Counters.Requests != 1 {
		t.Errorf("get: %d %s", resp.StatusCode, body)
	}

	t.Run("env", func(t *testing.T) {
		cases := []struct {
			name   string
			app    string
			body   string
			status int
			code   string
			keys   string
		}{
			{name: "set", app: "hello", body: `{"set":{"C":"3"}}`, status: 200, keys: "A,B,C"},
			{name: "unset", app: "hello", body: `{"unset":["A","NEVER"]}`, status: 200, keys: "B,C"},
			{name: "set and unset", app: "hello", body: `{"set":{"D":"4"},"unset":["B"]}`, status: 200, keys: "C,D"},
			{name: "empty", app: "hello", body: `{}`, status: 200, keys: "C,D"},
			{name: "key with =", app: "hello", body: `{"set":{"A=B":"c"}}`, status: 400, code: wire.CodeInvalidRequest},
			{name: "empty key", app: "hello", body: `{"set":{"":"c"}}`, status: 400, code: wire.CodeInvalidRequest},
			{name: "unknown field", app: "hello", body: `{"sett":{"A":"b"}}`, status: 400, code: wire.CodeInvalidRequest},
			{name: "not JSON", app: "hello", body: `A=b`, status: 400, code: wire.CodeInvalidRequest},
			{name: "missing app", app: "nope", body: `{"set":{"A":"b"}}`, status: 404, code: wire.CodeNotFound},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				resp, body := e.admin(t, "PATCH", "/v1/apps/"+c.app+"/env", strings.NewReader(c.body))
				if c.code != "" {
					checkError(t, resp, body, c.status, c.code)
					return
				}
				var a wire.App
				if resp.StatusCode != c.status || json.Unmarshal(body, &a) != nil {
					t.Fatalf("%d %s", resp.StatusCode, body)
				}
				if strings.Join(a.EnvKeys, ",") != c.keys {
					t.Errorf("env keys %v; want %s", a.EnvKeys, c.keys)
				}
				if bytes.Contains(body, []byte(`"3"`)) || bytes.Contains(body, []byte(`"4"`)) {
					t.Errorf("the answer carries env values: %s", body)
				}
			})
		}
	})

	t.Run("delete", func(t *testing.T) {
		resp, body := e.admin(t, "DELETE", "/v1/apps/hello", nil)
		if resp.StatusCode != http.StatusNoContent || len(body) != 0 {
			t.Fatalf("delete: %d %s", resp.StatusCode, body)
		}
		resp, body = e.admin(t, "DELETE", "/v1/apps/hello", nil)
		checkError(t, resp, body, http.StatusNotFound, wire.CodeNotFound)
		resp, body = e.admin(t, "GET", "/v1/apps/hello", nil)
		checkError(t, resp, body, http.StatusNotFound, wire.CodeNotFound)
		resp, body = e.admin(t, "GET", "/v1/apps/hello/logs", nil)
		checkError(t, resp, body, http.StatusNotFound, wire.CodeNotFound)
		w := httptest.NewRecorder()
		e.node.ServeHTTP(w, httptest.NewRequest("GET", "http://hello.localhost/", nil))
		if w.Code != 404 {
			t.Errorf("the deleted app answers %d", w.Code)
		}
	})
}

func readLines(t testing.TB, body []byte) []wire.LogLine {
	t.Helper()
	var lines []wire.LogLine
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	for dec.More() {
		var l wire.LogLine
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("log line: %v in %q", err, body)
		}
		lines = append(lines, l)
	}
	if len(body) > 0 && !bytes.HasSuffix(body, []byte("\n")) {
		t.Errorf("NDJSON does not end with a newline: %q", body)
	}
	return lines
}

func TestLogs(t *testing.T) {
	e := newEnv(t, token).serve(t)
	hello := e.upload(t, "hello-c")
	for i := 1; i <= 3; i++ {
		e.deploy(t, "hello", wire.DeployRequest{Module: hello, Limits: wire.Limits{Concurrency: i}})
	}
	cases := []struct {
		name  string
		query string
		want  []string // message prefixes
	}{
		{name: "default", query: "", want: []string{"deployed release v1 ", "deployed release v2 ", "deployed release v3 "}},
		{name: "tail 2", query: "?tail=2", want: []string{"deployed release v2 ", "deployed release v3 "}},
		{name: "tail 0", query: "?tail=0", want: nil},
		{name: "tail larger than the log", query: "?tail=1000", want: []string{"deployed release v1 ", "deployed release v2 ", "deployed release v3 "}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := e.admin(t, "GET", "/v1/apps/hello/logs"+c.query, nil)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
				t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			lines := readLines(t, body)
			if len(lines) != len(c.want) {
				t.Fatalf("%d lines; want %d: %s", len(lines), len(c.want), body)
			}
			for i, l := range lines {
				if !strings.HasPrefix(l.Message, c.want[i]) || l.App != "hello" || l.Stream != "frost" || l.Time.IsZero() {
					t.Errorf("line %d: %+v; want %q…", i, l, c.want[i])
				}
			}
		})
	}
	for _, q := range []string{"?tail=-1", "?tail=x", "?tail=1.5", "?tail=99999999999999999999"} {
		t.Run("bad "+q, func(t *testing.T) {
			resp, body := e.admin(t, "GET", "/v1/apps/hello/logs"+q, nil)
			checkError(t, resp, body, http.StatusBadRequest, wire.CodeInvalidRequest)
		})
	}
	t.Run("missing app", func(t *testing.T) {
		resp, body := e.admin(t, "GET", "/v1/apps/nope/logs", nil)
		checkError(t, resp, body, http.StatusNotFound, wire.CodeNotFound)
	})

	t.Run("follow", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/v1/apps/hello/logs?follow=1&tail=1", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		lines := make(chan wire.LogLine)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var l wire.LogLine
				if json.Unmarshal(sc.Bytes(), &l) == nil {
					lines <- l
				}
			}
		}()
		next := func() wire.LogLine {
			t.Helper()
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("the stream ended")
				}
				return l
			case <-time.After(10 * time.Second):
				t.Fatal("no log line")
			}
			return wire.LogLine{}
		}
		if l := next(); !strings.HasPrefix(l.Message, "deployed release v3 ") {
			t.Fatalf("first followed line %+v", l)
		}
		e.deploy(t, "hello", wire.DeployRequest{Module: hello, Limits: wire.Limits{Concurrency: 4}})
		if l := next(); !strings.HasPrefix(l.Message, "deployed release v4 ") {
			t.Fatalf("new line %+v", l)
		}
		cancel()
		for range lines { // the stream ends
		}
	})
}

// newFuzzEnv is a handler with one app, "fz", and a few uploaded modules.
func newFuzzEnv(f *testing.F) (*env, map[string]string) {
	e := newEnv(f, token)
	mods := map[string]string{}
	for _, g := range []string{"hello-c", "cgi", "not-wasm", "noshape"} {
		mods[g] = e.upload(f, g)
	}
	body, _ := json.Marshal(wire.DeployRequest{Module: mods["hello-c"]})
	if w := e.post("/v1/apps/fz/releases", body); w.Code != 201 {
		f.Fatalf("deploy: %d %s", w.Code, w.Body)
	}
	return e, mods
}

// post calls the handler directly (no network) with the admin token.
func (e *env) post(path string, body []byte) *httptest.ResponseRecorder {
	method := "POST"
	if strings.HasSuffix(path, "/env") {
		method = "PATCH"
	}
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// checkFuzzAnswer checks that an answer is either a success of the given
// status with a JSON body that decodes into ok, or a well-formed JSON error
// with a status a client's mistake can cause (never 500).
func checkFuzzAnswer(t *testing.T, w *httptest.ResponseRecorder, success int, ok any, body []byte) {
	t.Helper()
	if w.Code == success {
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%d with Content-Type %q", w.Code, ct)
		}
		if err := json.Unmarshal(w.Body.Bytes(), ok); err != nil {
			t.Fatalf("%d with body %q: %v", w.Code, w.Body, err)
		}
		return
	}
	er, err := decodeError(w.Header(), w.Body.Bytes())
	if err != nil {
		t.Fatalf("request %q: %d: %v", body, w.Code, err)
	}
	want := map[int][]string{
		400: {wire.CodeInvalidRequest},
		413: {wire.CodeTooLarge},
		422: {wire.CodeInvalidModule, wire.CodeInvalidRequest},
	}[w.Code]
	for _, c := range want {
		if er.Code == c {
			return
		}
	}
	t.Fatalf("request %q: %d %q %q; want %d or a client error", body, w.Code, er.Code, er.Message, success)
}

// FuzzDeployBody posts arbitrary bytes as a deploy request: the answer is
// always 201 with the app, or a well-formed JSON client error.
func FuzzDeployBody(f *testing.F) {
	e, mods := newFuzzEnv(f)
	for _, s := range []string{
		`{"module":"` + mods["hello-c"] + `"}`,
		`{"module":"` + mods["cgi"] + `","mode":"request","env":{"GREETING":"hi"}}`,
		`{"module":"` + mods["hello-c"] + `","limits":{"memory_bytes":1048576,"timeout":"2s","concurrency":3,"max_body_bytes":10,"fs_bytes":1024}}`,
		`{"module":"` + mods["hello-c"] + `","limits":{"timeout":1000000000}}`,
		`{"module":"` + mods["hello-c"] + `","limits":{"memory_bytes":1}}`,
		`{"module":"` + mods["hello-c"] + `","mode":"session"}`,
		`{"module":"` + mods["not-wasm"] + `"}`,
		`{"module":"` + mods["noshape"] + `"}`,
		`{"module":"` + mods["hello-c"] + `","extra":1}`,
		`{"module":"` + mods["hello-c"] + `","env":{"A=B":"c"}}`,
		`{"module":"` + mods["hello-c"] + `","env":{"A":"x\u0000"}}`,
		`{"module":"` + mods["cgi"] + `","env":{"A":"x\u0000"}}`,
		`{"module":"` + mods["hello-c"] + `"}{}`,
		`{"module":"../x"}`,
		`{}`, `null`, `[]`, `""`, ``, `{"limits":null}`, `{"env":{"a":null}}`,
		`{"limits":{"timeout":"-1s"}}`, `{"limits":{"timeout":1e99}}`, `{"limits":{"concurrency":9223372036854775808}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		defer resetEnv(t, e, "fz")
		w := e.post("/v1/apps/fz/releases", body)
		var d wire.AppDetail
		checkFuzzAnswer(t, w, http.StatusCreated, &d, body)
		if w.Code == http.StatusCreated && (d.Name != "fz" || d.Release == "") {
			t.Fatalf("deploy answer %s", w.Body)
		}
	})
}

// FuzzEnvBody patches arbitrary bytes into an app's environment: the answer
// is always 200 with the app, or a well-formed JSON client error, and the
// app keeps serving.
func FuzzEnvBody(f *testing.F) {
	e, _ := newFuzzEnv(f)
	for _, s := range []string{
		`{"set":{"A":"b"}}`, `{"unset":["A"]}`, `{"set":{"A":"b"},"unset":["A"]}`,
		`{"set":{"A=B":"c"}}`, `{"set":{"":"c"}}`, `{"set":{"A\u0000":"c"}}`, `{"set":{"A":"x\u0000"}}`, `{"set":{"A":null}}`,
		`{"set":{"A":"\u00e9\ud83d\ude00"}}`, `{"unset":[""]}`, `{"unset":null}`, `{"set":[]}`,
		`{}`, `null`, `[]`, ``, `{"sett":{}}`, `{}{}`, `{"set":{"A":"` + strings.Repeat("v", 4096) + `"}}`,
	} {
		f.Add([]byte(s))
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, body []byte) {
		w := e.post("/v1/apps/fz/env", body)
		var a wire.App
		checkFuzzAnswer(t, w, http.StatusOK, &a, body)
		if w.Code == http.StatusOK && a.Name != "fz" {
			t.Fatalf("env answer %s", w.Body)
		}
		r := httptest.NewRequest("GET", "http://fz.localhost/", nil)
		rw := httptest.NewRecorder()
		e.node.ServeHTTP(rw, r.WithContext(ctx))
		if rw.Code != 200 {
			t.Fatalf("after env %q the app answers %d %q", body, rw.Code, rw.Body)
		}
		resetEnv(t, e, "fz")
	})
}

// resetEnv empties an app's environment between fuzz inputs, so that one
// input's environment cannot fail the next.
func resetEnv(t *testing.T, e *env, name string) {
	d, err := e.node.App(context.Background(), name)
	if errors.Is(err, registry.ErrNotFound) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(d.EnvKeys) > 0 {
		if _, err := e.node.SetEnv(context.Background(), name, wire.EnvRequest{Unset: d.EnvKeys}); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzDeployRequest deploys well-formed requests with arbitrary fields: a
// valid module is refused only for a reason in the request (never as an
// invalid module, unless its memory limit is below the module's one page),
// and an accepted release serves.
func FuzzDeployRequest(f *testing.F) {
	e, mods := newFuzzEnv(f)
	f.Add("fz", "hello-c", "", "GREETING", "hi", int64(0), int64(0), 0, int64(0), int64(0))
	f.Add("fz", "cgi", "request", "A", "", int64(1<<20), int64(time.Second), 2, int64(10), int64(1024))
	f.Add("Fz", "hello-c", "session", "A=B", "c", int64(-1), int64(-1), -1, int64(-1), int64(-1))
	f.Add("fz", "hello-c", "request", "A", "\x00", int64(65536), int64(1), 1, int64(1), int64(1))
	f.Add("fz", "not-wasm", "", "", "", int64(0), int64(0), 0, int64(0), int64(0))
	f.Add("fz", "hello-c", "", "A", "x\x00y", int64(0), int64(0), 0, int64(0), int64(0))
	f.Add("fz", "cgi", "", "A", "x\x00y", int64(0), int64(0), 0, int64(0), int64(0))
	f.Add("fz", "cgi", "", "B", "y", int64(0), int64(0), 0, int64(0), int64(0)) // after the one above
	f.Fuzz(func(t *testing.T, name, guest, mode, key, val string, mem, timeout int64, conc int, body, fs int64) {
		if node.ValidAppName(name) != nil {
			name = "fz" // names are covered by route tests; keep one app
		}
		req := wire.DeployRequest{Module: mods[guest], Mode: mode, Env: map[string]string{key: val},
			Limits: wire.Limits{MemoryBytes: mem, Timeout: wire.Duration(timeout), Concurrency: conc, MaxBodyBytes: body, FSBytes: fs}}
		if mods[guest] == "" {
			req.Module = guest
		}
		b, err := json.Marshal(req)
		if err != nil {
			t.Skip()
		}
		defer resetEnv(t, e, name)
		w := e.post("/v1/apps/"+name+"/releases", b)
		var d wire.AppDetail
		checkFuzzAnswer(t, w, http.StatusCreated, &d, b)
		valid := guest == "hello-c" || guest == "cgi"
		if valid && w.Code == http.StatusUnprocessableEntity && (mem == 0 || mem >= 1<<20) {
			t.Fatalf("a valid module was refused: %s", w.Body)
		}
		if w.Code == http.StatusCreated {
			rw := httptest.NewRecorder()
			e.node.ServeHTTP(rw, httptest.NewRequest("GET", "http://"+name+".localhost/", nil))
			if rw.Code != 200 && rw.Header().Get("X-Frost-Error") != "time_limit" {
				t.Fatalf("after deploying %s the app answers %d %q", b, rw.Code, rw.Body)
			}
		}
	})
}

// TestWake: POST /v1/apps/NAME/wake (a gateway's prewarm) makes a frozen
// app live without a request; an unknown app is 404.
func TestWake(t *testing.T) {
	e := newEnv(t, token).serve(t)
	d := e.deploy(t, "s", wire.DeployRequest{Module: e.upload(t, "hello-c"), Mode: "session"})
	state := func() string {
		resp, body := e.admin(t, "GET", "/v1/apps/s", nil)
		var got wire.AppDetail
		if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil {
			t.Fatalf("get: %d %s", resp.StatusCode, body)
		}
		return got.State
	}
	if resp, body := e.admin(t, "POST", "/v1/apps/s/freeze", nil); resp.StatusCode != 200 || state() != "frozen" {
		t.Fatalf("freeze: %d %s, state %s", resp.StatusCode, body, state())
	}
	if resp, body := e.admin(t, "POST", "/v1/apps/s/wake", nil); resp.StatusCode != 204 {
		t.Fatalf("wake: %d %s", resp.StatusCode, body)
	}
	if st := state(); st != "live" {
		t.Errorf("after wake: %s, want live", st)
	}
	// The next request reports the wake, done before it arrived.
	w := httptest.NewRecorder()
	e.node.ServeHTTP(w, httptest.NewRequest("GET", "http://s.localhost/", nil))
	if st := w.Header().Get("Server-Timing"); w.Code != 200 || !strings.Contains(st, "wake;dur=") || !strings.Contains(st, ";desc=ahead") {
		t.Errorf("first request after a wake: %d, Server-Timing %q", w.Code, st)
	}
	resp, body := e.admin(t, "POST", "/v1/apps/nope/wake", nil)
	checkError(t, resp, body, http.StatusNotFound, wire.CodeNotFound)
	_ = d
}
