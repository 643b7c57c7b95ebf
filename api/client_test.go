package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
)

const testToken = "s3cret"

// fakeAPI is a small in-memory control API: just enough of the routes to
// check what the client sends and how it reads the answers. The real server
// is tested in its own package.
type fakeAPI struct {
	mu      sync.Mutex
	blobs   map[string][]byte
	apps    map[string]*api.AppDetail
	env     map[string]map[string]string
	calls   []string // "METHOD PATH" of every authenticated call
	deploys []api.DeployRequest
	logs    chan api.LogLine // lines a follow stream sends after the backlog
}

func newFakeAPI(t *testing.T) (*fakeAPI, *httptest.Server) {
	f := &fakeAPI{
		blobs: map[string][]byte{},
		apps:  map[string]*api.AppDetail{},
		env:   map[string]map[string]string{},
		logs:  make(chan api.LogLine, 16),
	}
	srv := httptest.NewServer(f.handler())
	t.Cleanup(srv.Close)
	return f, srv
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.Error{Code: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (f *fakeAPI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, api.Health{Status: "ok", Version: "test", Domain: "localhost", HTTP: ":8080"})
	})
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+testToken {
				writeErr(w, 401, api.CodeUnauthorized, "missing or wrong bearer token")
				return
			}
			f.mu.Lock()
			f.calls = append(f.calls, r.Method+" "+r.URL.Path)
			f.mu.Unlock()
			h(w, r)
		}
	}
	mux.HandleFunc("HEAD /v1/blobs/{digest}", auth(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		_, ok := f.blobs[r.PathValue("digest")]
		f.mu.Unlock()
		if !ok {
			w.WriteHeader(404)
		}
	}))
	mux.HandleFunc("PUT /v1/blobs/{digest}", auth(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.ContentLength != int64(len(b)) {
			writeErr(w, 400, api.CodeInvalidRequest, fmt.Sprintf("Content-Length %d, got %d bytes", r.ContentLength, len(b)))
			return
		}
		sum := sha256.Sum256(b)
		if d := r.PathValue("digest"); hex.EncodeToString(sum[:]) != d {
			writeErr(w, 422, api.CodeInvalidModule, "body does not hash to "+d)
			return
		}
		f.mu.Lock()
		f.blobs[r.PathValue("digest")] = b
		f.mu.Unlock()
		writeJSON(w, 201, api.Blob{Digest: r.PathValue("digest"), Size: int64(len(b))})
	}))
	mux.HandleFunc("POST /v1/apps/{name}/releases", auth(func(w http.ResponseWriter, r *http.Request) {
		var req api.DeployRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeErr(w, 400, api.CodeInvalidRequest, err.Error())
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.deploys = append(f.deploys, req)
		mod, ok := f.blobs[req.Module]
		if !ok {
			writeErr(w, 400, api.CodeInvalidRequest, "module not uploaded")
			return
		}
		if !strings.HasPrefix(string(mod), "\x00asm") {
			writeErr(w, 422, api.CodeInvalidModule, "not a WebAssembly module: it does not start with \\0asm")
			return
		}
		name := r.PathValue("name")
		d := f.apps[name]
		if d == nil {
			d = &api.AppDetail{App: api.App{Name: name, URL: "http://" + name + ".localhost:8080/"}}
			f.apps[name] = d
		}
		d.Version++
		d.Release = fmt.Sprintf("r%d", d.Version)
		d.Mode, d.Shape = "request", "wagi"
		d.Releases = append([]api.Release{{ID: d.Release, App: name, Version: d.Version, Module: req.Module}}, d.Releases...)
		writeJSON(w, 201, d)
	}))
	mux.HandleFunc("GET /v1/apps", auth(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		apps := []api.App{}
		for _, d := range f.apps {
			apps = append(apps, d.App)
		}
		writeJSON(w, 200, apps)
	}))
	mux.HandleFunc("GET /v1/apps/{name}", auth(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		d, ok := f.apps[r.PathValue("name")]
		if !ok {
			writeErr(w, 404, api.CodeNotFound, "no app named "+r.PathValue("name"))
			return
		}
		writeJSON(w, 200, d)
	}))
	mux.HandleFunc("DELETE /v1/apps/{name}", auth(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.apps[r.PathValue("name")]; !ok {
			writeErr(w, 404, api.CodeNotFound, "no app named "+r.PathValue("name"))
			return
		}
		delete(f.apps, r.PathValue("name"))
		w.WriteHeader(204)
	}))
	mux.HandleFunc("PATCH /v1/apps/{name}/env", auth(func(w http.ResponseWriter, r *http.Request) {
		var req api.EnvRequest
		json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		defer f.mu.Unlock()
		name := r.PathValue("name")
		d, ok := f.apps[name]
		if !ok {
			writeErr(w, 404, api.CodeNotFound, "no app named "+name)
			return
		}
		env := f.env[name]
		if env == nil {
			env = map[string]string{}
			f.env[name] = env
		}
		for k, v := range req.Set {
			env[k] = v
		}
		for _, k := range req.Unset {
			delete(env, k)
		}
		d.EnvKeys = d.EnvKeys[:0]
		for k := range env {
			d.EnvKeys = append(d.EnvKeys, k)
		}
		d.EnvVersion++
		writeJSON(w, 200, d.App)
	}))
	mux.HandleFunc("GET /v1/apps/{name}/logs", auth(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
		n := 3
		if tail := r.URL.Query().Get("tail"); tail != "" {
			fmt.Sscan(tail, &n)
		}
		for i := range n {
			enc.Encode(api.LogLine{Time: t0.Add(time.Duration(i) * time.Second), App: r.PathValue("name"), Stream: "stdout", Message: fmt.Sprint("line ", i)})
		}
		if r.URL.Query().Get("follow") != "true" {
			return
		}
		w.(http.Flusher).Flush()
		for {
			select {
			case l := <-f.logs:
				enc.Encode(l)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	}))
	return mux
}

