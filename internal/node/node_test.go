package node

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/blob"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/testguest"
	"github.com/frostdev/frost/internal/testtool"
)

// putGuest uploads a test guest and returns its digest.
func putGuest(t testing.TB, n *Node, guest string) string {
	t.Helper()
	f, err := os.Open(testguest.Path(t, guest))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := n.blobs.Put(context.Background(), "", f, 0)
	if err != nil {
		t.Fatal(err)
	}
	return info.Digest
}

// deployLimits deploys a test guest with the given limits.
func deployLimits(t testing.TB, n *Node, name, guest string, l api.Limits) registry.Release {
	t.Helper()
	rel, err := n.Deploy(context.Background(), name, api.DeployRequest{Module: putGuest(t, n, guest), Limits: l})
	if err != nil {
		t.Fatalf("deploy %s as %s: %v", guest, name, err)
	}
	return rel
}

// get sends one request to the node's app handler.
func get(n http.Handler, target string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	n.ServeHTTP(w, httptest.NewRequest("GET", target, nil))
	return w
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// metric returns the value of the counter or gauge name with exactly the
// given labels, and whether that series exists.
func metric(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; !ok || v != lp.GetValue() {
					continue series
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func wantMetric(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := metric(t, g, name, labels)
	if !ok {
		t.Errorf("%s%v: no such series; want %v", name, labels, want)
		return
	}
	if got != want {
		t.Errorf("%s%v = %v; want %v", name, labels, got, want)
	}
}

func TestDeployValidation(t *testing.T) {
	n := newTestNode(t)
	hello := putGuest(t, n, "hello-c")
	missing := digestOf([]byte("never uploaded"))
	cases := []struct {
		name string
		app  string
		req  api.DeployRequest
		want error
	}{
		{name: "empty name", app: "", req: api.DeployRequest{Module: hello}, want: ErrInvalid},
		{name: "upper-case name", app: "Hello", req: api.DeployRequest{Module: hello}, want: ErrInvalid},
		{name: "name with dot", app: "a.b", req: api.DeployRequest{Module: hello}, want: ErrInvalid},
		{name: "name with leading dash", app: "-a", req: api.DeployRequest{Module: hello}, want: ErrInvalid},
		{name: "name too long", app: strings.Repeat("a", 64), req: api.DeployRequest{Module: hello}, want: ErrInvalid},
		{name: "unknown mode", app: "x", req: api.DeployRequest{Module: hello, Mode: "batch"}, want: ErrInvalid},
		{name: "upper-case mode", app: "x", req: api.DeployRequest{Module: hello, Mode: "REQUEST"}, want: ErrInvalid},
		{name: "negative idle", app: "x", req: api.DeployRequest{Module: hello, Idle: api.Duration(-time.Second)}, want: ErrInvalid},
		{name: "idle too short", app: "x", req: api.DeployRequest{Module: hello, Idle: api.Duration(time.Millisecond)}, want: ErrInvalid},
		{name: "negative memory", app: "x", req: api.DeployRequest{Module: hello, Limits: api.Limits{MemoryBytes: -1}}, want: ErrInvalid},
		{name: "negative timeout", app: "x", req: api.DeployRequest{Module: hello, Limits: api.Limits{Timeout: api.Duration(-time.Second)}}, want: ErrInvalid},
		{name: "negative concurrency", app: "x", req: api.DeployRequest{Module: hello, Limits: api.Limits{Concurrency: -1}}, want: ErrInvalid},
		{name: "negative body", app: "x", req: api.DeployRequest{Module: hello, Limits: api.Limits{MaxBodyBytes: -1}}, want: ErrInvalid},
		{name: "negative fs", app: "x", req: api.DeployRequest{Module: hello, Limits: api.Limits{FSBytes: -1}}, want: ErrInvalid},
		{name: "missing blob", app: "x", req: api.DeployRequest{Module: missing}, want: ErrInvalid},
		{name: "empty module", app: "x", req: api.DeployRequest{}, want: ErrInvalid},
		{name: "malformed digest", app: "x", req: api.DeployRequest{Module: "../../etc/passwd"}, want: ErrInvalid},
		{name: "upper-case digest", app: "x", req: api.DeployRequest{Module: strings.ToUpper(hello)}, want: ErrInvalid},
		{name: "env key with =", app: "x", req: api.DeployRequest{Module: hello, Env: map[string]string{"A=B": "c"}}, want: ErrInvalid},
		{name: "empty env key", app: "x", req: api.DeployRequest{Module: hello, Env: map[string]string{"": "c"}}, want: ErrInvalid},
		{name: "env key with NUL", app: "x", req: api.DeployRequest{Module: hello, Env: map[string]string{"A\x00": "c"}}, want: ErrInvalid},
		{name: "not wasm", app: "x", req: api.DeployRequest{Module: putGuest(t, n, "not-wasm")}, want: runtime.ErrInvalidCode},
		{name: "truncated wasm", app: "x", req: api.DeployRequest{Module: putGuest(t, n, "truncated")}, want: runtime.ErrInvalidCode},
		{name: "no known shape", app: "x", req: api.DeployRequest{Module: putGuest(t, n, "noshape")}, want: runtime.ErrUnsupportedShape},
		{name: "memory below the module's minimum", app: "x", req: api.DeployRequest{Module: putGuest(t, n, "probe"), Limits: api.Limits{MemoryBytes: 1}}, want: runtime.ErrMemoryLimit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, _ := metric(t, n.Metrics(), "frost_deploys_total", map[string]string{"result": "invalid"})
			_, err := n.Deploy(context.Background(), c.app, c.req)
			if !errors.Is(err, c.want) {
				t.Fatalf("Deploy(%q) = %v; want an error wrapping %v", c.app, err, c.want)
			}
			if err.Error() == c.want.Error() {
				t.Errorf("error %q says nothing more than the sentinel", err)
			}
			// Nothing changed: no app, no route.
			if _, err := n.reg.GetApp(context.Background(), c.app); !errors.Is(err, registry.ErrNotFound) {
				t.Errorf("after a refused deploy GetApp(%q) = %v; want ErrNotFound", c.app, err)
			}
			if n.lookup(c.app) != nil {
				t.Errorf("after a refused deploy app %q is routed", c.app)
			}
			if c.want == ErrInvalid || c.want == runtime.ErrInvalidCode || c.want == runtime.ErrUnsupportedShape {
				after, _ := metric(t, n.Metrics(), "frost_deploys_total", map[string]string{"result": "invalid"})
				if after != before+1 {
					t.Errorf("frost_deploys_total{result=invalid} went from %v to %v; want +1", before, after)
				}
			}
		})
	}
}

func TestFailedDeployChangesNothing(t *testing.T) {
	n := newTestNode(t)
	good := deployLimits(t, n, "x", "hello-c", api.Limits{})
	for _, guest := range []string{"not-wasm", "truncated", "noshape"} {
		if _, err := n.Deploy(context.Background(), "x", api.DeployRequest{Module: putGuest(t, n, guest), Env: map[string]string{"K": "v"}}); err == nil {
			t.Fatalf("deploying %s succeeded", guest)
		}
	}
	d, err := n.App(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if d.Release != good.ID || len(d.Releases) != 1 || len(d.EnvKeys) != 0 || d.EnvVersion != 0 {
		t.Errorf("after failed deploys: release %s (want %s), %d releases, env %v v%d", d.Release, good.ID, len(d.Releases), d.EnvKeys, d.EnvVersion)
	}
	if w := get(n, "http://x.localhost/"); w.Code != 200 || w.Body.String() != "hello from frost\n" {
		t.Errorf("after failed deploys: %d %q", w.Code, w.Body)
	}
}

func TestRedeploySameRelease(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	first := deployLimits(t, n, "x", "hello-c", api.Limits{})
	again := deployLimits(t, n, "x", "hello-c", api.Limits{})
	if again.ID != first.ID || again.Version != first.Version {
		t.Errorf("identical redeploy: release %s v%d; want %s v%d", again.ID, again.Version, first.ID, first.Version)
	}
	other := deployLimits(t, n, "x", "spin", api.Limits{})
	if other.ID == first.ID || other.Version != 2 {
		t.Fatalf("new code: release %s v%d; want a new ID at v2", other.ID, other.Version)
	}
	if w := get(n, "http://x.localhost/?mode=work&n=1"); w.Code != 200 || w.Body.String() == "hello from frost\n" {
		t.Fatalf("after deploying spin: %d %q", w.Code, w.Body)
	}

	back := deployLimits(t, n, "x", "hello-c", api.Limits{})
	if back.ID != first.ID || back.Version != first.Version || !back.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("rollback: release %s v%d %v; want the first release %s v%d %v", back.ID, back.Version, back.CreatedAt, first.ID, first.Version, first.CreatedAt)
	}
	d, err := n.App(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if d.Release != first.ID || d.Version != first.Version || len(d.Releases) != 2 {
		t.Errorf("rollback: app at %s v%d with %d releases; want %s v%d with 2", d.Release, d.Version, len(d.Releases), first.ID, first.Version)
	}
	if w := get(n, "http://x.localhost/"); w.Code != 200 || w.Body.String() != "hello from frost\n" {
		t.Errorf("rollback: %d %q; want the hello guest", w.Code, w.Body)
	}
	// The next new release still counts on from the highest version.
	if next := deployLimits(t, n, "x", "hello-c", api.Limits{Concurrency: 7}); next.Version != 3 {
		t.Errorf("after a rollback the next release is v%d; want v3", next.Version)
	}
}

func TestReleaseIDDependsOnLimits(t *testing.T) {
	n := newTestNode(t)
	def := n.cfg.Defaults
	cases := []struct {
		name   string
		limits api.Limits
		sameAs string // "" means a new ID
	}{
		{name: "defaults"},
		{name: "explicit defaults", limits: api.Limits{MemoryBytes: def.MemoryBytes, Timeout: api.Duration(def.Timeout), Concurrency: def.Concurrency, MaxBodyBytes: def.MaxBodyBytes, FSBytes: def.FSBytes}, sameAs: "defaults"},
		{name: "memory", limits: api.Limits{MemoryBytes: 64 << 20}},
		{name: "timeout", limits: api.Limits{Timeout: api.Duration(3 * time.Second)}},
		{name: "concurrency", limits: api.Limits{Concurrency: 3}},
		{name: "body", limits: api.Limits{MaxBodyBytes: 1024}},
		{name: "fs", limits: api.Limits{FSBytes: 1 << 20}},
		{name: "memory again", limits: api.Limits{MemoryBytes: 64 << 20}, sameAs: "memory"},
	}
	ids := map[string]string{}  // case → ID
	seen := map[string]string{} // ID → case
	for _, c := range cases {
		rel := deployLimits(t, n, "x", "hello-c", c.limits)
		ids[c.name] = rel.ID
		if c.sameAs != "" {
			if rel.ID != ids[c.sameAs] {
				t.Errorf("%s: release %s; want the same as %s (%s)", c.name, rel.ID, c.sameAs, ids[c.sameAs])
			}
			continue
		}
		if prev, ok := seen[rel.ID]; ok {
			t.Errorf("%s: release %s is the same as %s's", c.name, rel.ID, prev)
		}
		seen[rel.ID] = c.name
	}
}

func TestDeleteThenNotFound(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	deployGuest(t, n, "x", "hello-c")
	if w := get(n, "http://x.localhost/"); w.Code != 200 {
		t.Fatalf("before delete: %d %q", w.Code, w.Body)
	}
	if err := n.Delete(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	w := get(n, "http://x.localhost/")
	if w.Code != 404 || w.Header().Get("X-Frost-Error") != "no_app" {
		t.Errorf("after delete: %d %s %q; want 404 no_app", w.Code, w.Header().Get("X-Frost-Error"), w.Body)
	}
	if _, err := n.App(ctx, "x"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("App after delete = %v; want ErrNotFound", err)
	}
	if err := n.Logs(ctx, "x", 10, false, func(api.LogLine) error { return nil }); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Logs after delete = %v; want ErrNotFound", err)
	}
	if err := n.Delete(ctx, "x"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("second Delete = %v; want ErrNotFound", err)
	}
	if _, ok := metric(t, n.Metrics(), "frost_requests_total", map[string]string{"app": "x", "code": "200"}); ok {
		t.Errorf("metrics of a deleted app are still exported")
	}
	apps, err := n.Apps(ctx)
	if err != nil || len(apps) != 0 {
		t.Errorf("Apps after delete = %v, %v; want none", apps, err)
	}
	// The name is free again; the new app starts from v1 with no old logs.
	rel := deployLimits(t, n, "x", "hello-c", api.Limits{})
	if rel.Version != 1 {
		t.Errorf("redeploy after delete: v%d; want v1", rel.Version)
	}
	var lines []api.LogLine
	n.Logs(ctx, "x", -1, false, func(l api.LogLine) error { lines = append(lines, l); return nil })
	if len(lines) != 1 {
		t.Errorf("redeploy after delete: %d log lines; want only the new deploy's: %v", len(lines), lines)
	}
	if w := get(n, "http://x.localhost/"); w.Code != 200 {
		t.Errorf("redeploy after delete: %d %q", w.Code, w.Body)
	}
}

func TestSetEnv(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	t.Run("missing app", func(t *testing.T) {
		_, err := n.SetEnv(ctx, "nope", api.EnvRequest{Set: map[string]string{"A": "b"}})
		if !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("SetEnv on a missing app = %v; want registry.ErrNotFound", err)
		}
		if _, err := n.reg.GetApp(ctx, "nope"); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("SetEnv created the app: %v", err)
		}
	})
	deployGuest(t, n, "cgi", "cgi")
	t.Run("bad keys", func(t *testing.T) {
		for _, k := range []string{"", "A=B", "A\x00"} {
			if _, err := n.SetEnv(ctx, "cgi", api.EnvRequest{Set: map[string]string{k: "v"}}); !errors.Is(err, ErrInvalid) {
				t.Errorf("SetEnv key %q = %v; want ErrInvalid", k, err)
			}
		}
	})
	t.Run("set and unset reach new instances", func(t *testing.T) {
		ap, err := n.SetEnv(ctx, "cgi", api.EnvRequest{Set: map[string]string{"GREETING": "hi there", "OTHER": "x"}})
		if err != nil {
			t.Fatal(err)
		}
		if ap.Env["GREETING"] != "hi there" || ap.EnvVersion != 1 {
			t.Errorf("SetEnv = %+v", ap)
		}
		if w := get(n, "http://cgi.localhost/"); !strings.Contains(w.Body.String(), "env GREETING=hi there\n") {
			t.Errorf("guest did not see the new env: %d %q", w.Code, w.Body)
		}
		ap, err = n.SetEnv(ctx, "cgi", api.EnvRequest{Unset: []string{"GREETING", "NEVER-SET"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ap.Env["GREETING"]; ok || ap.Env["OTHER"] != "x" || ap.EnvVersion != 2 {
			t.Errorf("after unset: %+v", ap)
		}
		if w := get(n, "http://cgi.localhost/"); !strings.Contains(w.Body.String(), "env GREETING=\n") {
			t.Errorf("guest still sees the unset env: %d %q", w.Code, w.Body)
		}
	})
}

func TestServeHTTPRefusals(t *testing.T) {
	n := newTestNode(t)
	deployLimits(t, n, "small", "hello-c", api.Limits{MaxBodyBytes: 16})
	cases := []struct {
		name     string
		host     string
		body     io.Reader
		length   int64 // Content-Length; -1 sends the body chunked
		wantCode int
		wantErr  string // X-Frost-Error
	}{
		{name: "body at the limit", host: "small.localhost", body: strings.NewReader(strings.Repeat("a", 16)), length: 16, wantCode: 200},
		{name: "chunked body at the limit", host: "small.localhost", body: strings.NewReader(strings.Repeat("a", 16)), length: -1, wantCode: 200},
		{name: "body over the limit", host: "small.localhost", body: strings.NewReader(strings.Repeat("a", 17)), length: 17, wantCode: 413, wantErr: "body_limit"},
		{name: "declared length over the limit", host: "small.localhost", body: strings.NewReader(""), length: 1 << 40, wantCode: 413, wantErr: "body_limit"},
		{name: "chunked body over the limit", host: "small.localhost", body: strings.NewReader(strings.Repeat("a", 1<<20)), length: -1, wantCode: 413, wantErr: "body_limit"},
		{name: "body read error", host: "small.localhost", body: io.MultiReader(strings.NewReader("ab"), errReader{}), length: -1, wantCode: 400, wantErr: "bad_body"},
		{name: "unknown app", host: "nope.localhost", wantCode: 404, wantErr: "no_app"},
		{name: "other domain", host: "small.example.com", wantCode: 404, wantErr: "no_app"},
		{name: "bare domain", host: "localhost:8080", wantCode: 404, wantErr: "no_app"},
		{name: "ip address", host: "127.0.0.1:8080", wantCode: 404, wantErr: "no_app"},
		{name: "empty host", host: "", wantCode: 404, wantErr: "no_app"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", c.body)
			r.Host = c.host
			r.ContentLength = c.length
			if c.body == nil {
				r.Body = http.NoBody
				r.ContentLength = 0
			}
			w := httptest.NewRecorder()
			n.ServeHTTP(w, r)
			if w.Code != c.wantCode || w.Header().Get("X-Frost-Error") != c.wantErr {
				t.Fatalf("%d %q %q; want %d %q", w.Code, w.Header().Get("X-Frost-Error"), w.Body, c.wantCode, c.wantErr)
			}
			if c.wantErr != "" {
				if ct := w.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
					t.Errorf("Content-Type %q", ct)
				}
				if !strings.HasPrefix(w.Body.String(), "frost: ") || !strings.HasSuffix(w.Body.String(), "\n") {
					t.Errorf("error body %q: want one line starting with \"frost: \"", w.Body)
				}
			}
		})
	}
	// A refused request does not leak an in-flight slot.
	if got := n.lookup("small").inflight.Load(); got != 0 {
		t.Errorf("in flight after refusals: %d", got)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestConcurrencyLimit holds the only slot with a guest that spins until its
// time limit and checks that a second request is refused at once.
func TestConcurrencyLimit(t *testing.T) {
	n := newTestNode(t)
	deployLimits(t, n, "spin", "spin", api.Limits{Concurrency: 1, Timeout: api.Duration(time.Second)})
	a := n.lookup("spin")

	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- get(n, "http://spin.localhost/?mode=forever") }()
	deadline := time.Now().Add(5 * time.Second)
	for a.inflight.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the spinning request never started")
		}
		time.Sleep(time.Millisecond)
	}

	w := get(n, "http://spin.localhost/?mode=work&n=1")
	if w.Code != 503 || w.Header().Get("X-Frost-Error") != "concurrency_limit" || w.Header().Get("Retry-After") == "" {
		t.Errorf("second request: %d %q Retry-After %q; want 503 concurrency_limit with Retry-After", w.Code, w.Header().Get("X-Frost-Error"), w.Header().Get("Retry-After"))
	}
	first := <-done
	if first.Code != 504 || first.Header().Get("X-Frost-Error") != "time_limit" {
		t.Errorf("spinning request: %d %q %q; want 504 time_limit", first.Code, first.Header().Get("X-Frost-Error"), first.Body)
	}
	// The slot is free again.
	if w := get(n, "http://spin.localhost/?mode=work&n=1"); w.Code != 200 {
		t.Errorf("after the slot freed: %d %q", w.Code, w.Body)
	}

	m := n.Metrics()
	wantMetric(t, m, "frost_limit_kills_total", map[string]string{"app": "spin", "limit": "concurrency"}, 1)
	wantMetric(t, m, "frost_limit_kills_total", map[string]string{"app": "spin", "limit": "cpu"}, 1)
	wantMetric(t, m, "frost_requests_total", map[string]string{"app": "spin", "code": "503"}, 1)
	wantMetric(t, m, "frost_requests_total", map[string]string{"app": "spin", "code": "504"}, 1)
	wantMetric(t, m, "frost_requests_total", map[string]string{"app": "spin", "code": "200"}, 1)
	wantMetric(t, m, "frost_errors_total", map[string]string{"app": "spin", "reason": "concurrency_limit"}, 1)
	wantMetric(t, m, "frost_inflight_requests", map[string]string{"app": "spin"}, 0)

	d, err := n.App(context.Background(), "spin")
	if err != nil {
		t.Fatal(err)
	}
	if d.Counters.Requests != 3 || d.Counters.Errors != 2 || d.Counters.LimitKills["concurrency"] != 1 || d.Counters.LimitKills["cpu"] != 1 {
		t.Errorf("counters %+v", d.Counters)
	}
}

// TestGuestFaults makes guests fail on purpose and checks each failure's
// status, its log line, and that the app serves the next request.
func TestGuestFaults(t *testing.T) {
	n := newTestNode(t)
	deployLimits(t, n, "spin", "spin", api.Limits{Timeout: api.Duration(200 * time.Millisecond)})
	deployLimits(t, n, "bomb", "membomb", api.Limits{MemoryBytes: 4 << 20})
	cases := []struct {
		name     string
		target   string
		wantCode int
		wantErr  string
		limit    string // limit kill counted, if any
	}{
		{name: "time limit", target: "http://spin.localhost/?mode=forever", wantCode: 504, wantErr: "time_limit", limit: "cpu"},
		{name: "stack overflow", target: "http://spin.localhost/?mode=recurse", wantCode: 500, wantErr: "guest_trap"},
		{name: "trap at the memory limit", target: "http://bomb.localhost/?mode=trap", wantCode: 500, wantErr: "memory_limit", limit: "memory"},
		{name: "malloc fails at the memory limit", target: "http://bomb.localhost/", wantCode: 200},
		{name: "guest answers 400", target: "http://spin.localhost/", wantCode: 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := get(n, c.target)
			if w.Code != c.wantCode || w.Header().Get("X-Frost-Error") != c.wantErr {
				t.Fatalf("%d %q %q; want %d %q", w.Code, w.Header().Get("X-Frost-Error"), w.Body, c.wantCode, c.wantErr)
			}
			if !serverTimingRE.MatchString(w.Header().Get("Server-Timing")) {
				t.Errorf("Server-Timing %q", w.Header().Get("Server-Timing"))
			}
			app, _ := n.appName(httptest.NewRequest("GET", c.target, nil).Host)
			if c.limit != "" {
				wantMetric(t, n.Metrics(), "frost_limit_kills_total", map[string]string{"app": app, "limit": c.limit}, 1)
			}
			if c.wantErr != "" {
				lines := n.logs.tail(app, 1)
				if len(lines) != 1 || lines[0].Stream != "frost" || lines[0].Level != "error" {
					t.Errorf("last log line %+v; want the failure", lines)
				}
			}
			next := "http://" + app + ".localhost/?mode=work&n=3"
			if w := get(n, next); w.Code != 200 {
				t.Errorf("after the fault: %d %q", w.Code, w.Body)
			}
		})
	}
}

