package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testtool"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testNow is the clock of every test: relative times in the output are
// measured from it.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// harness runs CLI verbs with their own environment, data directory and
// clock, against a fake server.
type harness struct {
	t       *testing.T
	env     map[string]string
	dataDir string
}

// newHarness returns a harness pointed at f with FROST_API and FROST_TOKEN
// set; f may be nil.
func newHarness(t *testing.T, f *fakeServer) *harness {
	h := &harness{t: t, env: map[string]string{}, dataDir: t.TempDir()}
	if f != nil {
		h.env["FROST_API"] = f.URL
		h.env["FROST_TOKEN"] = fakeToken
	}
	return h
}

func (h *harness) run(args ...string) (code int, stdout, stderr string) {
	return h.runCtx(context.Background(), args...)
}

func (h *harness) runCtx(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	h.t.Helper()
	var out, errOut bytes.Buffer
	r := h.runner()
	r.stdout, r.stderr = &out, &errOut
	code = r.run(ctx, args)
	return code, out.String(), errOut.String()
}

func (h *harness) runner() *runner {
	return &runner{
		stdout:  io.Discard,
		stderr:  io.Discard,
		getenv:  func(k string) string { return h.env[k] },
		dataDir: func() string { return h.dataDir },
		now:     func() time.Time { return testNow },
		loc:     time.UTC,
	}
}

