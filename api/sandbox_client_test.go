package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
)

// fakeSandboxes is a small in-memory control API for the sandbox routes:
// enough to check what the client sends and how it reads the answers. The
// real routes are tested in internal/api.
type fakeSandboxes struct {
	mu        sync.Mutex
	boxes     map[string]*api.Sandbox
	files     map[string][]byte // by "ID:PATH"
	creates   []api.SandboxCreateRequest
	timeouts  []string // raw bodies of POST .../timeout
	requests  []string // "METHOD escaped-path?query" of every call
	modes     []string // the mode query of every PUT .../files
	execs     []api.ExecRequest
	exec      func(w http.ResponseWriter, r *http.Request, req api.ExecRequest, body *bufio.Reader) // nil: echo the command
	watch     chan api.FileEvent                                                                    // events a watch sends after "ready"
	watchDone chan struct{}                                                                         // closed when a watch handler returns
}

func newFakeSandboxes(t *testing.T) (*fakeSandboxes, *api.Client) {
	f := &fakeSandboxes{
		boxes:     map[string]*api.Sandbox{},
		files:     map[string][]byte{},
		watch:     make(chan api.FileEvent, 16),
		watchDone: make(chan struct{}),
	}
	srv := httptest.NewServer(f.handler())
	t.Cleanup(srv.Close)
	return f, api.NewClient(srv.URL, testToken)
}

func (f *fakeSandboxes) box(w http.ResponseWriter, r *http.Request) *api.Sandbox {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.boxes[r.PathValue("id")]
	if s == nil {
		writeErr(w, 404, api.CodeNotFound, fmt.Sprintf("no sandbox %q", r.PathValue("id")))
	}
	return s
}