var serverTimingRE = regexp.MustCompile(`^boot;desc=(warm|thaw|cold), start;dur=\d+\.\d{3}, run;dur=\d+\.\d{3}$`)

func TestServerTimingHeader(t *testing.T) {
	n := newTestNode(t)
	deployGuest(t, n, "hello", "hello-c")
	deployGuest(t, n, "cgi", "cgi")
	for _, c := range []struct {
		name, target, boot string
	}{
		{"http-wasm", "http://hello.localhost/", "warm"},
		{"cgi", "http://cgi.localhost/", "cold"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for i := range 3 {
				w := get(n, c.target)
				st := w.Header().Get("Server-Timing")
				if w.Code != 200 || !serverTimingRE.MatchString(st) {
					t.Fatalf("request %d: %d Server-Timing %q", i, w.Code, st)
				}
				if i > 0 && !strings.HasPrefix(st, "boot;desc="+c.boot+",") {
					t.Errorf("request %d: Server-Timing %q; want boot %s", i, st, c.boot)
				}
			}
		})
	}
}

func TestServerTimingFormat(t *testing.T) {
	cases := []struct {
		name string
		t    runtime.Timing
		want string
	}{
		{"zero", runtime.Timing{}, "boot;desc=warm, start;dur=0.000, run;dur=0.000"},
		{"thaw", runtime.Timing{Boot: runtime.BootThaw, Start: 1500 * time.Microsecond, Run: 2 * time.Millisecond}, "boot;desc=thaw, start;dur=1.500, run;dur=2.000"},
		{"cold, long", runtime.Timing{Boot: runtime.BootCold, Start: 1234567 * time.Microsecond, Run: 10 * time.Second}, "boot;desc=cold, start;dur=1234.567, run;dur=10000.000"},
		{"wake", runtime.Timing{Boot: runtime.BootThaw, Wake: 2 * time.Millisecond, Start: 2 * time.Millisecond}, "boot;desc=thaw, wake;dur=2.000, start;dur=2.000, run;dur=0.000"},
		{"wake ahead", runtime.Timing{Boot: runtime.BootThaw, Wake: 2 * time.Millisecond, WakeAhead: true}, "boot;desc=thaw, wake;dur=2.000;desc=ahead, start;dur=0.000, run;dur=0.000"},
		{"wake with a fetch", runtime.Timing{Boot: runtime.BootThaw, Wake: 5 * time.Millisecond, Fetch: 3 * time.Millisecond}, "boot;desc=thaw, wake;dur=5.000, fetch;dur=3.000, start;dur=0.000, run;dur=0.000"},
		{"sub-microsecond truncates", runtime.Timing{Start: 999 * time.Nanosecond, Run: 1001 * time.Nanosecond}, "boot;desc=warm, start;dur=0.000, run;dur=0.001"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := serverTiming(c.t); got != c.want {
				t.Errorf("serverTiming(%+v) = %q; want %q", c.t, got, c.want)
			}
		})
	}
}

