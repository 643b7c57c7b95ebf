package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
)

// fakeServer is an in-memory control API for testing the CLI's logic: what
// it sends and how it prints the answers. It is not the real server (that one
// is tested in its own package); it follows docs/API.md closely enough for
// the verbs.
type fakeServer struct {
	URL   string
	token string
	now   time.Time

	mu         sync.Mutex
	blobs      map[string][]byte
	apps       map[string]*fakeApp
	puts       int // blob uploads
	deploys    []api.DeployRequest
	lastAuth   string           // the last Authorization header
	logs       []api.LogLine    // every app's backlog
	live       chan api.LogLine // lines a follow stream sends after the backlog
	logQueries []string         // raw query of every logs call
}

type fakeApp struct {
	detail api.AppDetail
	env    map[string]string
}

const fakeToken = "tok-123"

func newFakeServer(t *testing.T, now time.Time) *fakeServer {
	f := &fakeServer{
		token: fakeToken,
		now:   now,
		blobs: map[string][]byte{},
		apps:  map[string]*fakeApp{},
		live:  make(chan api.LogLine, 16),
	}
	srv := httptest.NewServer(f.handler())
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *fakeServer) fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.Error{Code: code, Message: msg})
}

func (f *fakeServer) reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// app returns the named app, or answers 404 and returns nil. f.mu is held.
func (f *fakeServer) app(w http.ResponseWriter, r *http.Request) *fakeApp {
	a := f.apps[r.PathValue("name")]
	if a == nil {
		f.fail(w, 404, api.CodeNotFound, fmt.Sprintf("no app named %q", r.PathValue("name")))
	}
	return a
}

func (f *fakeServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		f.reply(w, 200, api.Health{Status: "ok", Version: "v0.test", Domain: "localhost", HTTP: ":8080"})
	})
	mux.HandleFunc("HEAD /v1/blobs/{digest}", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := f.blobs[r.PathValue("digest")]; !ok {
			w.WriteHeader(404)
		}
	})
	mux.HandleFunc("PUT /v1/blobs/{digest}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(b)
		d := r.PathValue("digest")
		if hex.EncodeToString(sum[:]) != d {
			f.fail(w, 422, api.CodeInvalidModule, "the body does not hash to "+d)
			return
		}
		f.puts++
		f.blobs[d] = b
		f.reply(w, 201, api.Blob{Digest: d, Size: int64(len(b))})
	})
	mux.HandleFunc("POST /v1/apps/{name}/releases", func(w http.ResponseWriter, r *http.Request) {
		var req api.DeployRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			f.fail(w, 400, api.CodeInvalidRequest, "bad JSON: "+err.Error())
			return
		}
		f.deploys = append(f.deploys, req)
		mod, ok := f.blobs[req.Module]
		if !ok {
			f.fail(w, 400, api.CodeInvalidRequest, "module "+req.Module+" is not uploaded")
			return
		}
		if !strings.HasPrefix(string(mod), "\x00asm") {
			f.fail(w, 422, api.CodeInvalidModule, "not a WebAssembly module: the first 4 bytes are not \\0asm")
			return
		}
		assets, ok := f.blobs[req.Assets]
		if req.Assets != "" && !ok {
			f.fail(w, 400, api.CodeInvalidRequest, "assets "+req.Assets+" are not uploaded")
			return
		}
		name := r.PathValue("name")
		a := f.apps[name]
		if a == nil {
			a = &fakeApp{env: map[string]string{}}
			a.detail.Name, a.detail.CreatedAt = name, f.now
			a.detail.URL = "http://" + name + ".localhost:8080/"
			f.apps[name] = a
		}
		for k, v := range req.Env {
			a.env[k] = v
		}
		d := &a.detail
		d.Version++
		d.Release = fmt.Sprintf("rel-%s-%d", req.Module[:8], d.Version)
		d.Mode = req.Mode
		if d.Mode == "" {
			d.Mode = "request"
		}
		d.Shape = "wagi"
		if strings.Contains(string(mod), "handle_request") {
			d.Shape = "http-wasm"
		}
		d.Limits = req.Limits
		d.UpdatedAt = f.now
		d.EnvKeys = keysOf(a.env)
		d.Releases = append([]api.Release{{
			ID: d.Release, App: name, Version: d.Version, Runtime: "wasm", Module: req.Module,
			ModuleSize: int64(len(mod)), Shape: d.Shape, Mode: d.Mode, Limits: req.Limits, CreatedAt: f.now,
			Assets: req.Assets, AssetsSize: int64(len(assets)),
		}}, d.Releases...)
		f.reply(w, 201, d)
	})
	mux.HandleFunc("GET /v1/apps", func(w http.ResponseWriter, r *http.Request) {
		apps := []api.App{}
		for _, a := range f.apps {
			apps = append(apps, a.detail.App)
		}
		sort.Slice(apps, func(i, j int) bool { return apps[i].Name > apps[j].Name }) // the CLI sorts
		f.reply(w, 200, apps)
	})
	mux.HandleFunc("GET /v1/apps/{name}", func(w http.ResponseWriter, r *http.Request) {
		if a := f.app(w, r); a != nil {
			f.reply(w, 200, a.detail)
		}
	})
	mux.HandleFunc("DELETE /v1/apps/{name}", func(w http.ResponseWriter, r *http.Request) {
		if a := f.app(w, r); a != nil {
			delete(f.apps, a.detail.Name)
			w.WriteHeader(204)
		}
	})
	mux.HandleFunc("PATCH /v1/apps/{name}/env", func(w http.ResponseWriter, r *http.Request) {
		var req api.EnvRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			f.fail(w, 400, api.CodeInvalidRequest, "bad JSON: "+err.Error())
			return
		}
		a := f.app(w, r)
		if a == nil {
			return
		}
		for k, v := range req.Set {
			a.env[k] = v
		}
		for _, k := range req.Unset {
			delete(a.env, k)
		}
		a.detail.EnvKeys = keysOf(a.env)
		a.detail.EnvVersion++
		f.reply(w, 200, a.detail.App)
	})
	mux.HandleFunc("GET /v1/apps/{name}/logs", func(w http.ResponseWriter, r *http.Request) {
		if f.app(w, r) == nil {
			return
		}
		f.logQueries = append(f.logQueries, r.URL.RawQuery)
		var lines []api.LogLine
		for _, l := range f.logs {
			if l.App == r.PathValue("name") {
				lines = append(lines, l)
			}
		}
		var tail int
		fmt.Sscan(r.URL.Query().Get("tail"), &tail)
		lines = lines[max(0, len(lines)-tail):]
		follow := r.URL.Query().Get("follow") == "true"
		f.mu.Unlock() // streams must not hold the lock
		defer f.mu.Lock()
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for _, l := range lines {
			enc.Encode(l)
		}
		if !follow {
			return
		}
		w.(http.Flusher).Flush()
		for {
			select {
			case l := <-f.live:
				enc.Encode(l)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if r.URL.Path != "/v1/health" {
			f.lastAuth = r.Header.Get("Authorization")
			if f.lastAuth != "Bearer "+f.token {
				f.fail(w, 401, api.CodeUnauthorized, "missing or wrong bearer token")
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// seed stores a module and an app as if deployed, with counters, at the
// given age.
func (f *fakeServer) seed(d api.AppDetail, env map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d.EnvKeys = keysOf(env)
	f.apps[d.Name] = &fakeApp{detail: d, env: env}
}