func (f *fakeSandboxes) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/sandboxes", func(w http.ResponseWriter, r *http.Request) {
		var req api.SandboxCreateRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeErr(w, 400, api.CodeInvalidRequest, err.Error())
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.creates = append(f.creates, req)
		id := fmt.Sprintf("sb%d", len(f.creates))
		s := &api.Sandbox{ID: id, Template: req.Template, State: api.SandboxRunning, Timeout: req.Timeout,
			Limits: api.SandboxLimits{MemoryBytes: req.MemoryBytes, CPUs: req.CPUs, Pids: req.Pids}}
		f.boxes[id] = s
		writeJSON(w, 201, s)
	})
	mux.HandleFunc("GET /v1/sandboxes", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		list := []api.Sandbox{}
		for _, s := range f.boxes {
			list = append(list, *s)
		}
		writeJSON(w, 200, list)
	})
	mux.HandleFunc("GET /v1/sandboxes/{id}", func(w http.ResponseWriter, r *http.Request) {
		if s := f.box(w, r); s != nil {
			writeJSON(w, 200, s)
		}
	})
	mux.HandleFunc("DELETE /v1/sandboxes/{id}", func(w http.ResponseWriter, r *http.Request) {
		if s := f.box(w, r); s != nil {
			f.mu.Lock()
			delete(f.boxes, s.ID)
			f.mu.Unlock()
			w.WriteHeader(204)
		}
	})
	state := func(st string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if s := f.box(w, r); s != nil {
				f.mu.Lock()
				s.State = st
				f.mu.Unlock()
				writeJSON(w, 200, s)
			}
		}
	}
	mux.HandleFunc("POST /v1/sandboxes/{id}/pause", state(api.SandboxPaused))
	mux.HandleFunc("POST /v1/sandboxes/{id}/resume", state(api.SandboxRunning))
	mux.HandleFunc("POST /v1/sandboxes/{id}/timeout", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req struct {
			Timeout api.Duration `json:"timeout"`
		}
		if err := json.Unmarshal(b, &req); err != nil {
			writeErr(w, 400, api.CodeInvalidRequest, err.Error())
			return
		}
		if s := f.box(w, r); s != nil {
			f.mu.Lock()
			f.timeouts = append(f.timeouts, string(bytes.TrimSpace(b)))
			s.Timeout = req.Timeout
			f.mu.Unlock()
			writeJSON(w, 200, s)
		}
	})
	mux.HandleFunc("POST /v1/sandboxes/{id}/exec", func(w http.ResponseWriter, r *http.Request) {
		br := bufio.NewReader(r.Body)
		line, err := br.ReadBytes('\n')
		if err != nil {
			writeErr(w, 400, api.CodeInvalidRequest, "no ExecRequest line: "+err.Error())
			return
		}
		var req api.ExecRequest
		if err := json.Unmarshal(line, &req); err != nil {
			writeErr(w, 400, api.CodeInvalidRequest, err.Error())
			return
		}
		if f.box(w, r) == nil {
			return
		}
		f.mu.Lock()
		f.execs = append(f.execs, req)
		exec := f.exec
		f.mu.Unlock()
		if req.Stdin {
			http.NewResponseController(w).EnableFullDuplex() // as the real server does
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		if exec != nil {
			exec(w, r, req, br)
			return
		}
		// Default: print the command's words, and the rest of the body on
		// stderr, then exit 0.
		rest, _ := io.ReadAll(br)
		sendEvent(w, api.ExecEvent{Stream: "stdout", Data: []byte(strings.Join(req.Cmd, " "))})
		sendEvent(w, api.ExecEvent{Stream: "stderr", Data: rest})
		sendEvent(w, api.ExecEvent{Exit: new(0)})
	})
	mux.HandleFunc("GET /v1/sandboxes/{id}/files", func(w http.ResponseWriter, r *http.Request) {
		if f.box(w, r) == nil {
			return
		}
		f.mu.Lock()
		b, ok := f.files[r.PathValue("id")+":"+r.URL.Query().Get("path")]
		f.mu.Unlock()
		if !ok {
			writeErr(w, 404, api.CodeNotFound, "no file "+r.URL.Query().Get("path"))
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("PUT /v1/sandboxes/{id}/files", func(w http.ResponseWriter, r *http.Request) {
		if f.box(w, r) == nil {
			return
		}
		b, _ := io.ReadAll(r.Body)
		p := r.URL.Query().Get("path")
		f.mu.Lock()
		f.files[r.PathValue("id")+":"+p] = b
		f.modes = append(f.modes, r.URL.Query().Get("mode"))
		f.mu.Unlock()
		writeJSON(w, 200, api.FileInfo{Path: p, Name: p[strings.LastIndex(p, "/")+1:], Type: "file", Size: int64(len(b)), Mode: "0644"})
	})
	mux.HandleFunc("DELETE /v1/sandboxes/{id}/files", func(w http.ResponseWriter, r *http.Request) {
		k := r.PathValue("id") + ":" + r.URL.Query().Get("path")
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.files[k]; !ok {
			writeErr(w, 404, api.CodeNotFound, "no file "+r.URL.Query().Get("path"))
			return
		}
		delete(f.files, k)
		w.WriteHeader(204)
	})
	mux.HandleFunc("GET /v1/sandboxes/{id}/files/stat", func(w http.ResponseWriter, r *http.Request) {
		k := r.PathValue("id") + ":" + r.URL.Query().Get("path")
		f.mu.Lock()
		b, ok := f.files[k]
		f.mu.Unlock()
		if !ok {
			writeErr(w, 404, api.CodeNotFound, "no file "+r.URL.Query().Get("path"))
			return
		}
		writeJSON(w, 200, api.FileInfo{Path: r.URL.Query().Get("path"), Type: "file", Size: int64(len(b))})
	})
	mux.HandleFunc("GET /v1/sandboxes/{id}/files/list", func(w http.ResponseWriter, r *http.Request) {
		dir := strings.TrimSuffix(r.URL.Query().Get("path"), "/") + "/"
		list := []api.FileInfo{}
		f.mu.Lock()
		for k, b := range f.files {
			id, p, _ := strings.Cut(k, ":")
			if id == r.PathValue("id") && strings.HasPrefix(p, dir) {
				list = append(list, api.FileInfo{Path: p, Name: p[len(dir):], Type: "file", Size: int64(len(b))})
			}
		}
		f.mu.Unlock()
		writeJSON(w, 200, list)
	})
	mux.HandleFunc("POST /v1/sandboxes/{id}/files/mkdir", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, api.FileInfo{Path: r.URL.Query().Get("path"), Type: "dir", Mode: "0755"})
	})
	mux.HandleFunc("GET /v1/sandboxes/{id}/files/watch", func(w http.ResponseWriter, r *http.Request) {
		defer close(f.watchDone)
		if f.box(w, r) == nil {
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		sendEvent(w, api.FileEvent{Op: "ready", Path: r.URL.Query().Get("path")})
		for {
			select {
			case ev, ok := <-f.watch:
				if !ok {
					return // the server ends the stream
				}
				sendEvent(w, ev)
			case <-r.Context().Done():
				return
			}
		}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			writeErr(w, 401, api.CodeUnauthorized, "missing or wrong bearer token")
			return
		}
		f.mu.Lock()
		call := r.Method + " " + r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			call += "?" + r.URL.RawQuery
		}
		f.requests = append(f.requests, call)
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
}

// sendEvent writes one JSON line and flushes it.
func sendEvent(w http.ResponseWriter, v any) {
	json.NewEncoder(w).Encode(v)
	w.(http.Flusher).Flush()
}

func (f *fakeSandboxes) lastRequest() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return ""
	}
	return f.requests[len(f.requests)-1]
}