func TestMetricsAfterRequests(t *testing.T) {
	n := newTestNode(t)
	deployLimits(t, n, "hello", "hello-c", api.Limits{MaxBodyBytes: 4})
	for range 3 {
		get(n, "http://hello.localhost/")
	}
	get(n, "http://nope.localhost/")
	w := httptest.NewRecorder()
	n.ServeHTTP(w, httptest.NewRequest("POST", "http://hello.localhost/", strings.NewReader("too long")))
	if w.Code != 413 {
		t.Fatalf("big body: %d", w.Code)
	}
	if _, err := n.Deploy(context.Background(), "hello", api.DeployRequest{Module: "bad"}); err == nil {
		t.Fatal("bad deploy succeeded")
	}

	m := n.Metrics()
	wantMetric(t, m, "frost_requests_total", map[string]string{"app": "hello", "code": "200"}, 3)
	wantMetric(t, m, "frost_requests_total", map[string]string{"app": "hello", "code": "413"}, 1)
	wantMetric(t, m, "frost_requests_total", map[string]string{"app": "", "code": "404"}, 1)
	wantMetric(t, m, "frost_errors_total", map[string]string{"app": "", "reason": "no_app"}, 1)
	wantMetric(t, m, "frost_errors_total", map[string]string{"app": "hello", "reason": "body_limit"}, 1)
	wantMetric(t, m, "frost_limit_kills_total", map[string]string{"app": "hello", "limit": "body"}, 1)
	wantMetric(t, m, "frost_request_duration_seconds", map[string]string{"app": "hello"}, 3)
	wantMetric(t, m, "frost_inflight_requests", map[string]string{"app": "hello"}, 0)
	wantMetric(t, m, "frost_deploys_total", map[string]string{"result": "ok"}, 1)
	wantMetric(t, m, "frost_deploys_total", map[string]string{"result": "invalid"}, 1)
	var boots float64
	for _, b := range []string{"warm", "thaw", "cold"} {
		v, _ := metric(t, m, "frost_boots_total", map[string]string{"app": "hello", "mode": "request", "boot": b})
		boots += v
	}
	if boots != 3 {
		t.Errorf("frost_boots_total for hello sums to %v; want 3", boots)
	}
	if _, ok := metric(t, m, "frost_limit_kills_total", map[string]string{"app": "hello", "limit": "cpu"}); ok {
		t.Errorf("a cpu limit kill series exists with no cpu kill")
	}
}

