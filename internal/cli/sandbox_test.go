package cli

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testtool"
)

// fakeSandboxServer fakes the control API's sandbox routes (docs/API.md)
// closely enough to test what the sandbox verbs send and print.
type fakeSandboxServer struct {
	URL string

	mu      sync.Mutex
	boxes   map[string]*api.Sandbox
	files   map[string]fakeFile // by "ID:PATH"
	creates []api.SandboxCreateRequest
	execs   []api.ExecRequest
	stdins  []string // the stdin of every exec
	// exec answers an exec after its request line; nil: exit 0 at once.
	exec  func(w http.ResponseWriter, req api.ExecRequest)
	watch chan api.FileEvent // events a watch sends after "ready"
	// metrics are every sandbox's samples; metricCalls counts the asks.
	metrics     []api.SandboxMetric
	metricCalls int
}

type fakeFile struct {
	data []byte
	mode string
}

func newFakeSandboxServer(t *testing.T) *fakeSandboxServer {
	f := &fakeSandboxServer{
		boxes: map[string]*api.Sandbox{},
		files: map[string]fakeFile{},
		watch: make(chan api.FileEvent, 16),
	}
	srv := httptest.NewServer(f.handler())
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *fakeSandboxServer) add(s api.Sandbox) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.boxes[s.ID] = &s
}

func (f *fakeSandboxServer) put(id, p, data, mode string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[id+":"+p] = fakeFile{[]byte(data), mode}
}

func (f *fakeSandboxServer) file(id, p string) (fakeFile, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ff, ok := f.files[id+":"+p]
	return ff, ok
}

func fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.Error{Code: code, Message: msg})
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// event writes one JSON line and flushes it.
func event(w http.ResponseWriter, v any) {
	json.NewEncoder(w).Encode(v)
	w.(http.Flusher).Flush()
}

func fileInfo(p string, ff fakeFile) api.FileInfo {
	return api.FileInfo{Path: p, Name: p[strings.LastIndex(p, "/")+1:], Type: "file", Size: int64(len(ff.data)),
		Mode: ff.mode, ModTime: testNow.Add(-time.Minute)}
}