func TestSandboxLifecycle(t *testing.T) {
	f, cl := newFakeSandboxes(t)
	ctx := context.Background()

	req := api.SandboxCreateRequest{Template: "python", Timeout: api.Duration(90 * time.Second), OnTimeout: "kill",
		MemoryBytes: 512 << 20, CPUs: 1.5, Pids: 64, Env: map[string]string{"A": "1"}}
	s, err := cl.CreateSandbox(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "sb1" || s.State != api.SandboxRunning || s.Limits.CPUs != 1.5 {
		t.Errorf("created %+v", s)
	}
	if !reflect.DeepEqual(f.creates, []api.SandboxCreateRequest{req}) {
		t.Errorf("server got %+v, want %+v", f.creates, req)
	}

	list, err := cl.Sandboxes(ctx)
	if err != nil || len(list) != 1 || list[0].ID != "sb1" {
		t.Fatalf("Sandboxes = %+v, %v", list, err)
	}
	if s, err = cl.Sandbox(ctx, "sb1"); err != nil || s.Template != "python" {
		t.Fatalf("Sandbox = %+v, %v", s, err)
	}
	if s, err = cl.PauseSandbox(ctx, "sb1"); err != nil || s.State != api.SandboxPaused {
		t.Fatalf("PauseSandbox = %+v, %v", s, err)
	}
	if got := f.lastRequest(); got != "POST /v1/sandboxes/sb1/pause" {
		t.Errorf("pause sent %q", got)
	}
	if s, err = cl.ResumeSandbox(ctx, "sb1"); err != nil || s.State != api.SandboxRunning {
		t.Fatalf("ResumeSandbox = %+v, %v", s, err)
	}
	if s, err = cl.SetSandboxTimeout(ctx, "sb1", 2*time.Minute); err != nil || time.Duration(s.Timeout) != 2*time.Minute {
		t.Fatalf("SetSandboxTimeout = %+v, %v", s, err)
	}
	if want := []string{`{"timeout":"2m0s"}`}; !reflect.DeepEqual(f.timeouts, want) {
		t.Errorf("timeout bodies %q, want %q", f.timeouts, want)
	}
	if err := cl.KillSandbox(ctx, "sb1"); err != nil {
		t.Fatal(err)
	}
	if got := f.lastRequest(); got != "DELETE /v1/sandboxes/sb1" {
		t.Errorf("kill sent %q", got)
	}

	// Gone: every call on it is a 404 StatusError.
	calls := map[string]func() error{
		"Sandbox":       func() error { _, err := cl.Sandbox(ctx, "sb1"); return err },
		"KillSandbox":   func() error { return cl.KillSandbox(ctx, "sb1") },
		"PauseSandbox":  func() error { _, err := cl.PauseSandbox(ctx, "sb1"); return err },
		"ResumeSandbox": func() error { _, err := cl.ResumeSandbox(ctx, "sb1"); return err },
		"Exec": func() error {
			_, err := cl.Exec(ctx, "sb1", api.ExecRequest{Cmd: []string{"true"}}, nil, nil, nil)
			return err
		},
		"ReadFile": func() error { return cl.ReadFile(ctx, "sb1", "/etc/hostname", io.Discard) },
		"WatchDir": func() error {
			return cl.WatchDir(ctx, "sb1", "/root", func(api.FileEvent) error { return nil })
		},
	}
	for name, call := range calls {
		err := call()
		var se *api.StatusError
		if !errors.As(err, &se) || se.Status != 404 || se.Err.Code != api.CodeNotFound {
			t.Errorf("%s of a killed sandbox: %v, want a 404 StatusError", name, err)
		}
	}
}

func TestSandboxPathsAreEscaped(t *testing.T) {
	f, cl := newFakeSandboxes(t)
	ctx := context.Background()
	f.boxes["sb1"] = &api.Sandbox{ID: "sb1"}

	// An ID is one path segment, whatever it holds.
	cl.Sandbox(ctx, "a/b c?d")
	if got, want := f.lastRequest(), "GET /v1/sandboxes/a%2Fb%20c%3Fd"; got != want {
		t.Errorf("sent %q, want %q", got, want)
	}
	// A file path is a query parameter, escaped.
	const odd = "/root/a b&c=d?#%.txt"
	if _, err := cl.WriteFile(ctx, "sb1", odd, 0o755|os.ModeSetuid, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if got, want := f.lastRequest(), "PUT /v1/sandboxes/sb1/files?mode=4755&path=%2Froot%2Fa+b%26c%3Dd%3F%23%25.txt"; got != want {
		t.Errorf("sent %q, want %q", got, want)
	}
	var buf bytes.Buffer
	if err := cl.ReadFile(ctx, "sb1", odd, &buf); err != nil || buf.String() != "x" {
		t.Errorf("ReadFile(%q) = %q, %v", odd, buf.String(), err)
	}

	// Bad arguments send nothing.
	n := len(f.requests)
	for name, err := range map[string]error{
		"empty ID":      cl.KillSandbox(ctx, ""),
		"relative path": cl.RemoveFile(ctx, "sb1", "notes.txt"),
		"empty path":    cl.ReadFile(ctx, "sb1", "", io.Discard),
		"no command":    func() error { _, err := cl.Exec(ctx, "sb1", api.ExecRequest{}, nil, nil, nil); return err }(),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if len(f.requests) != n {
		t.Errorf("bad arguments sent %q", f.requests[n:])
	}
}

func TestSandboxFiles(t *testing.T) {
	f, cl := newFakeSandboxes(t)
	ctx := context.Background()
	f.boxes["sb1"] = &api.Sandbox{ID: "sb1"}

	// WriteFile streams a body of unknown length; mode 0 leaves it to the server.
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("hello, "))
		pw.Write([]byte("world"))
		pw.Close()
	}()
	info, err := cl.WriteFile(ctx, "sb1", "/root/dir/hello.txt", 0, pr)
	if err != nil || info.Size != 12 || info.Name != "hello.txt" {
		t.Fatalf("WriteFile = %+v, %v", info, err)
	}
	if _, err := cl.WriteFile(ctx, "sb1", "/root/dir/run.sh", 0o755, strings.NewReader("#!/bin/sh")); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.WriteFile(ctx, "sb1", "/root/empty", 0o600, nil); err != nil {
		t.Fatal(err)
	}
	if want := []string{"", "755", "600"}; !reflect.DeepEqual(f.modes, want) {
		t.Errorf("modes sent %q, want %q", f.modes, want)
	}
	var buf bytes.Buffer
	if err := cl.ReadFile(ctx, "sb1", "/root/dir/hello.txt", &buf); err != nil || buf.String() != "hello, world" {
		t.Errorf("ReadFile = %q, %v", buf.String(), err)
	}
	if info, err := cl.StatFile(ctx, "sb1", "/root/dir/hello.txt"); err != nil || info.Size != 12 {
		t.Errorf("StatFile = %+v, %v", info, err)
	}
	list, err := cl.ListDir(ctx, "sb1", "/root/dir")
	if err != nil || len(list) != 2 {
		t.Errorf("ListDir = %+v, %v", list, err)
	}
	if got := f.lastRequest(); got != "GET /v1/sandboxes/sb1/files/list?path=%2Froot%2Fdir" {
		t.Errorf("ListDir sent %q", got)
	}
	if info, err := cl.Mkdir(ctx, "sb1", "/root/new"); err != nil || info.Type != "dir" {
		t.Errorf("Mkdir = %+v, %v", info, err)
	}
	if got := f.lastRequest(); got != "POST /v1/sandboxes/sb1/files/mkdir?path=%2Froot%2Fnew" {
		t.Errorf("Mkdir sent %q", got)
	}
	if err := cl.RemoveFile(ctx, "sb1", "/root/dir/hello.txt"); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"ReadFile":   cl.ReadFile(ctx, "sb1", "/root/dir/hello.txt", io.Discard),
		"RemoveFile": cl.RemoveFile(ctx, "sb1", "/root/dir/hello.txt"),
		"StatFile":   func() error { _, err := cl.StatFile(ctx, "sb1", "/root/dir/hello.txt"); return err }(),
	} {
		var se *api.StatusError
		if !errors.As(err, &se) || se.Status != 404 {
			t.Errorf("%s of a removed file: %v, want a 404 StatusError", name, err)
		}
	}
}