func (f *fakeAPI) callCount(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func writeModule(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app.wasm")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewClientBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:7070":   "http://127.0.0.1:7070",
		"http://127.0.0.1:7070/":  "http://127.0.0.1:7070",
		"127.0.0.1:7070":          "http://127.0.0.1:7070",
		" https://frost.example ": "https://frost.example",
	} {
		if got := api.NewClient(in, "").BaseURL(); got != want {
			t.Errorf("NewClient(%q).BaseURL() = %q, want %q", in, got, want)
		}
	}
}

func TestHealthNeedsNoToken(t *testing.T) {
	_, srv := newFakeAPI(t)
	h, err := api.NewClient(srv.URL, "").Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || h.Domain != "localhost" {
		t.Errorf("Health = %+v", h)
	}
}

func TestDeployFileUploadsOnlyWhenMissing(t *testing.T) {
	f, srv := newFakeAPI(t)
	c := api.NewClient(srv.URL, testToken)
	ctx := context.Background()
	path := writeModule(t, "\x00asm\x01\x00\x00\x00")

	d, err := c.DeployFile(ctx, "hello", path, api.DeployRequest{Mode: "session"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "hello" || d.Version != 1 || d.Release != "r1" {
		t.Errorf("first deploy = %+v", d.App)
	}
	if got := f.callCount("PUT /v1/blobs/"); got != 1 {
		t.Errorf("first deploy uploaded %d times, want 1", got)
	}
	sum := sha256.Sum256([]byte("\x00asm\x01\x00\x00\x00"))
	if got := f.deploys[0]; got.Module != hex.EncodeToString(sum[:]) || got.Mode != "session" {
		t.Errorf("deploy request = %+v", got)
	}

	d, err = c.DeployFile(ctx, "hello", path, api.DeployRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 2 {
		t.Errorf("second deploy version = %d, want 2", d.Version)
	}
	if got := f.callCount("PUT /v1/blobs/"); got != 1 {
		t.Errorf("second deploy uploaded again (%d uploads): the blob was already stored", got)
	}
	if got := f.callCount("HEAD /v1/blobs/"); got != 2 {
		t.Errorf("HEAD /v1/blobs called %d times, want 2", got)
	}
}

func TestPutBlobEmptyAndHasBlob(t *testing.T) {
	_, srv := newFakeAPI(t)
	c := api.NewClient(srv.URL, testToken)
	ctx := context.Background()
	sum := sha256.Sum256(nil)
	digest := hex.EncodeToString(sum[:])
	if ok, err := c.HasBlob(ctx, digest); err != nil || ok {
		t.Fatalf("HasBlob before upload = %v, %v; want false, nil", ok, err)
	}
	b, err := c.PutBlob(ctx, digest, strings.NewReader(""), 0)
	if err != nil || b.Size != 0 || b.Digest != digest {
		t.Fatalf("PutBlob = %+v, %v", b, err)
	}
	if ok, err := c.HasBlob(ctx, digest); err != nil || !ok {
		t.Fatalf("HasBlob after upload = %v, %v; want true, nil", ok, err)
	}
	if _, err := c.HasBlob(ctx, "ABC"); err == nil {
		t.Error("HasBlob accepted a malformed digest")
	}
}

func TestPutBlobHashMismatchIsStatusError(t *testing.T) {
	_, srv := newFakeAPI(t)
	c := api.NewClient(srv.URL, testToken)
	digest := strings.Repeat("0", 64)
	_, err := c.PutBlob(context.Background(), digest, strings.NewReader("x"), 1)
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != 422 || se.Err.Code != api.CodeInvalidModule {
		t.Fatalf("PutBlob with a wrong digest: err = %v, want a 422 invalid_module StatusError", err)
	}
}

func TestStatusErrors(t *testing.T) {
	_, srv := newFakeAPI(t)
	ctx := context.Background()
	tests := []struct {
		name       string
		token      string
		call       func(c *api.Client) error
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{"wrong token", "nope", func(c *api.Client) error { _, err := c.Apps(ctx); return err },
			401, api.CodeUnauthorized, "missing or wrong bearer token"},
		{"unknown app", testToken, func(c *api.Client) error { _, err := c.App(ctx, "ghost"); return err },
			404, api.CodeNotFound, "no app named ghost"},
		{"delete unknown", testToken, func(c *api.Client) error { return c.DeleteApp(ctx, "ghost") },
			404, api.CodeNotFound, "no app named ghost"},
		{"invalid module", testToken, func(c *api.Client) error {
			_, err := c.DeployFile(ctx, "bad", writeModule(t, "#!/bin/sh"), api.DeployRequest{})
			return err
		}, 422, api.CodeInvalidModule, "not a WebAssembly module"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(api.NewClient(srv.URL, tt.token))
			var se *api.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v (%T), want *api.StatusError", err, err)
			}
			if se.Status != tt.wantStatus || se.Err.Code != tt.wantCode || !strings.Contains(se.Error(), tt.wantMsg) {
				t.Errorf("err = %d %q %q, want %d %q containing %q", se.Status, se.Err.Code, se.Error(), tt.wantStatus, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestStatusErrorFromOtherServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, err := api.NewClient(srv.URL, testToken).Apps(context.Background())
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != 404 || se.Err.Code != "" {
		t.Fatalf("err = %#v, want a 404 StatusError with no code", err)
	}
	if !strings.Contains(se.Error(), "404 page not found") {
		t.Errorf("Error() = %q, want the body in it", se.Error())
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	l.Close() // nothing listens there now

	_, err = api.NewClient(url, testToken).Apps(context.Background())
	var ue *api.UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v (%T), want *api.UnreachableError", err, err)
	}
	for _, want := range []string{"isn't reachable at " + url, "frost server", "FROST_API"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestSetEnvAndDelete(t *testing.T) {
	_, srv := newFakeAPI(t)
	c := api.NewClient(srv.URL, testToken)
	ctx := context.Background()
	if _, err := c.DeployFile(ctx, "web", writeModule(t, "\x00asm"), api.DeployRequest{}); err != nil {
		t.Fatal(err)
	}
	a, err := c.SetEnv(ctx, "web", api.EnvRequest{Set: map[string]string{"A": "1", "B": "2"}})
	if err != nil || len(a.EnvKeys) != 2 || a.EnvVersion != 1 {
		t.Fatalf("SetEnv = %+v, %v", a, err)
	}
	a, err = c.SetEnv(ctx, "web", api.EnvRequest{Unset: []string{"A"}})
	if err != nil || len(a.EnvKeys) != 1 || a.EnvKeys[0] != "B" {
		t.Fatalf("SetEnv unset = %+v, %v", a, err)
	}
	apps, err := c.Apps(ctx)
	if err != nil || len(apps) != 1 {
		t.Fatalf("Apps = %v, %v", apps, err)
	}
	if err := c.DeleteApp(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if apps, _ := c.Apps(ctx); len(apps) != 0 {
		t.Errorf("after DeleteApp, Apps = %v", apps)
	}
}

func TestInvalidNameSendsNothing(t *testing.T) {
	f, srv := newFakeAPI(t)
	c := api.NewClient(srv.URL, testToken)
	if _, err := c.App(context.Background(), "Bad_Name"); err == nil {
		t.Fatal("App accepted an invalid name")
	}
	if n := f.callCount(""); n != 0 {
		t.Errorf("%d calls reached the server", n)
	}
}

func TestLogs(t *testing.T) {
	f, srv := newFakeAPI(t)
	c := api.NewClient(srv.URL, testToken)

	var got []string
	err := c.Logs(context.Background(), "web", 2, false, func(l api.LogLine) error {
		got = append(got, l.Message)
		return nil
	})
	if err != nil || strings.Join(got, "|") != "line 0|line 1" {
		t.Fatalf("Logs = %q, %v", got, err)
	}

	// Follow: the backlog, then a live line, then cancel.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got = nil
	f.logs <- api.LogLine{Stream: "stderr", Message: "live"}
	err = c.Logs(ctx, "web", 1, true, func(l api.LogLine) error {
		got = append(got, l.Message)
		if l.Message == "live" {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || strings.Join(got, "|") != "line 0|live" {
		t.Fatalf("follow: Logs = %q, %v; want [line 0 live], context.Canceled", got, err)
	}

	// An error from fn stops the stream and comes back.
	stop := errors.New("stop")
	err = c.Logs(context.Background(), "web", 3, true, func(api.LogLine) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("Logs returned %v, want fn's error", err)
	}
}

func TestValidAppName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string // "" for valid
	}{
		{"a", ""},
		{"hello", ""},
		{"my-app-2", ""},
		{"a1", ""},
		{"a--b", ""},
		{strings.Repeat("a", 63), ""},
		{"", "empty"},
		{strings.Repeat("a", 64), "the limit is 63"},
		{"1app", "must start with a lower-case letter"},
		{"-app", "must start with a lower-case letter"},
		{"app-", "must not end with '-'"},
		{"Hello", `upper-case 'H' at position 1: app names are lower-case (try "hello")`},
		{"my_app", `'_' at position 3`},
		{"my.app", `'.' at position 3`},
		{"héllo", `'é' at position 2`},
		{"a b", `' ' at position 2`},
	}
	for _, tt := range tests {
		err := api.ValidAppName(tt.name)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidAppName(%q) = %v, want nil", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ValidAppName(%q) = %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

var dnsLabel = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

func FuzzValidAppName(f *testing.F) {
	for _, s := range []string{"a", "hello", "my-app", "", "-", "a-", "1a", "Hello", "héllo", strings.Repeat("z", 63), strings.Repeat("z", 64), "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := api.ValidAppName(name)
		if want := dnsLabel.MatchString(name); (err == nil) != want {
			t.Fatalf("ValidAppName(%q) = %v, but the DNS-label rule says valid=%v", name, err, want)
		}
		if err != nil && !strings.Contains(err.Error(), "app name") {
			t.Fatalf("ValidAppName(%q) error %q does not say what it is about", name, err)
		}
	})
}