func (f *fakeSandboxServer) handler() http.Handler {
	mux := http.NewServeMux()
	// box returns the sandbox of the request, or answers 404 and returns
	// nil. f.mu is held.
	box := func(w http.ResponseWriter, r *http.Request) *api.Sandbox {
		s := f.boxes[r.PathValue("id")]
		if s == nil {
			fail(w, 404, api.CodeNotFound, fmt.Sprintf("no such sandbox %q", r.PathValue("id")))
		}
		return s
	}
	noFile := func(w http.ResponseWriter, r *http.Request) {
		fail(w, 404, api.CodeNotFound, "no such file in the sandbox: "+r.URL.Query().Get("path"))
	}
	mux.HandleFunc("POST /v1/sandboxes", func(w http.ResponseWriter, r *http.Request) {
		var req api.SandboxCreateRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			fail(w, 400, api.CodeInvalidRequest, err.Error())
			return
		}
		f.creates = append(f.creates, req)
		id := fmt.Sprintf("sbx%d", len(f.creates))
		s := &api.Sandbox{ID: id, Template: req.Template, State: api.SandboxRunning, Timeout: req.Timeout,
			OnTimeout: req.OnTimeout, CreatedAt: testNow, ExpiresAt: testNow.Add(time.Duration(req.Timeout)),
			Limits: api.SandboxLimits{MemoryBytes: req.MemoryBytes, CPUs: req.CPUs, Pids: req.Pids}}
		f.boxes[id] = s
		reply(w, 201, s)
	})
	mux.HandleFunc("GET /v1/sandboxes", func(w http.ResponseWriter, r *http.Request) {
		list := []api.Sandbox{}
		for _, s := range f.boxes {
			list = append(list, *s)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID }) // the CLI sorts by age
		reply(w, 200, list)
	})
	mux.HandleFunc("GET /v1/sandboxes/{id}", func(w http.ResponseWriter, r *http.Request) {
		if s := box(w, r); s != nil {
			reply(w, 200, s)
		}
	})
	mux.HandleFunc("DELETE /v1/sandboxes/{id}", func(w http.ResponseWriter, r *http.Request) {
		if s := box(w, r); s != nil {
			delete(f.boxes, s.ID)
			w.WriteHeader(204)
		}
	})
	mux.HandleFunc("POST /v1/sandboxes/{id}/pause", func(w http.ResponseWriter, r *http.Request) {
		if s := box(w, r); s != nil {
			s.State = api.SandboxPaused
			s.Snapshot = &api.Snapshot{Size: 96 << 20, Created: testNow}
			reply(w, 200, s)
		}
	})
	mux.HandleFunc("POST /v1/sandboxes/{id}/resume", func(w http.ResponseWriter, r *http.Request) {
		if s := box(w, r); s != nil {
			s.State, s.Snapshot, s.ExpiresAt = api.SandboxRunning, nil, testNow.Add(time.Duration(s.Timeout))
			reply(w, 200, s)
		}
	})
	mux.HandleFunc("POST /v1/sandboxes/{id}/timeout", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Timeout api.Duration `json:"timeout"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			fail(w, 400, api.CodeInvalidRequest, err.Error())
			return
		}
		if s := box(w, r); s != nil {
			s.Timeout, s.ExpiresAt = req.Timeout, testNow.Add(time.Duration(req.Timeout))
			reply(w, 200, s)
		}
	})
	mux.HandleFunc("POST /v1/sandboxes/{id}/exec", func(w http.ResponseWriter, r *http.Request) {
		br := bufio.NewReader(r.Body)
		line, err := br.ReadBytes('\n')
		var req api.ExecRequest
		if err == nil {
			err = json.Unmarshal(line, &req)
		}
		if err != nil {
			fail(w, 400, api.CodeInvalidRequest, "ExecRequest: "+err.Error())
			return
		}
		if box(w, r) == nil {
			return
		}
		rest, _ := io.ReadAll(br)
		f.execs = append(f.execs, req)
		f.stdins = append(f.stdins, string(rest))
		w.Header().Set("Content-Type", "application/x-ndjson")
		if f.exec == nil {
			event(w, api.ExecEvent{Exit: new(0)})
			return
		}
		f.exec(w, req)
	})
	mux.HandleFunc("GET /v1/sandboxes/{id}/files", func(w http.ResponseWriter, r *http.Request) {
		if box(w, r) == nil {
			return
		}
		ff, ok := f.files[r.PathValue("id")+":"+r.URL.Query().Get("path")]
		if !ok {
			noFile(w, r)
			return
		}
		w.Write(ff.data)
	})
	mux.HandleFunc("PUT /v1/sandboxes/{id}/files", func(w http.ResponseWriter, r *http.Request) {
		if box(w, r) == nil {
			return
		}
		b, _ := io.ReadAll(r.Body)
		p, mode := r.URL.Query().Get("path"), r.URL.Query().Get("mode")
		if mode == "" {
			mode = "644"
		}
		ff := fakeFile{b, "0" + mode}
		f.files[r.PathValue("id")+":"+p] = ff
		reply(w, 200, fileInfo(p, ff))
	})
	// Trees: a tar's files go into the file map under the path, and come
	// out of it.
	mux.HandleFunc("PUT /v1/sandboxes/{id}/files/archive", func(w http.ResponseWriter, r *http.Request) {
		if box(w, r) == nil {
			return
		}
		var st api.ArchiveStats
		tr := tar.NewReader(r.Body)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			} else if err != nil {
				reply(w, 400, api.Error{Code: "invalid_request", Message: err.Error()})
				return
			}
			if h.Typeflag == tar.TypeDir {
				st.Dirs++
				continue
			}
			b, _ := io.ReadAll(tr)
			f.files[r.PathValue("id")+":"+path.Join(r.URL.Query().Get("path"), h.Name)] = fakeFile{b, fmt.Sprintf("%04o", h.Mode)}
			st.Files++
			st.Bytes += int64(len(b))
		}
		reply(w, 200, st)
	})
	mux.HandleFunc("GET /v1/sandboxes/{id}/files/archive", func(w http.ResponseWriter, r *http.Request) {
		if box(w, r) == nil {
			return
		}
		prefix := r.PathValue("id") + ":" + strings.TrimSuffix(r.URL.Query().Get("path"), "/") + "/"
		tw := tar.NewWriter(w)
		for _, k := range slices.Sorted(maps.Keys(f.files)) {
			if rel, ok := strings.CutPrefix(k, prefix); ok {
				mode, _ := strconv.ParseInt(f.files[k].mode, 8, 32)
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: mode, Size: int64(len(f.files[k].data))})
				tw.Write(f.files[k].data)
			}
		}
		tw.Close()
	})
	mux.HandleFunc("DELETE /v1/sandboxes/{id}/files", func(w http.ResponseWriter, r *http.Request) {
		if box(w, r) == nil {
			return
		}
		k := r.PathValue("id") + ":" + r.URL.Query().Get("path")
		if _, ok := f.files[k]; !ok {
			noFile(w, r)
			return
		}
		delete(f.files, k)
		w.WriteHeader(204)
	})
	mux.HandleFunc("GET /v1/sandboxes/{id}/files/stat", func(w http.ResponseWriter, r *http.Request) {
		if box(w, r) == nil {
			return
		}
		p := r.URL.Query().Get("path")
		if p == "/root" || p == "/root/dir" {
			reply(w, 200, api.FileInfo{Path: p, Type: "dir", Mode: "0755"})
			return
		}
		ff, ok := f.files[r.PathValue("id")+":"+p]
		if !ok {
			noFile(w, r)
			return
		}
		reply(w, 200, fileInfo(p, ff))
	})
	mux.HandleFunc("GET /v1/sandboxes/{id}/files/list", func(w http.ResponseWriter, r *http.Request) {
		if box(w, r) == nil {
			return
		}
		dir := strings.TrimSuffix(r.URL.Query().Get("path"), "/") + "/"
		list := []api.FileInfo{}
		for k, ff := range f.files {
			id, p, _ := strings.Cut(k, ":")
			if id == r.PathValue("id") && strings.HasPrefix(p, dir) && !strings.Contains(p[len(dir):], "/") {
				list = append(list, fileInfo(p, ff))
			}
		}
		if dir == "/root/" {
			list = append(list,
				api.FileInfo{Path: "/root/dir", Name: "dir", Type: "dir", Mode: "0755", ModTime: testNow.Add(-time.Hour)},
				api.FileInfo{Path: "/root/link", Name: "link", Type: "symlink", Size: 9, Mode: "0777", Target: "/etc/motd", ModTime: testNow.Add(-time.Hour)})
		}
		reply(w, 200, list)
	})
	mux.HandleFunc("POST /v1/sandboxes/{id}/files/mkdir", func(w http.ResponseWriter, r *http.Request) {
		if box(w, r) != nil {
			reply(w, 200, api.FileInfo{Path: r.URL.Query().Get("path"), Type: "dir", Mode: "0755"})
		}
	})
	mux.HandleFunc("GET /v1/sandboxes/{id}/metrics", func(w http.ResponseWriter, r *http.Request) {
		if box(w, r) == nil {
			return
		}
		var from time.Time
		if v := r.URL.Query().Get("from"); v != "" {
			from, _ = time.Parse(time.RFC3339Nano, v)
		}
		list := []api.SandboxMetric{}
		for _, m := range f.metrics {
			if !m.Time.Before(from) {
				list = append(list, m)
			}
		}
		f.metricCalls++
		reply(w, 200, list)
	})
	mux.HandleFunc("GET /v1/sandboxes/{id}/files/watch", func(w http.ResponseWriter, r *http.Request) {
		if box(w, r) == nil {
			return
		}
		f.mu.Unlock() // a stream must not hold the lock
		defer f.mu.Lock()
		w.Header().Set("Content-Type", "application/x-ndjson")
		event(w, api.FileEvent{Op: api.FileEventReady, Path: r.URL.Query().Get("path")})
		for {
			select {
			case ev, ok := <-f.watch:
				if !ok {
					return
				}
				event(w, ev)
			case <-r.Context().Done():
				return
			}
		}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+fakeToken {
			fail(w, 401, api.CodeUnauthorized, "missing or wrong bearer token")
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
}

// runIn runs a verb with stdin and returns its exit code and output.
func (h *harness) runIn(ctx context.Context, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	h.t.Helper()
	var out, errOut bytes.Buffer
	r := h.runner()
	r.stdout, r.stderr, r.stdin = &out, &errOut, stdin
	code = r.run(ctx, args)
	return code, out.String(), errOut.String()
}

// sandboxHarness returns a fake sandbox server and a harness pointed at it.
func sandboxHarness(t *testing.T) (*fakeSandboxServer, *harness) {
	f := newFakeSandboxServer(t)
	h := newHarness(t, nil)
	h.env["FROST_API"] = f.URL
	h.env["FROST_TOKEN"] = fakeToken
	return f, h
}

// devNull opens /dev/null: a character device, as a terminal is.
func devNull(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestSandboxCreate(t *testing.T) {
	f, h := sandboxHarness(t)
	code, out, errOut := h.runIn(context.Background(), nil, "sandbox", "create", "--template", "python",
		"--timeout", "30m", "--on-timeout", "kill", "--memory", "512MiB", "--cpus", "1.5", "--pids", "64",
		"--env", "A=1", "--env", "B=x=y", "--meta", "owner=me")
	if code != 0 || out != "sbx1\n" {
		t.Fatalf("exit %d, stdout %q (want just the ID), stderr %q", code, out, errOut)
	}
	want := api.SandboxCreateRequest{Template: "python", Timeout: api.Duration(30 * time.Minute), OnTimeout: "kill",
		MemoryBytes: 512 << 20, CPUs: 1.5, Pids: 64, Env: map[string]string{"A": "1", "B": "x=y"},
		Metadata: map[string]string{"owner": "me"}}
	if !reflect.DeepEqual(f.creates, []api.SandboxCreateRequest{want}) {
		t.Errorf("server got %+v\nwant %+v", f.creates, want)
	}

	// Defaults send an empty request; --json prints the object.
	out = h.must("sandbox", "create", "--json")
	var s api.Sandbox
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.ID != "sbx2" {
		t.Errorf("--json printed %q: %v", out, err)
	}
	if got := f.creates[1]; !reflect.DeepEqual(got, api.SandboxCreateRequest{}) {
		t.Errorf("create without flags sent %+v", got)
	}
}

func seedSandboxes(f *fakeSandboxServer) {
	f.add(api.Sandbox{ID: "old1", Template: "base", State: api.SandboxPaused,
		Limits:    api.SandboxLimits{MemoryBytes: 1 << 30, CPUs: 2, Pids: 256},
		ExpiresAt: testNow.Add(-time.Hour), CreatedAt: testNow.Add(-3 * 24 * time.Hour), Node: "n2",
		Snapshot: &api.Snapshot{Size: 40 << 20, Created: testNow.Add(-time.Hour), Shared: true}})
	f.add(api.Sandbox{ID: "new2", Template: "python", State: api.SandboxRunning,
		Limits:  api.SandboxLimits{MemoryBytes: 512 << 20, CPUs: 1.5},
		Timeout: api.Duration(5 * time.Minute), OnTimeout: "pause",
		EnvKeys: []string{"TOKEN", "DEBUG"}, Metadata: map[string]string{"owner": "me", "job": "42"},
		Boot: "restore", Pauses: 2, Token: "tok.abc",
		PortURL:   "http://{port}-new2.localhost:8080/",
		ExpiresAt: testNow.Add(4*time.Minute + 10*time.Second), CreatedAt: testNow.Add(-30 * time.Second)})
	f.add(api.Sandbox{ID: "mid3", State: api.SandboxRunning,
		ExpiresAt: testNow.Add(70 * time.Minute), CreatedAt: testNow.Add(-5 * time.Hour)})
}

func TestSandboxList(t *testing.T) {
	f, h := sandboxHarness(t)
	contains(t, "stdout", h.must("sandbox", "ls"), "No sandboxes. Start one with `frost sandbox create`.")

	seedSandboxes(f)
	want := `ID    TEMPLATE  STATE    MEMORY  CPUS  EXPIRES  CREATED
new2  python    running  512MiB  1.5   in 4m    30s ago
mid3  -         running  -       -     in 1h    5h ago
old1  base      paused   1GiB    2     -        3d ago
`
	if got := h.must("sandbox", "ls"); got != want {
		t.Errorf("sandbox ls:\n%s\nwant:\n%s", got, want)
	}

	var list []api.Sandbox
	if err := json.Unmarshal([]byte(h.must("sandbox", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].ID != "new2" || list[0].Token != "tok.abc" {
		t.Errorf("--json: %+v", list)
	}
}

func TestSandboxShow(t *testing.T) {
	f, h := sandboxHarness(t)
	seedSandboxes(f)
	want := `new2
  state     running, expires in 4m
  template  python
  limits    memory 512MiB, cpus 1.5
  timeout   5m0s, then pause
  network   the internet
  env       DEBUG, TOKEN
  metadata  job=42, owner=me
  boot      restore
  pauses    2
  port URL  http://{port}-new2.localhost:8080/
  token     tok.abc
  created   30s ago
`
	if got := h.must("sandbox", "show", "new2"); got != want {
		t.Errorf("sandbox show:\n%s\nwant:\n%s", got, want)
	}
	contains(t, "paused sandbox", h.must("sandbox", "show", "old1"), "paused (resume it with `frost sandbox resume old1`", "memory 1GiB, cpus 2, pids 256",
		"node      n2", "40MiB, taken 1h ago, in shared storage")

	var s api.Sandbox
	if err := json.Unmarshal([]byte(h.must("sandbox", "show", "--json", "new2")), &s); err != nil || s.PortURL == "" {
		t.Errorf("--json: %+v, %v", s, err)
	}

	code, _, errOut := h.run("sandbox", "show", "ghost")
	if code != 1 {
		t.Errorf("show ghost: exit %d", code)
	}
	contains(t, "stderr", errOut, `no sandbox "ghost"`, "`frost sandbox ls`")
}

func TestSandboxLifecycleVerbs(t *testing.T) {
	f, h := sandboxHarness(t)
	seedSandboxes(f)
	if got := h.must("sandbox", "pause", "new2"); got != "Paused new2 (checkpoint 96MiB).\n" {
		t.Errorf("pause printed %q", got)
	}
	if got := h.must("sandbox", "resume", "new2"); got != "Resumed new2; it expires in 5m, then pause.\n" {
		t.Errorf("resume printed %q", got)
	}
	if got := h.must("sandbox", "timeout", "new2", "2h"); got != "new2 now expires in 2h, then pause.\n" {
		t.Errorf("timeout printed %q", got)
	}

	// kill goes on past a missing sandbox, and fails at the end.
	code, out, errOut := h.run("sandbox", "kill", "new2", "ghost", "mid3")
	if code != 1 {
		t.Errorf("kill with a missing ID: exit %d", code)
	}
	if out != "Killed new2.\nKilled mid3.\n" {
		t.Errorf("kill printed %q", out)
	}
	contains(t, "stderr", errOut, `frost sandbox kill: no sandbox "ghost"`)
	if len(f.boxes) != 1 {
		t.Errorf("left %d sandboxes, want 1", len(f.boxes))
	}
}

func TestSandboxExec(t *testing.T) {
	f, h := sandboxHarness(t)
	seedSandboxes(f)
	f.exec = func(w http.ResponseWriter, req api.ExecRequest) {
		event(w, api.ExecEvent{Stream: "stdout", Data: []byte("out 1\n")})
		event(w, api.ExecEvent{Stream: "stderr", Data: []byte("err 1\n")})
		event(w, api.ExecEvent{Stream: "stdout", Data: []byte("out 2\n")})
		event(w, api.ExecEvent{Exit: new(3)})
	}
	tests := []struct {
		name  string
		stdin io.Reader
		args  []string
		req   api.ExecRequest
		input string
	}{
		{"flags then command", devNull(t), []string{"new2", "--cwd", "/src", "--env", "CI=1", "--timeout", "90s", "ls", "-la", "--cwd", "/"},
			api.ExecRequest{Cmd: []string{"ls", "-la", "--cwd", "/"}, Cwd: "/src", Env: map[string]string{"CI": "1"}, Timeout: api.Duration(90 * time.Second)}, ""},
		{"dashes", devNull(t), []string{"--cwd=/tmp", "new2", "--", "--help"},
			api.ExecRequest{Cmd: []string{"--help"}, Cwd: "/tmp"}, ""},
		{"piped stdin", strings.NewReader("line 1\nline 2\n"), []string{"new2", "wc", "-l"},
			api.ExecRequest{Cmd: []string{"wc", "-l"}, Stdin: true}, "line 1\nline 2\n"},
		{"--no-stdin", strings.NewReader("kept"), []string{"new2", "--no-stdin", "cat"},
			api.ExecRequest{Cmd: []string{"cat"}}, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := h.runIn(context.Background(), tt.stdin, append([]string{"sandbox", "exec"}, tt.args...)...)
			if code != 3 {
				t.Errorf("exit %d, want the command's 3; stderr %q", code, errOut)
			}
			if out != "out 1\nout 2\n" || errOut != "err 1\n" {
				t.Errorf("stdout %q, stderr %q", out, errOut)
			}
			if got := f.execs[i]; !reflect.DeepEqual(got, tt.req) {
				t.Errorf("server got %+v\nwant %+v", got, tt.req)
			}
			if got := f.stdins[i]; got != tt.input {
				t.Errorf("stdin sent %q, want %q", got, tt.input)
			}
		})
	}
}

func TestSandboxExecStreamsStdin(t *testing.T) {
	// A real file as stdin (not a terminal) is sent.
	f, h := sandboxHarness(t)
	seedSandboxes(f)
	in := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(in, []byte("from a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if code, _, errOut := h.runIn(context.Background(), file, "sandbox", "exec", "new2", "cat"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if len(f.stdins) != 1 || f.stdins[0] != "from a file" || !f.execs[0].Stdin {
		t.Errorf("sent stdin %q (%+v)", f.stdins, f.execs)
	}
}

func TestSandboxExecFailures(t *testing.T) {
	tests := []struct {
		name   string
		id     string
		events []api.ExecEvent
		code   int
		stderr []string
	}{
		{"timed out", "new2", []api.ExecEvent{{Stream: "stdout", Data: []byte("x")}, {Exit: new(137), TimedOut: true}}, 137,
			[]string{"frost sandbox exec: the command was killed by its timeout"}},
		{"timed out without a code", "new2", []api.ExecEvent{{TimedOut: true}}, 124,
			[]string{"killed by its timeout"}},
		{"killed mid-command", "new2", []api.ExecEvent{{Error: &api.Error{Code: api.CodeNotFound, Message: "sandbox was killed"}}}, 1,
			[]string{`no sandbox "new2"`}},
		{"server failed", "new2", []api.ExecEvent{{Error: &api.Error{Code: api.CodeInternal, Message: "runsc died"}}}, 1,
			[]string{"runsc died", "see its log"}},
		{"missing sandbox", "ghost", nil, 1, []string{`no sandbox "ghost"`, "`frost sandbox ls`"}},
		{"cut short", "new2", []api.ExecEvent{{Stream: "stdout", Data: []byte("x")}}, 1,
			[]string{"ended before the command's exit", "may still be running"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, h := sandboxHarness(t)
			seedSandboxes(f)
			f.exec = func(w http.ResponseWriter, req api.ExecRequest) {
				for _, ev := range tt.events {
					event(w, ev)
				}
			}
			code, _, errOut := h.runIn(context.Background(), devNull(t), "sandbox", "exec", tt.id, "--timeout", "1s", "make")
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.code, errOut)
			}
			contains(t, "stderr", errOut, tt.stderr...)
		})
	}
}

func TestSandboxCopy(t *testing.T) {
	f, h := sandboxHarness(t)
	seedSandboxes(f)
	dir := t.TempDir()
	local := filepath.Join(dir, "run.sh")
	if err := os.WriteFile(local, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// In: from a file, keeping its mode; into a directory; from stdin.
	code, out, errOut := h.runIn(ctx, nil, "sandbox", "cp", local, "new2:/root/bin/run.sh")
	if code != 0 || out != "Copied 18B to new2:/root/bin/run.sh.\n" {
		t.Errorf("cp in: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if ff, ok := f.file("new2", "/root/bin/run.sh"); !ok || string(ff.data) != "#!/bin/sh\necho hi\n" || ff.mode != "0755" {
		t.Errorf("the sandbox has %+v, %v", ff, ok)
	}
	h.must("sandbox", "cp", local, "new2:/root/dir/")
	if _, ok := f.file("new2", "/root/dir/run.sh"); !ok {
		t.Error("cp into DIR/ did not write DIR/run.sh")
	}
	if code, _, errOut := h.runIn(ctx, strings.NewReader("from stdin"), "sandbox", "cp", "-", "new2:/root/in.txt"); code != 0 {
		t.Errorf("cp - in: exit %d: %s", code, errOut)
	}
	if ff, _ := f.file("new2", "/root/in.txt"); string(ff.data) != "from stdin" || ff.mode != "0644" {
		t.Errorf("cp - in wrote %+v", ff)
	}

	// Out: to stdout; to a file, with the mode less group and other
	// write; into a directory.
	if code, out, _ := h.runIn(ctx, nil, "sandbox", "cp", "new2:/root/in.txt", "-"); code != 0 || out != "from stdin" {
		t.Errorf("cp out -: exit %d, stdout %q", code, out)
	}
	f.put("new2", "/root/data.bin", "data", "0666")
	dst := filepath.Join(dir, "data.bin")
	if got := h.must("sandbox", "cp", "new2:/root/data.bin", dst); got != "Copied 4B from new2:/root/data.bin to "+dst+".\n" {
		t.Errorf("cp out printed %q", got)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "data" {
		t.Errorf("cp out wrote %q, %v", b, err)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("cp out: mode %v, %v; want 0644", fi.Mode(), err)
	}
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	h.must("sandbox", "cp", "new2:/root/bin/run.sh", sub)
	if fi, err := os.Stat(filepath.Join(sub, "run.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("cp out into a directory: %v, %v", fi, err)
	}

	// A missing file leaves nothing behind.
	code, _, errOut = h.run("sandbox", "cp", "new2:/root/nope", filepath.Join(dir, "nope"))
	if code != 1 {
		t.Errorf("cp of a missing file: exit %d", code)
	}
	contains(t, "stderr", errOut, "no such file in the sandbox: /root/nope", "frost sandbox files ls new2 DIR")
	if entries, _ := os.ReadDir(dir); len(entries) != 3 { // run.sh, data.bin, sub
		t.Errorf("left behind: %v", entries)
	}
}

// TestSandboxCopyTree: a directory is copied as cp -r does: into
// DEST/NAME when DEST is a directory, else as DEST; SRC/. for what SRC
// holds; in and out.
func TestSandboxCopyTree(t *testing.T) {
	f, h := sandboxHarness(t)
	seedSandboxes(f)
	src := filepath.Join(t.TempDir(), "proj")
	os.MkdirAll(filepath.Join(src, "pkg"), 0o755)
	os.WriteFile(filepath.Join(src, "main.py"), []byte("print()"), 0o644)
	os.WriteFile(filepath.Join(src, "pkg", "run.sh"), []byte("#!/bin/sh"), 0o755)
	for dst, want := range map[string][]string{
		"/root":     {"/root/proj/main.py", "/root/proj/pkg/run.sh"}, // a directory there
		"/root/new": {"/root/new/main.py", "/root/new/pkg/run.sh"},   // not there
		"/root/dir": {"/root/dir/proj/main.py", "/root/dir/proj/pkg/run.sh"},
	} {
		out := h.must("sandbox", "cp", src, "new2:"+dst)
		if wantOut := "Copied 2 files, 1 directory (16B) to new2:" + path.Dir(want[0]) + ".\n"; out != wantOut {
			t.Errorf("cp to %s printed %q, want %q", dst, out, wantOut)
		}
		for _, p := range want {
			if _, ok := f.files["new2:"+p]; !ok {
				t.Errorf("cp to %s: no %s", dst, p)
			}
		}
	}
	h.must("sandbox", "cp", src+"/.", "new2:/root/dir")
	if ff, ok := f.files["new2:/root/dir/pkg/run.sh"]; !ok || ff.mode != "0755" {
		t.Errorf("cp of SRC/.: %+v %v", ff, ok)
	}

	// Out: into a directory there, or as a new one.
	dst := t.TempDir()
	if out := h.must("sandbox", "cp", "new2:/root/dir", dst); !strings.HasPrefix(out, "Copied 4 files, 0 directories") {
		t.Errorf("cp out printed %q", out)
	}
	for _, p := range []string{"dir/main.py", "dir/pkg/run.sh", "dir/proj/main.py", "dir/proj/pkg/run.sh", "again/main.py"} {
		if p == "again/main.py" {
			h.must("sandbox", "cp", "new2:/root/dir", filepath.Join(dst, "again"))
		}
		if _, err := os.Stat(filepath.Join(dst, p)); err != nil {
			t.Errorf("cp out: %v", err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "dir", "pkg", "run.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("cp out kept no mode: %v %v", fi, err)
	}
}

func TestSandboxFiles(t *testing.T) {
	f, h := sandboxHarness(t)
	seedSandboxes(f)
	f.put("new2", "/root/notes.txt", strings.Repeat("x", 2048), "0644")
	f.put("new2", "/root/a.py", "print()", "0755")
	want := `TYPE     MODE  SIZE  MODIFIED  NAME
file     0755  7B    1m ago    a.py
dir      0755  -     1h ago    dir/
symlink  0777  9B    1h ago    link -> /etc/motd
file     0644  2KiB  1m ago    notes.txt
`
	if got := h.must("sandbox", "files", "ls", "new2"); got != want {
		t.Errorf("files ls:\n%s\nwant:\n%s", got, want)
	}
	contains(t, "files ls DIR", h.must("sandbox", "files", "ls", "new2", "/tmp"), "/tmp is empty.")
	var list []api.FileInfo
	if err := json.Unmarshal([]byte(h.must("sandbox", "files", "ls", "new2", "/root", "--json")), &list); err != nil || len(list) != 4 {
		t.Errorf("files ls --json: %+v, %v", list, err)
	}

	if got := h.must("sandbox", "files", "mkdir", "new2", "/root/x/y"); got != "Made new2:/root/x/y.\n" {
		t.Errorf("mkdir printed %q", got)
	}
	code, out, errOut := h.run("sandbox", "files", "rm", "new2", "/root/notes.txt", "/root/nope", "/root/a.py")
	if code != 1 || out != "Removed new2:/root/notes.txt.\nRemoved new2:/root/a.py.\n" {
		t.Errorf("rm: exit %d, stdout %q", code, out)
	}
	contains(t, "stderr", errOut, "no such file in the sandbox: /root/nope")
}

func TestSandboxFilesWatch(t *testing.T) {
	f, h := sandboxHarness(t)
	seedSandboxes(f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.watch <- api.FileEvent{Op: "create", Path: "/root/a.txt", Info: api.FileInfo{Size: 12}}
	f.watch <- api.FileEvent{Op: "write", Path: "/root/a.txt", Info: api.FileInfo{Size: 20}}
	f.watch <- api.FileEvent{Op: "remove", Path: "/root/a.txt"}

	var out, errOut testtool.SyncBuffer
	r := h.runner()
	r.stdout, r.stderr = &out, &errOut
	done := make(chan int, 1)
	go func() { done <- r.run(ctx, []string{"sandbox", "files", "watch", "new2", "/root"}) }()
	want := "create /root/a.txt 12\nwrite /root/a.txt 20\nremove /root/a.txt -\n"
	for deadline := time.Now().Add(5 * time.Second); out.String() != want; {
		if time.Now().After(deadline) {
			t.Fatalf("watch printed %q, want %q", out.String(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel() // Ctrl-C
	if code := <-done; code != 0 {
		t.Errorf("watch after Ctrl-C: exit %d; stderr %q", code, errOut.String())
	}
	contains(t, "stderr", errOut.String(), "Watching new2:/root; Ctrl-C stops.")

	// The server ending the stream is a failure that says why.
	close(f.watch)
	code, _, stderr := h.run("sandbox", "files", "watch", "new2", "/root", "--json")
	if code != 1 {
		t.Errorf("watch ended by the server: exit %d", code)
	}
	contains(t, "stderr", stderr, "the server ended the stream", "paused or killed")
}

func TestSandboxUsage(t *testing.T) {
	f, h := sandboxHarness(t)
	seedSandboxes(f)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // a part of it
		stderr string // a part of it
	}{
		{"listed in help", []string{"help"}, 0, "sandbox    agent sandboxes: create, exec, files", ""},
		{"no sub-command", []string{"sandbox"}, 2, "", "missing sub-command"},
		{"unknown sub-command", []string{"sandbox", "start"}, 2, "", `unknown sub-command "start"`},
		{"sandbox help", []string{"sandbox", "help"}, 0, "frost sandbox exec ID [flags] CMD...", ""},
		{"help sandbox", []string{"help", "sandbox"}, 0, "frost sandbox cp LOCAL ID:/PATH", ""},
		{"create -h", []string{"sandbox", "create", "-h"}, 0, "--on-timeout ACTION", ""},
		{"exec -h", []string{"sandbox", "exec", "-h"}, 0, "--no-stdin", ""},
		{"exec no command", []string{"sandbox", "exec", "new2"}, 2, "", "missing the command to run"},
		{"exec no ID", []string{"sandbox", "exec"}, 2, "", "missing arguments"},
		{"exec relative cwd", []string{"sandbox", "exec", "new2", "--cwd", "src", "ls"}, 2, "", `--cwd "src" must be an absolute path`},
		{"create bad on-timeout", []string{"sandbox", "create", "--on-timeout", "stop"}, 2, "", `--on-timeout "stop": want pause or kill`},
		{"create bad memory", []string{"sandbox", "create", "--memory", "lots"}, 2, "", "does not start with a number"},
		{"create bad env", []string{"sandbox", "create", "--env", "NOPE"}, 2, "", `"NOPE": want KEY=VALUE`},
		{"create extra", []string{"sandbox", "create", "python"}, 2, "", "too many arguments: python"},
		{"timeout bad duration", []string{"sandbox", "timeout", "new2", "soon"}, 2, "", `DURATION "soon"`},
		{"timeout zero", []string{"sandbox", "timeout", "new2", "0s"}, 2, "", "must be positive"},
		{"kill nothing", []string{"sandbox", "kill"}, 2, "", "missing arguments"},
		{"cp both local", []string{"sandbox", "cp", "a", "b"}, 2, "", "neither a nor b is in a sandbox"},
		{"cp both remote", []string{"sandbox", "cp", "x:/a", "y:/b"}, 2, "", "both x:/a and y:/b are in sandboxes"},
		{"cp relative", []string{"sandbox", "cp", "a", "new2:notes.txt"}, 2, "", `"notes.txt" is not an absolute path`},
		{"cp stdin to dir", []string{"sandbox", "cp", "-", "new2:/root/"}, 2, "", "name the file to write from stdin"},
		{"files no sub", []string{"sandbox", "files"}, 2, "", "missing sub-command: ls, mkdir, rm or watch"},
		{"files bad sub", []string{"sandbox", "files", "cat", "new2", "/x"}, 2, "", `unknown sub-command "cat"`},
		{"files ls relative", []string{"sandbox", "files", "ls", "new2", "tmp"}, 2, "", `"tmp" is not an absolute path`},
		{"files watch no dir", []string{"sandbox", "files", "watch", "new2"}, 2, "", "missing arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := h.runIn(context.Background(), strings.NewReader(""), tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if !strings.Contains(out, tt.stdout) || !strings.Contains(errOut, tt.stderr) {
				t.Errorf("stdout %q\nstderr %q\nwant stdout containing %q, stderr containing %q", out, errOut, tt.stdout, tt.stderr)
			}
		})
	}
}

func TestSplitRemote(t *testing.T) {
	tests := []struct {
		in       string
		id, path string
		ok       bool
	}{
		{"abc:/root/x", "abc", "/root/x", true},
		{"abc:", "abc", "", true},
		{"./a:b", "", "", false},
		{"dir/a:b", "", "", false},
		{":/x", "", "", false},
		{"-", "", "", false},
		{"plain.txt", "", "", false},
	}
	for _, tt := range tests {
		id, p, ok := splitRemote(tt.in)
		if id != tt.id || p != tt.path || ok != tt.ok {
			t.Errorf("splitRemote(%q) = %q, %q, %v; want %q, %q, %v", tt.in, id, p, ok, tt.id, tt.path, tt.ok)
		}
	}
}

func TestExpires(t *testing.T) {
	running := func(d time.Duration) api.Sandbox {
		return api.Sandbox{State: api.SandboxRunning, ExpiresAt: testNow.Add(d)}
	}
	for _, tt := range []struct {
		s    api.Sandbox
		want string
	}{
		{running(-time.Minute), "now"},
		{running(42 * time.Second), "in 42s"},
		{running(400 * time.Millisecond), "now"},
		{running(3*time.Minute + 29*time.Second), "in 3m"},
		{running(3*time.Minute + 31*time.Second), "in 4m"},
		{running(time.Hour - 100*time.Millisecond), "in 1h"},
		{running(5 * time.Hour), "in 5h"},
		{running(47*time.Hour + 45*time.Minute), "in 2d"},
		{running(72 * time.Hour), "in 3d"},
		{api.Sandbox{State: api.SandboxPaused, ExpiresAt: testNow.Add(time.Hour)}, "-"},
	} {
		if got := expires(testNow, tt.s); got != tt.want {
			t.Errorf("expires(%s in %v) = %q, want %q", tt.s.State, tt.s.ExpiresAt.Sub(testNow), got, tt.want)
		}
	}
}

func TestFormatNetwork(t *testing.T) {
	for _, c := range []struct {
		n    *api.SandboxNetwork
		want string
	}{
		{nil, "the internet"},
		{&api.SandboxNetwork{Offline: true}, "offline"},
		{&api.SandboxNetwork{Offline: true, AllowOut: []string{"10.0.0.0/8", "192.0.2.1/32"}}, "offline; allow 10.0.0.0/8 192.0.2.1/32"},
		{&api.SandboxNetwork{DenyOut: []string{"10.0.0.0/8"}}, "the internet; deny 10.0.0.0/8"},
	} {
		if got := formatNetwork(c.n); got != c.want {
			t.Errorf("%+v: %q, want %q", c.n, got, c.want)
		}
	}
}

// TestSandboxMetricsFollow: -f prints the samples there are, then each
// new one once as it comes, in columns under the header, until
// interrupted (exit 0).
func TestSandboxMetricsFollow(t *testing.T) {
	f, h := sandboxHarness(t)
	seedSandboxes(f)
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	sample := func(i int) api.SandboxMetric {
		return api.SandboxMetric{Time: t0.Add(time.Duration(i) * 5 * time.Second), CPUUsedPct: float64(i), CPUCount: 1, MemUsed: int64(i) << 20, MemTotal: 512 << 20}
	}
	f.mu.Lock()
	f.metrics = []api.SandboxMetric{sample(1), sample(2)}
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// A new sample once the follower has asked twice; then enough
		// asks to print it more than once if it were going to.
		for n := 0; ; time.Sleep(5 * time.Millisecond) {
			f.mu.Lock()
			calls := f.metricCalls
			if calls >= 2 && n == 0 {
				f.metrics = append(f.metrics, sample(3))
				n = calls
			}
			f.mu.Unlock()
			if n > 0 && calls >= n+3 {
				cancel()
				return
			}
		}
	}()
	code, out, errOut := h.runCtx(ctx, "sandbox", "metrics", "new2", "-f", "--every", "10ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "CPU %") || !strings.Contains(lines[3], " 3MiB ") || len(lines[3]) != len(lines[0]) {
		t.Fatalf("followed:\n%s", out)
	}
	if code, _, errOut := h.run("sandbox", "metrics", "new2", "-f", "--every", "0s"); code != 2 || !strings.Contains(errOut, "positive") {
		t.Errorf("--every 0s: %d %s", code, errOut)
	}
}