// signalWriter records what is written and signals each write.
type signalWriter struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func newSignalWriter() *signalWriter { return &signalWriter{wrote: make(chan struct{}, 64)} }

func (s *signalWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Write(p)
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (s *signalWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until w holds want.
func (s *signalWriter) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for s.String() != want {
		select {
		case <-s.wrote:
		case <-deadline:
			t.Fatalf("waited 5s for %q; have %q", want, s.String())
		}
	}
}

func TestExecStreamsOutputBeforeExit(t *testing.T) {
	f, cl := newFakeSandboxes(t)
	f.boxes["sb1"] = &api.Sandbox{ID: "sb1"}
	release := make(chan struct{})
	f.exec = func(w http.ResponseWriter, r *http.Request, req api.ExecRequest, _ *bufio.Reader) {
		sendEvent(w, api.ExecEvent{Stream: "stdout", Data: []byte("working\n")})
		sendEvent(w, api.ExecEvent{Stream: "stderr", Data: []byte("warning\n")})
		<-release // the command runs on until the test has seen its output
		sendEvent(w, api.ExecEvent{Stream: "stdout", Data: []byte("done\n")})
		sendEvent(w, api.ExecEvent{Exit: new(3)})
	}
	stdout, stderr := newSignalWriter(), newSignalWriter()
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	req := api.ExecRequest{Cmd: []string{"bash", "-lc", "make"}, Cwd: "/src", Env: map[string]string{"CI": "1"}, Timeout: api.Duration(time.Minute)}
	go func() {
		code, err := cl.Exec(context.Background(), "sb1", req, nil, stdout, stderr)
		done <- result{code, err}
	}()
	stdout.waitFor(t, "working\n")
	stderr.waitFor(t, "warning\n")
	close(release)
	res := <-done
	if res.code != 3 || res.err != nil {
		t.Errorf("Exec = %d, %v; want 3, nil", res.code, res.err)
	}
	if got := stdout.String(); got != "working\ndone\n" {
		t.Errorf("stdout %q", got)
	}
	if len(f.execs) != 1 || !reflect.DeepEqual(f.execs[0], req) {
		t.Errorf("server got %+v, want %+v (without stdin)", f.execs, req)
	}
}

func TestExecStreamsStdin(t *testing.T) {
	f, cl := newFakeSandboxes(t)
	f.boxes["sb1"] = &api.Sandbox{ID: "sb1"}
	// cat: each chunk of stdin comes back on stdout as it arrives.
	f.exec = func(w http.ResponseWriter, r *http.Request, req api.ExecRequest, body *bufio.Reader) {
		buf := make([]byte, 1024)
		for {
			n, err := body.Read(buf)
			if n > 0 {
				sendEvent(w, api.ExecEvent{Stream: "stdout", Data: buf[:n]})
			}
			if err != nil {
				break
			}
		}
		sendEvent(w, api.ExecEvent{Exit: new(0)})
	}
	stdinR, stdinW := io.Pipe()
	stdout := newSignalWriter()
	done := make(chan error, 1)
	go func() {
		code, err := cl.Exec(context.Background(), "sb1", api.ExecRequest{Cmd: []string{"cat"}}, stdinR, stdout, nil)
		if err == nil && code != 0 {
			err = fmt.Errorf("exit %d", code)
		}
		done <- err
	}()
	stdinW.Write([]byte("ping\n"))
	stdout.waitFor(t, "ping\n") // echoed while stdin is still open
	stdinW.Write([]byte("pong\n"))
	stdout.waitFor(t, "ping\npong\n")
	stdinW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(f.execs) != 1 || !f.execs[0].Stdin {
		t.Errorf("server got %+v, want stdin set", f.execs)
	}
}

// blockingReader never returns until closed.
type blockingReader struct{ closed chan struct{} }

func (b blockingReader) Read(p []byte) (int, error) {
	<-b.closed
	return 0, io.EOF
}

func TestExecReturnsWithoutDrainingStdin(t *testing.T) {
	f, cl := newFakeSandboxes(t)
	f.boxes["sb1"] = &api.Sandbox{ID: "sb1"}
	f.exec = func(w http.ResponseWriter, r *http.Request, req api.ExecRequest, body *bufio.Reader) {
		sendEvent(w, api.ExecEvent{Exit: new(0)}) // exits without reading stdin
	}
	stdin := blockingReader{make(chan struct{})}
	defer close(stdin.closed)
	done := make(chan error, 1)
	go func() {
		_, err := cl.Exec(context.Background(), "sb1", api.ExecRequest{Cmd: []string{"true"}}, stdin, nil, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Exec waited for stdin after the command exited")
	}
}

func TestExecEndings(t *testing.T) {
	tests := []struct {
		name   string
		events []api.ExecEvent
		code   int
		out    string
		check  func(error) bool
		errHas string
	}{
		{"exit", []api.ExecEvent{{Exit: new(0)}}, 0, "", func(err error) bool { return err == nil }, ""},
		{"exit code", []api.ExecEvent{{Stream: "stdout", Data: []byte("x")}, {Exit: new(42)}}, 42, "x",
			func(err error) bool { return err == nil }, ""},
		{"timed out", []api.ExecEvent{{Stream: "stdout", Data: []byte("x")}, {Exit: new(137), TimedOut: true}}, 137, "x",
			func(err error) bool { return errors.Is(err, api.ErrExecTimeout) }, "killed by its timeout of 2s"},
		{"error after output", []api.ExecEvent{{Stream: "stdout", Data: []byte("x")},
			{Error: &api.Error{Code: api.CodeNotFound, Message: `sandbox "sb1" was killed`}}}, -1, "x",
			func(err error) bool {
				var se *api.StatusError
				return errors.As(err, &se) && se.Status == 404 && se.Err.Code == api.CodeNotFound
			}, `sandbox "sb1" was killed`},
		{"internal error", []api.ExecEvent{{Error: &api.Error{Code: api.CodeInternal, Message: "runsc died"}}}, -1, "",
			func(err error) bool {
				var se *api.StatusError
				return errors.As(err, &se) && se.Status == 500
			}, "runsc died"},
		{"cut short", []api.ExecEvent{{Stream: "stdout", Data: []byte("x")}}, -1, "x",
			func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }, "ended before the command's exit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, cl := newFakeSandboxes(t)
			f.boxes["sb1"] = &api.Sandbox{ID: "sb1"}
			f.exec = func(w http.ResponseWriter, r *http.Request, req api.ExecRequest, body *bufio.Reader) {
				for _, ev := range tt.events {
					sendEvent(w, ev)
				}
			}
			var out bytes.Buffer
			code, err := cl.Exec(context.Background(), "sb1", api.ExecRequest{Cmd: []string{"x"}, Timeout: api.Duration(2 * time.Second)}, nil, &out, nil)
			if code != tt.code || !tt.check(err) {
				t.Errorf("Exec = %d, %v; want %d", code, err, tt.code)
			}
			if err != nil && !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("error %q does not say %q", err, tt.errHas)
			}
			if out.String() != tt.out {
				t.Errorf("stdout %q, want %q", out.String(), tt.out)
			}
		})
	}
}