// must runs a verb that must succeed and returns its stdout.
func (h *harness) must(args ...string) string {
	h.t.Helper()
	code, out, errOut := h.run(args...)
	if code != 0 {
		h.t.Fatalf("frost %s: exit %d\nstderr: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// module writes a Wasm module (or anything) to a file and returns its path.
func module(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app.wasm")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const wasmHeader = "\x00asm\x01\x00\x00\x00"

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func contains(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, s)
		}
	}
}

func TestDeployUploadsThenDeploys(t *testing.T) {
	f := newFakeServer(t, testNow)
	h := newHarness(t, f)
	file := module(t, wasmHeader+"handle_request")

	out := h.must("deploy", "hello", file)
	contains(t, "stdout", out,
		"Deployed hello v1 (release rel-", "http-wasm", "request", "URL",
		"curl http://hello.localhost:8080/")
	if f.puts != 1 || len(f.deploys) != 1 {
		t.Fatalf("first deploy: %d uploads, %d deploys; want 1, 1", f.puts, len(f.deploys))
	}

	out = h.must("deploy", "hello", file)
	contains(t, "stdout", out, "Deployed hello v2")
	if f.puts != 1 || len(f.deploys) != 2 {
		t.Errorf("second deploy of the same file: %d uploads, %d deploys; want 1 (skipped), 2", f.puts, len(f.deploys))
	}
}

func TestDeployFlagsAfterPositionals(t *testing.T) {
	f := newFakeServer(t, testNow)
	h := newHarness(t, f)
	file := module(t, wasmHeader)

	h.must("deploy", "hello", file, "--mode", "session", "--env", "A=1", "--env=B=x=y",
		"--memory", "64MiB", "--timeout", "5s", "--concurrency", "3", "--max-body", "1M", "--fs=16MiB")
	got := f.deploys[0]
	got.Module = ""
	want := api.DeployRequest{
		Mode: "session",
		Env:  map[string]string{"A": "1", "B": "x=y"},
		Limits: api.Limits{
			MemoryBytes: 64 << 20, Timeout: api.Duration(5 * time.Second), Concurrency: 3,
			MaxBodyBytes: 1 << 20, FSBytes: 16 << 20,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("deploy request = %+v\nwant %+v", got, want)
	}

	// Flags first work too.
	h.must("deploy", "--mode=request", "hello", file)
	if m := f.deploys[1].Mode; m != "request" {
		t.Errorf("mode = %q, want request", m)
	}
}

func TestDeployInvalidModuleKeepsPreviousRelease(t *testing.T) {
	f := newFakeServer(t, testNow)
	h := newHarness(t, f)
	h.must("deploy", "hello", module(t, wasmHeader))

	code, _, errOut := h.run("deploy", "hello", module(t, "#!/bin/sh\necho hi\n"))
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	contains(t, "stderr", errOut,
		"not a WebAssembly module: the first 4 bytes are not \\0asm",
		"Nothing was changed: the previous release of hello, if any, keeps serving.")
	if v := f.apps["hello"].detail.Version; v != 1 {
		t.Errorf("app version = %d after a refused deploy, want 1", v)
	}
}

func TestDeployMissingFile(t *testing.T) {
	h := newHarness(t, newFakeServer(t, testNow))
	code, _, errOut := h.run("deploy", "hello", "nope.wasm")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	contains(t, "stderr", errOut, "nope.wasm", "give the path of a .wasm file")
}

func TestEnv(t *testing.T) {
	f := newFakeServer(t, testNow)
	h := newHarness(t, f)
	h.must("deploy", "web", module(t, wasmHeader), "--env", "KEEP=1")

	out := h.must("env", "set", "web", "B=2", "A=x=y")
	contains(t, "stdout", out, "web: set A, B (env version 1)")
	if got := f.apps["web"].env; !reflect.DeepEqual(got, map[string]string{"KEEP": "1", "A": "x=y", "B": "2"}) {
		t.Errorf("env after set = %v", got)
	}

	out = h.must("env", "unset", "web", "KEEP", "B")
	contains(t, "stdout", out, "web: unset KEEP, B (env version 2)")

	if out := h.must("env", "ls", "web"); out != "A\n" {
		t.Errorf("env ls = %q, want only the key A", out)
	}
	if out := h.must("env", "ls", "web", "--json"); strings.Join(strings.Fields(out), "") != `["A"]` {
		t.Errorf("env ls --json = %q", out)
	}
	if code, _, errOut := h.run("env", "set", "web", "NOEQUALS"); code != 2 || !strings.Contains(errOut, "want KEY=VALUE") {
		t.Errorf("env set without '=': exit %d, stderr %q; want 2 and a KEY=VALUE hint", code, errOut)
	}
}

// seedApps stores apps of several ages and states for the listing tests.
func seedApps(f *fakeServer) {
	f.seed(api.AppDetail{App: api.App{
		Name: "hello", URL: "http://hello.localhost:8080/", Release: "rel-3", Version: 3,
		Mode: "request", Shape: "http-wasm", CreatedAt: testNow.Add(-72 * time.Hour), UpdatedAt: testNow.Add(-3 * time.Minute),
	}}, nil)
	f.seed(api.AppDetail{App: api.App{
		Name: "chat-bot", URL: "http://chat-bot.localhost:8080/", Release: "rel-12", Version: 12,
		Mode: "session", Shape: "wagi", CreatedAt: testNow.Add(-900 * time.Hour), UpdatedAt: testNow.Add(-5 * time.Hour),
	}}, nil)
	f.seed(api.AppDetail{App: api.App{
		Name: "old", URL: "http://old.localhost:8080/", Release: "rel-1", Version: 1,
		Mode: "request", Shape: "wagi", CreatedAt: testNow.Add(-2000 * time.Hour), UpdatedAt: testNow.Add(-2000 * time.Hour),
	}}, nil)
}

func TestAppsTable(t *testing.T) {
	f := newFakeServer(t, testNow)
	seedApps(f)
	golden(t, "apps.golden", newHarness(t, f).must("apps"))
}

func TestAppsEmpty(t *testing.T) {
	out := newHarness(t, newFakeServer(t, testNow)).must("apps")
	contains(t, "stdout", out, "No apps yet", "frost deploy NAME FILE.wasm")
}

func TestAppsJSON(t *testing.T) {
	f := newFakeServer(t, testNow)
	seedApps(f)
	out := newHarness(t, f).must("apps", "--json")
	var apps []api.App
	if err := json.Unmarshal([]byte(out), &apps); err != nil {
		t.Fatalf("apps --json is not a JSON array of apps: %v\n%s", err, out)
	}
	if len(apps) != 3 || apps[0].Name == "" {
		t.Errorf("apps --json = %+v", apps)
	}
	if out := newHarness(t, newFakeServer(t, testNow)).must("apps", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("apps --json with no apps = %q, want []", out)
	}
}

func TestAppDetail(t *testing.T) {
	f := newFakeServer(t, testNow)
	lim := api.Limits{MemoryBytes: 128 << 20, Timeout: api.Duration(30 * time.Second), Concurrency: 8, MaxBodyBytes: 1 << 20}
	f.seed(api.AppDetail{
		App: api.App{
			Name: "hello", URL: "http://hello.localhost:8080/", Release: "rel-b", Version: 2,
			Mode: "session", Shape: "http-wasm", EnvVersion: 4,
			CreatedAt: testNow.Add(-50 * time.Hour), UpdatedAt: testNow.Add(-90 * time.Second),
		},
		Limits: lim,
		State:  "frozen",
		Idle:   api.Duration(5 * time.Minute),
		Snapshot: &api.Snapshot{Release: "rel-b", Size: 70 << 10,
			Created: testNow.Add(-80 * time.Second), LastUsed: testNow.Add(-20 * time.Second)},
		Releases: []api.Release{
			{ID: "rel-b", App: "hello", Version: 2, Runtime: "wasm", Module: strings.Repeat("ab", 32), ModuleSize: 3 << 20,
				Shape: "http-wasm", Mode: "session", Limits: lim, CreatedAt: testNow.Add(-90 * time.Second)},
			{ID: "rel-a", App: "hello", Version: 1, Runtime: "wasm", Module: strings.Repeat("cd", 32), ModuleSize: 123456,
				Shape: "wagi", Mode: "request", CreatedAt: testNow.Add(-50 * time.Hour)},
		},
		Counters: api.Counters{
			Requests: 1234, Errors: 5, InFlight: 2, Instances: 3,
			Boots:      map[string]uint64{"warm": 1200, "thaw": 30, "cold": 4},
			LimitKills: map[string]uint64{"memory": 1, "timeout": 2},
			Freezes:    3,
			Fallbacks:  map[string]uint64{"missing": 1, "corrupt": 1},
		},
	}, map[string]string{"API_KEY": "secret", "DEBUG": "1"})
	h := newHarness(t, f)

	out := h.must("app", "hello")
	if strings.Contains(out, "secret") {
		t.Error("app printed an env value")
	}
	golden(t, "app.golden", out)

	var d api.AppDetail
	if err := json.Unmarshal([]byte(h.must("app", "--json", "hello")), &d); err != nil || d.Counters.Requests != 1234 {
		t.Errorf("app --json = %+v, %v", d, err)
	}
}

func TestRm(t *testing.T) {
	f := newFakeServer(t, testNow)
	seedApps(f)
	h := newHarness(t, f)
	contains(t, "stdout", h.must("rm", "hello"), "Deleted hello.")
	if _, ok := f.apps["hello"]; ok {
		t.Error("hello is still there")
	}
	code, _, errOut := h.run("rm", "hello")
	if code != 1 {
		t.Fatalf("rm of a missing app: exit %d, want 1", code)
	}
	contains(t, "stderr", errOut, `no app named "hello"; list apps with `+"`frost apps`")
}

func TestLogs(t *testing.T) {
	f := newFakeServer(t, testNow)
	seedApps(f)
	for i, msg := range []string{"starting", "listening\n", "oops"} {
		stream := "stdout"
		if i == 2 {
			stream = "stderr"
		}
		f.logs = append(f.logs, api.LogLine{Time: testNow.Add(time.Duration(i) * time.Millisecond), App: "hello", Stream: stream, Message: msg})
	}
	h := newHarness(t, f)

	out := h.must("logs", "hello", "--tail", "2")
	want := "2025-06-01T12:00:00.001Z stdout listening\n2025-06-01T12:00:00.002Z stderr oops\n"
	if out != want {
		t.Errorf("logs --tail 2 =\n%s\nwant\n%s", out, want)
	}
	if q := f.logQueries[0]; q != "tail=2" {
		t.Errorf("query = %q, want tail=2", q)
	}

	// -f: the backlog, then a live line; Ctrl-C (cancel) ends it with exit 0.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.live <- api.LogLine{Time: testNow.Add(time.Second), App: "hello", Stream: "frost", Message: "thawed"}
	var live testtool.SyncBuffer
	r := h.runner()
	r.stdout = &live
	done := make(chan int)
	go func() { done <- r.run(ctx, []string{"logs", "-f", "hello", "--tail=1"}) }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(live.String(), "thawed"); {
		if time.Now().After(deadline) {
			t.Fatalf("logs -f did not print the live line; stdout so far:\n%s", live.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("logs -f ended by Ctrl-C: exit %d, want 0", code)
	}
	contains(t, "stdout", live.String(), "oops", "12:00:01.000Z frost  thawed")
	if q := f.logQueries[1]; q != "follow=true&tail=1" {
		t.Errorf("query = %q, want follow=true&tail=1", q)
	}

	code, _, errOut := h.run("logs", "ghost")
	if code != 1 || !strings.Contains(errOut, `no app named "ghost"`) {
		t.Errorf("logs of a missing app: exit %d, stderr %q", code, errOut)
	}
}

func TestErrorMessages(t *testing.T) {
	f := newFakeServer(t, testNow)
	seedApps(f)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()

	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		wants []string
	}{
		{"unauthorized", map[string]string{"FROST_API": f.URL, "FROST_TOKEN": "wrong"}, []string{"apps"},
			[]string{"refused the token from $FROST_TOKEN", "set FROST_TOKEN or --token", "admin.token"}},
		{"unauthorized flag", map[string]string{"FROST_API": f.URL}, []string{"apps", "--token", "wrong"},
			[]string{"refused the token from --token"}},
		{"unknown app", nil, []string{"app", "ghost"},
			[]string{`no app named "ghost"; list apps with ` + "`frost apps`"}},
		{"unreachable", map[string]string{"FROST_API": dead, "FROST_TOKEN": fakeToken}, []string{"apps"},
			[]string{"isn't reachable at " + dead, "connection refused", "start it with `frost server`", "FROST_API"}},
		{"no token", map[string]string{"FROST_API": f.URL}, []string{"apps"},
			[]string{"no admin token", "admin.token", "FROST_TOKEN", "--data"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, f)
			if tt.env != nil {
				h.env = tt.env
			}
			code, out, errOut := h.run(tt.args...)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stdout %q", code, out)
			}
			contains(t, "stderr", errOut, tt.wants...)
		})
	}
}

func TestNotAFrostServer(t *testing.T) {
	h := newHarness(t, newFakeServer(t, testNow))
	code, _, errOut := h.run("apps", "--api", h.env["FROST_API"]+"/somewhere/else")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	contains(t, "stderr", errOut, "answered HTTP 404", "is FROST_API (or --api) the address of a frost server")
}

func TestTokenDiscovery(t *testing.T) {
	f := newFakeServer(t, testNow)
	writeToken := func(dir, tok string) {
		if err := os.WriteFile(filepath.Join(dir, AdminTokenFile), []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name      string
		flagToken string // --token
		envToken  string // FROST_TOKEN
		dirToken  string // in the default data dir
		dataToken string // in a dir given with --data
		want      string // the token the server sees
	}{
		{name: "flag beats all", flagToken: "flag", envToken: "env", dirToken: "dir", want: "flag"},
		{name: "env beats files", envToken: "env", dirToken: "dir", dataToken: "data", want: "env"},
		{name: "default data dir", dirToken: "dir", want: "dir"},
		{name: "--data dir", dirToken: "dir", dataToken: "data", want: "data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, f)
			h.env = map[string]string{"FROST_API": f.URL, "FROST_TOKEN": tt.envToken}
			if tt.dirToken != "" {
				writeToken(h.dataDir, tt.dirToken)
			}
			args := []string{"apps"}
			if tt.flagToken != "" {
				args = append(args, "--token", tt.flagToken)
			}
			if tt.dataToken != "" {
				dir := t.TempDir()
				writeToken(dir, tt.dataToken)
				args = append(args, "--data", dir)
			}
			h.run(args...) // refused unless the token is fakeToken; we only look at what was sent
			if got := f.lastAuth; got != "Bearer "+tt.want {
				t.Errorf("Authorization = %q, want Bearer %s", got, tt.want)
			}
		})
	}

	// The real token from the data dir is accepted.
	h := newHarness(t, f)
	h.env = map[string]string{"FROST_API": f.URL}
	writeToken(h.dataDir, fakeToken)
	h.must("apps")
}

func TestAPIAddress(t *testing.T) {
	f := newFakeServer(t, testNow)
	seedApps(f)

	// FROST_API points at the server.
	h := newHarness(t, f)
	contains(t, "stdout", h.must("apps"), "hello")

	// --api beats FROST_API.
	h.env["FROST_API"] = "http://127.0.0.1:1"
	contains(t, "stdout", h.must("apps", "--api", f.URL), "hello")

	// Without either, the default address is used.
	delete(h.env, "FROST_API")
	c := h.runner().newCommand("apps", "", "")
	if _, err := c.client(); err != nil {
		t.Fatal(err)
	}
	if c.base != DefaultAPI || DefaultAPI != "http://127.0.0.1:7070" {
		t.Errorf("base = %q, want %q", c.base, "http://127.0.0.1:7070")
	}
}

func TestUsage(t *testing.T) {
	f := newFakeServer(t, testNow)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // a part of it
		stderr string // a part of it
	}{
		{"no verb", nil, 2, "", "Usage:"},
		{"unknown verb", []string{"deploi"}, 2, "", `unknown verb "deploi"`},
		{"help", []string{"help"}, 0, "Verbs:", ""},
		{"--help", []string{"--help"}, 0, "Verbs:", ""},
		{"help deploy", []string{"help", "deploy"}, 0, "Usage: frost deploy NAME FILE.wasm", ""},
		{"deploy -h", []string{"deploy", "-h"}, 0, "--memory SIZE", ""},
		{"deploy --help", []string{"deploy", "hello", "--help"}, 0, "--mode MODE", ""},
		{"deploy missing file", []string{"deploy", "hello"}, 2, "", "missing arguments"},
		{"deploy too many", []string{"deploy", "hello", "a.wasm", "b.wasm"}, 2, "", "too many arguments: b.wasm"},
		{"deploy bad name", []string{"deploy", "Hello", "a.wasm"}, 2, "", `upper-case 'H'`},
		{"deploy bad mode", []string{"deploy", "hello", "a.wasm", "--mode", "batch"}, 2, "", `--mode "batch": want request or session`},
		{"deploy bad size", []string{"deploy", "hello", "a.wasm", "--memory", "64XB"}, 2, "", `unknown unit "XB"`},
		{"deploy bad env", []string{"deploy", "hello", "a.wasm", "--env", "=x"}, 2, "", "empty environment variable name"},
		{"unknown flag", []string{"apps", "--jsn"}, 2, "", "flag provided but not defined: -jsn"},
		{"flag without value", []string{"logs", "hello", "--tail"}, 2, "", "flag needs an argument"},
		{"app without name", []string{"app"}, 2, "", "Usage: frost app NAME"},
		{"rm two names", []string{"rm", "a", "b"}, 2, "", "too many arguments"},
		{"env no sub", []string{"env"}, 2, "", "missing sub-command"},
		{"env bad sub", []string{"env", "get", "x"}, 2, "", `unknown sub-command "get"`},
		{"env set no pairs", []string{"env", "set", "web"}, 2, "", "missing arguments"},
		{"logs negative tail", []string{"logs", "web", "--tail", "-3"}, 2, "", "--tail -3 is negative"},
		{"version", []string{"version"}, 0, "server  frost v0.test at http://127.0.0.1:", ""},
		{"--version", []string{"--version"}, 0, "client  frost ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := newHarness(t, f).run(tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if !strings.Contains(out, tt.stdout) || !strings.Contains(errOut, tt.stderr) {
				t.Errorf("stdout %q\nstderr %q\nwant stdout containing %q, stderr containing %q", out, errOut, tt.stdout, tt.stderr)
			}
		})
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args    []string
		pos     []string
		mode    string
		verbose bool
	}{
		{[]string{"a", "b"}, []string{"a", "b"}, "", false},
		{[]string{"a", "--mode", "x", "b"}, []string{"a", "b"}, "x", false},
		{[]string{"--mode=x", "a", "-v", "b"}, []string{"a", "b"}, "x", true},
		{[]string{"a", "-v", "--", "--mode", "-"}, []string{"a", "--mode", "-"}, "", true},
		{[]string{"-", "a"}, []string{"-", "a"}, "", false},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		mode := fs.String("mode", "", "")
		verbose := fs.Bool("v", false, "")
		pos, err := parseInterspersed(fs, tt.args)
		if err != nil || !reflect.DeepEqual(pos, tt.pos) || *mode != tt.mode || *verbose != tt.verbose {
			t.Errorf("parseInterspersed(%q) = %q, mode %q, v %v, %v; want %q, %q, %v",
				tt.args, pos, *mode, *verbose, err, tt.pos, tt.mode, tt.verbose)
		}
	}
}

func TestAgo(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                   "just now",
		-time.Minute:        "just now",
		42 * time.Second:    "42s ago",
		3 * time.Minute:     "3m ago",
		5 * time.Hour:       "5h ago",
		47 * time.Hour:      "47h ago",
		3 * 24 * time.Hour:  "3d ago",
		40 * 24 * time.Hour: "2025-04-22",
	} {
		if got := ago(testNow, testNow.Add(-d)); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
	if got := ago(testNow, time.Time{}); got != "-" {
		t.Errorf("ago(zero) = %q, want -", got)
	}
}