func TestLogsFromNode(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	deployGuest(t, n, "cgi", "cgi")
	r := httptest.NewRequest("GET", "/x", nil) // origin-form, as a client sends it
	r.Host = "cgi.localhost"
	n.ServeHTTP(httptest.NewRecorder(), r)
	var lines []api.LogLine
	if err := n.Logs(ctx, "cgi", -1, false, func(l api.LogLine) error { lines = append(lines, l); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 {
		t.Fatalf("log lines %+v; want the deploy and the guest's stderr line", lines)
	}
	if l := lines[0]; l.Stream != "frost" || !strings.HasPrefix(l.Message, "deployed release v1 ") {
		t.Errorf("first line %+v; want the deploy", l)
	}
	if l := lines[1]; l.Stream != "stderr" || l.Message != "cgi guest served /x" || l.App != "cgi" || l.Release == "" {
		t.Errorf("second line %+v; want the guest's stderr", l)
	}
	if err := n.Logs(ctx, "nope", 10, false, func(api.LogLine) error { return nil }); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Logs of a missing app = %v; want ErrNotFound", err)
	}
	stop := errors.New("stop")
	if err := n.Logs(ctx, "cgi", -1, false, func(api.LogLine) error { return stop }); err != stop {
		t.Errorf("Logs with a failing fn = %v; want its error", err)
	}
}

// fakeClock ticks one second per reading.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func msgs(lines []api.LogLine) string {
	s := make([]string, len(lines))
	for i, l := range lines {
		s[i] = l.Message
	}
	return strings.Join(s, ",")
}