func TestExecDefaultsAndCancel(t *testing.T) {
	f, cl := newFakeSandboxes(t)
	f.boxes["sb1"] = &api.Sandbox{ID: "sb1"}

	// The default fake prints the words on stdout and the rest of the body
	// on stderr: with stdin nil, the body is the request line alone.
	var stdout, stderr bytes.Buffer
	code, err := cl.Exec(context.Background(), "sb1", api.ExecRequest{Cmd: []string{"echo", "hi"}}, nil, &stdout, &stderr)
	if code != 0 || err != nil || stdout.String() != "echo hi" || stderr.String() != "" {
		t.Errorf("Exec = %d, %v, stdout %q, stderr %q", code, err, stdout.String(), stderr.String())
	}
	// Nil writers drop output.
	if code, err := cl.Exec(context.Background(), "sb1", api.ExecRequest{Cmd: []string{"echo"}}, strings.NewReader("in"), nil, nil); code != 0 || err != nil {
		t.Errorf("Exec with nil writers = %d, %v", code, err)
	}

	// Cancelling ctx ends a command that runs on.
	f.exec = func(w http.ResponseWriter, r *http.Request, req api.ExecRequest, _ *bufio.Reader) {
		sendEvent(w, api.ExecEvent{Stream: "stdout", Data: []byte("tick")})
		<-r.Context().Done()
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := newSignalWriter()
	done := make(chan error, 1)
	go func() {
		_, err := cl.Exec(ctx, "sb1", api.ExecRequest{Cmd: []string{"sleep", "inf"}}, nil, out, nil)
		done <- err
	}()
	out.waitFor(t, "tick")
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Exec after cancel: %v, want context.Canceled", err)
	}
}

func TestWatchDir(t *testing.T) {
	f, cl := newFakeSandboxes(t)
	f.boxes["sb1"] = &api.Sandbox{ID: "sb1"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []string
	err := cl.WatchDir(ctx, "sb1", "/root/work dir", func(ev api.FileEvent) error {
		got = append(got, ev.Op+" "+ev.Path)
		switch ev.Op {
		case api.FileEventReady:
			f.watch <- api.FileEvent{Op: "create", Path: "/root/work dir/a", Info: api.FileInfo{Size: 1}}
			f.watch <- api.FileEvent{Op: "remove", Path: "/root/work dir/a"}
		case "remove":
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("WatchDir after cancel = %v, want nil", err)
	}
	want := []string{"ready /root/work dir", "create /root/work dir/a", "remove /root/work dir/a"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if got := f.lastRequest(); got != "GET /v1/sandboxes/sb1/files/watch?path=%2Froot%2Fwork+dir" {
		t.Errorf("sent %q", got)
	}
	select {
	case <-f.watchDone:
	case <-time.After(5 * time.Second):
		t.Error("the server's watch did not end after the client's ctx did")
	}
}

func TestWatchDirEnds(t *testing.T) {
	// fn's error is returned.
	f, cl := newFakeSandboxes(t)
	f.boxes["sb1"] = &api.Sandbox{ID: "sb1"}
	stop := errors.New("stop")
	if err := cl.WatchDir(context.Background(), "sb1", "/root", func(api.FileEvent) error { return stop }); err != stop {
		t.Errorf("WatchDir = %v, want fn's error", err)
	}

	// The server ending the stream is an error.
	f, cl = newFakeSandboxes(t)
	f.boxes["sb1"] = &api.Sandbox{ID: "sb1"}
	close(f.watch)
	err := cl.WatchDir(context.Background(), "sb1", "/root", func(api.FileEvent) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "the server ended the stream") {
		t.Errorf("WatchDir = %v, want the stream's end", err)
	}
}

func TestWriteFileStreamsFromFile(t *testing.T) {
	f, cl := newFakeSandboxes(t)
	f.boxes["sb1"] = &api.Sandbox{ID: "sb1"}
	p := writeModule(t, strings.Repeat("0123456789", 100_000))
	file, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	info, err := cl.WriteFile(context.Background(), "sb1", "/root/big", 0o644, file)
	if err != nil || info.Size != 1_000_000 {
		t.Errorf("WriteFile = %+v, %v", info, err)
	}
}