func addN(h *logHub, app string, from, to int) {
	for i := from; i < to; i++ {
		h.add(api.LogLine{App: app, Message: fmt.Sprint(i)})
	}
}

func TestLogHubTail(t *testing.T) {
	cases := []struct {
		name  string
		size  int
		added int
		n     int
		want  string
	}{
		{name: "empty", size: 4, added: 0, n: 10, want: ""},
		{name: "all, not full", size: 4, added: 3, n: -1, want: "0,1,2"},
		{name: "last two", size: 4, added: 3, n: 2, want: "1,2"},
		{name: "zero", size: 4, added: 3, n: 0, want: ""},
		{name: "exactly full", size: 4, added: 4, n: -1, want: "0,1,2,3"},
		{name: "wrapped once", size: 4, added: 5, n: -1, want: "1,2,3,4"},
		{name: "wrapped many times", size: 4, added: 10, n: 100, want: "6,7,8,9"},
		{name: "wrapped, last three", size: 4, added: 10, n: 3, want: "7,8,9"},
		{name: "wrapped to the start", size: 4, added: 8, n: -1, want: "4,5,6,7"},
		{name: "size one", size: 1, added: 5, n: -1, want: "4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newLogHub(c.size, (&fakeClock{}).now)
			addN(h, "a", 0, c.added)
			addN(h, "b", 100, 100+c.added) // another app's lines stay apart
			if got := msgs(h.tail("a", c.n)); got != c.want {
				t.Errorf("tail(%d) = %q; want %q", c.n, got, c.want)
			}
		})
	}
	t.Run("unknown app", func(t *testing.T) {
		if got := newLogHub(4, time.Now).tail("nope", 10); got != nil {
			t.Errorf("tail of an unknown app = %v", got)
		}
	})
	t.Run("time", func(t *testing.T) {
		clock := &fakeClock{}
		h := newLogHub(4, clock.now)
		set := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		h.add(api.LogLine{App: "a", Message: "stamped"})
		h.add(api.LogLine{App: "a", Message: "given", Time: set})
		got := h.tail("a", -1)
		if !got[0].Time.Equal(clock.t) || !got[1].Time.Equal(set) {
			t.Errorf("times %v, %v; want the clock's %v and the given %v", got[0].Time, got[1].Time, clock.t, set)
		}
	})
	t.Run("drop", func(t *testing.T) {
		h := newLogHub(4, time.Now)
		addN(h, "a", 0, 3)
		h.drop("a")
		h.drop("never")
		if got := h.tail("a", -1); len(got) != 0 {
			t.Errorf("after drop: %q", msgs(got))
		}
	})
}

func TestLogHubFollow(t *testing.T) {
	h := newLogHub(8, time.Now)
	addN(h, "a", 0, 5)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 100)
	done := make(chan error)
	go func() {
		done <- h.follow(ctx, "a", 2, func(l api.LogLine) error {
			got <- l.Message
			return nil
		})
	}()
	next := func() string {
		select {
		case m := <-got:
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("follow delivered nothing")
			return ""
		}
	}
	if a, b := next(), next(); a != "3" || b != "4" {
		t.Fatalf("follow tail: %s, %s; want 3, 4", a, b)
	}
	// New lines arrive in order; other apps' lines do not.
	waitSubscribed(t, h, "a", 1)
	addN(h, "b", 100, 103)
	addN(h, "a", 5, 8)
	for want := 5; want < 8; want++ {
		if m := next(); m != fmt.Sprint(want) {
			t.Fatalf("followed line %s; want %d", m, want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("follow ended with %v; want nil on cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not stop on cancel")
	}
	waitSubscribed(t, h, "a", 0)

	t.Run("fn error stops it", func(t *testing.T) {
		stop := errors.New("stop")
		calls := 0
		err := h.follow(context.Background(), "a", 3, func(api.LogLine) error {
			calls++
			return stop
		})
		if err != stop || calls != 1 {
			t.Errorf("follow = %v after %d calls; want the fn's error after 1", err, calls)
		}
		waitSubscribed(t, h, "a", 0)
	})
}

func waitSubscribed(t *testing.T, h *logHub, app string, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		got := len(h.ring(app).subs)
		h.mu.Unlock()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d followers of %s; want %d", got, app, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLogHubSlowFollower checks that a follower that never reads does not
// slow down add (guest output must never block a request): it loses the
// lines its buffer cannot hold, and gets new ones once it catches up.
func TestLogHubSlowFollower(t *testing.T) {
	h := newLogHub(16, time.Now)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	stuck := make(chan struct{})
	seen := make(chan string, 1<<16)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		h.follow(ctx, "a", 0, func(l api.LogLine) error {
			seen <- l.Message
			if l.Message == "first" {
				close(stuck)
				<-release // stuck until the test lets go
			}
			return nil
		})
	}()
	waitSubscribed(t, h, "a", 1)
	h.add(api.LogLine{App: "a", Message: "first"})
	<-stuck

	const lines = 10000
	added := make(chan struct{})
	go func() {
		addN(h, "a", 0, lines)
		close(added)
	}()
	select {
	case <-added:
	case <-time.After(10 * time.Second):
		t.Fatal("add blocked on a slow follower")
	}
	if got := msgs(h.tail("a", 2)); got != fmt.Sprintf("%d,%d", lines-2, lines-1) {
		t.Errorf("tail after a burst = %q", got)
	}
	close(release)
	// It catches up with what its buffer held (lines 0 to 255: the rest
	// were dropped), then gets new lines.
	var got []string
	deadline := time.After(10 * time.Second)
	for len(got) < 1+256 {
		select {
		case m := <-seen:
			got = append(got, m)
		case <-deadline:
			t.Fatalf("the slow follower caught up with only %d lines", len(got))
		}
	}
	h.add(api.LogLine{App: "a", Message: "late"})
	select {
	case m := <-seen:
		got = append(got, m)
	case <-deadline:
		t.Fatal("the follower did not get a line after catching up")
	}
	cancel()
	<-followed
	if got[0] != "first" || got[1] != "0" || got[256] != "255" || got[257] != "late" {
		t.Errorf("the slow follower saw %s, %s … %s, %s; want first, 0 … 255, late", got[0], got[1], got[256], got[257])
	}
}

// gatedBlobs is a blob store whose Opens of one digest wait for gate (or
// their context's end) and are counted.
type gatedBlobs struct {
	blob.Store
	digest string
	gate   chan struct{}
	opened chan struct{}
	opens  atomic.Int32
}

func (g *gatedBlobs) Open(ctx context.Context, digest string) (io.ReadCloser, blob.Info, error) {
	if digest == g.digest {
		g.opens.Add(1)
		g.opened <- struct{}{}
		select {
		case <-g.gate:
		case <-ctx.Done():
			return nil, blob.Info{}, ctx.Err()
		}
	}
	return g.Store.Open(ctx, digest)
}

// TestLoadOutlivesItsRequest: the request that starts an app's load
// (reading its module, here from a slow store) and whose client leaves
// meanwhile does not take the load with it: the request waiting behind it
// is served by the same load, the module read once.
func TestLoadOutlivesItsRequest(t *testing.T) {
	ctx := context.Background()
	n := newTestNode(t)
	deployGuest(t, n, "hello", "hello-c")
	g := &gatedBlobs{Store: n.blobs, digest: n.lookup("hello").release.Load().Module, gate: make(chan struct{}), opened: make(chan struct{}, 4)}
	// A node started over the same stores loads the app on its first
	// request.
	n2, err := New(ctx, n.cfg, n.reg, g, n.rt)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close(ctx)
	leaving, leave := context.WithCancel(ctx)
	first := make(chan *httptest.ResponseRecorder)
	go func() {
		w := httptest.NewRecorder()
		n2.ServeHTTP(w, httptest.NewRequest("GET", "http://hello.localhost/", nil).WithContext(leaving))
		first <- w
	}()
	<-g.opened // the load reads the module
	leave()
	second := make(chan *httptest.ResponseRecorder)
	go func() { second <- get(n2, "http://hello.localhost/") }()
	time.Sleep(50 * time.Millisecond) // the second request waits behind the load
	close(g.gate)
	if w := <-second; w.Code != 200 {
		t.Errorf("the request behind the load: %d %q", w.Code, w.Body)
	}
	if w := <-first; w.Code != statusClientClosed {
		t.Errorf("the request whose client left: %d %q, want %d", w.Code, w.Body, statusClientClosed)
	}
	if got := g.opens.Load(); got != 1 {
		t.Errorf("the module was read %d times, want once", got)
	}
}

// TestStalledBodyIsCut: a chunked upload (served by net/http) whose
// client stops sending is answered 408 body_timeout after BodyTimeout,
// and the app's only concurrency slot is free again.
func TestStalledBodyIsCut(t *testing.T) {
	n := newTestNodeWith(t, func(c *Config) { c.BodyTimeout = time.Second })
	deployLimits(t, n, "one", "hello-c", api.Limits{Concurrency: 1})
	srv := httptest.NewServer(n)
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, body := testtool.Exchange(t, conn, bufio.NewReader(conn), "POST",
		"POST / HTTP/1.1\r\nHost: one.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get("X-Frost-Error") != "body_timeout" {
		t.Fatalf("stalled upload: %d %s %q", resp.StatusCode, resp.Header.Get("X-Frost-Error"), body)
	}
	if w := get(n, "http://one.localhost/"); w.Code != 200 {
		t.Fatalf("after the stalled upload: %d %q", w.Code, w.Body)
	}
	// A slow upload that keeps coming is not cut.
	pr, pw := io.Pipe()
	go func() {
		for range 4 {
			time.Sleep(100 * time.Millisecond)
			pw.Write([]byte("x"))
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", srv.URL+"/", pr)
	req.Host = "one.localhost"
	slow, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	slow.Body.Close()
	if slow.StatusCode != 200 {
		t.Errorf("a slow but steady upload: %d", slow.StatusCode)
	}
	wantMetric(t, n.Metrics(), "frost_errors_total", map[string]string{"app": "one", "reason": "body_timeout"}, 1)
}
