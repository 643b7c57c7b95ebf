package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/sandbox"
	"github.com/frostdev/frost/internal/sandbox/sandboxtest"
	"github.com/frostdev/frost/internal/snapshot"
)

// Unit tests of the manager's logic against sandboxtest's fake runtime.
// Real sandboxes (runsc) are tested in internal/runtime/gvisor and e2e.

type testEnv struct {
	m     *sandbox.Manager
	reg   registry.Store
	rt    *sandboxtest.Runtime
	snaps *snapshot.Store
	dir   string
	now   time.Time
	mu    sync.Mutex
}

func newEnv(t *testing.T, opts ...func(*sandbox.Config)) *testEnv {
	t.Helper()
	e := &testEnv{rt: sandboxtest.New(), now: time.Unix(1_800_000_000, 0)}
	clock := func(c *sandbox.Config) { c.Now = func() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.now } }
	fm := sandboxtest.NewManager(t, e.rt, append([]func(*sandbox.Config){clock}, opts...)...)
	e.m, e.reg, e.snaps, e.dir = fm.Manager, fm.Reg, fm.Snaps, fm.Dir
	return e
}

func (e *testEnv) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb, err := e.m.Create(ctx, api.SandboxCreateRequest{Env: map[string]string{"K": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if sb.State != "running" || sb.Boot != "cold" || len(sb.ID) != 20 || !sandbox.ValidID(sb.ID) {
		t.Fatalf("created %+v", sb)
	}
	var out bytes.Buffer
	if code, _, err := e.m.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"echo", "x"}}, sandbox.Stdio{Out: &out}); err != nil || code != 0 {
		t.Fatal(code, err)
	}
	if out.String() != "ran echo x env=v cwd=/root" {
		t.Fatalf("exec saw %q: the sandbox's env and the default cwd must reach the command", out.String())
	}
	if _, err := e.m.WriteFile(ctx, sb.ID, "/root/a.txt", 0, strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	p, err := e.m.Pause(ctx, sb.ID)
	if err != nil || p.State != "paused" || p.Snapshot == nil {
		t.Fatalf("pause: %+v %v", p, err)
	}
	if len(e.rt.Live) != 0 {
		t.Fatal("a paused sandbox still has a box")
	}
	// Using a paused sandbox resumes it, with its files.
	out.Reset()
	if err := e.m.ReadFile(ctx, sb.ID, "/root/a.txt", &out); err != nil || out.String() != "hello" {
		t.Fatalf("read after pause: %q %v", out.String(), err)
	}
	g, _ := e.m.Get(ctx, sb.ID)
	if g.State != "running" || g.Boot != "resume" || g.Pauses != 1 {
		t.Fatalf("after use: %+v", g)
	}
	// The spent checkpoint is gone from the store (removed beside the
	// resume's answer).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, _, _, err := e.snaps.Stat(p.Snapshot.Release)
		if errors.Is(err, snapshot.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint still stored 10s after resume: %v", err)
		}
	}
	if err := e.m.ReadFile(ctx, sb.ID, "/root/missing", io.Discard); !errors.Is(err, sandbox.ErrNoFile) {
		t.Fatalf("missing file: %v", err)
	}
	if err := e.m.Kill(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Get(ctx, sb.ID); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("after kill: %v", err)
	}
	if _, _, err := e.m.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"true"}}, sandbox.Stdio{}); err == nil {
		t.Fatal("exec in a killed sandbox succeeded")
	}
}

// TestCorruptCheckpointBootsCold: a checkpoint with a flipped byte is
// never restored: quarantined, and the sandbox boots afresh.
func TestCorruptCheckpointBootsCold(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb, _ := e.m.Create(ctx, api.SandboxCreateRequest{})
	e.m.WriteFile(ctx, sb.ID, "/root/a.txt", 0, strings.NewReader("hello"))
	p, err := e.m.Pause(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.dir, "snaps", p.Snapshot.Release)
	entries, _ := os.ReadDir(dir)
	for _, en := range entries {
		if en.Name() != "manifest.json" {
			path := filepath.Join(dir, en.Name())
			b, _ := os.ReadFile(path)
			b[len(b)/2] ^= 1
			os.WriteFile(path, b, 0o600)
		}
	}
	r, err := e.m.Resume(ctx, sb.ID)
	if err != nil || r.Boot != "cold" || e.m.Fallback(sb.ID) != "corrupt" {
		t.Fatalf("resume of a corrupt checkpoint: %+v %v (fallback %q)", r, err, e.m.Fallback(sb.ID))
	}
	if err := e.m.ReadFile(ctx, sb.ID, "/root/a.txt", io.Discard); !errors.Is(err, sandbox.ErrNoFile) {
		t.Fatalf("a file from the corrupt checkpoint came back: %v", err)
	}
	if q, _ := os.ReadDir(filepath.Join(e.dir, "snaps", "quarantine")); len(q) != 1 {
		t.Fatalf("%d quarantined, want 1", len(q))
	}
}

// TestPauseInterruptsExec: a pause or a kill does not wait for a command
// that may never end: the call ends with ErrGone; a pause detaches it (the
// command runs on, checkpointed with the sandbox), a kill stops it; a
// command issued while the sandbox is paused resumes it.
func TestPauseInterruptsExec(t *testing.T) {
	for _, op := range []string{"pause", "kill"} {
		t.Run(op, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			sb, _ := e.m.Create(ctx, api.SandboxCreateRequest{})
			box := e.rt.Live[sb.ID]
			box.Block = make(chan struct{}) // never closed: the command runs for ever
			execDone := make(chan error, 1)
			go func() {
				_, _, err := e.m.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"server"}}, sandbox.Stdio{})
				execDone <- err
			}()
			// The command is in flight once it holds the sandbox.
			for e.m.Busy(sb.ID) == 0 {
				time.Sleep(time.Millisecond)
			}
			done := make(chan error, 1)
			go func() {
				var err error
				if op == "pause" {
					_, err = e.m.Pause(ctx, sb.ID)
				} else {
					err = e.m.Kill(ctx, sb.ID)
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("%s waited for a command that never ends", op)
			}
			if err := <-execDone; !errors.Is(err, sandbox.ErrGone) {
				t.Fatalf("the interrupted command: %v, want ErrGone", err)
			}
			if d, s := box.Detached.Load(), box.Stopped.Load(); op == "pause" && (d != 1 || s != 0) || op == "kill" && (d != 0 || s != 1) {
				t.Fatalf("after a %s: %d commands detached, %d stopped; want the command %s", op, d, s, map[string]string{"pause": "detached", "kill": "stopped"}[op])
			}
			if op == "kill" {
				return
			}
			box.Block = nil
			if code, _, err := e.m.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"true"}}, sandbox.Stdio{}); err != nil || code != 0 {
				t.Fatalf("exec in a paused sandbox: %d %v", code, err)
			}
		})
	}
}

// TestTimeoutsAndClose: past its timeout a sandbox is paused (or killed);
// Close pauses every running one.
func TestTimeoutsAndClose(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p, _ := e.m.Create(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Minute)})
	k, _ := e.m.Create(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Minute), OnTimeout: "kill"})
	long, _ := e.m.Create(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Hour)})
	e.m.Expire(ctx)
	if g, _ := e.m.Get(ctx, p.ID); g.State != "running" {
		t.Fatal("paused before its timeout")
	}
	e.advance(2 * time.Minute)
	e.m.Expire(ctx)
	if g, _ := e.m.Get(ctx, p.ID); g.State != "paused" {
		t.Fatalf("past its timeout: %s, want paused", g.State)
	}
	if _, err := e.m.Get(ctx, k.ID); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("on_timeout kill: %v", err)
	}
	if g, _ := e.m.Get(ctx, long.ID); g.State != "running" {
		t.Fatal("a sandbox with time left was stopped")
	}
	if err := e.m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if g, _ := e.m.Get(ctx, long.ID); g.State != "paused" {
		t.Fatalf("after Close: %s, want paused", g.State)
	}
}

// TestCreateRefusals: bad requests are refused with what to do.
func TestCreateRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for name, req := range map[string]api.SandboxCreateRequest{
		"unknown template": {Template: "nope"},
		"tiny memory":      {MemoryBytes: 1 << 20},
		"negative cpus":    {CPUs: -1},
		"few pids":         {Pids: 2},
		"bad on_timeout":   {OnTimeout: "explode"},
		"bad env":          {Env: map[string]string{"A=B": "x"}},
		"huge timeout":     {Timeout: api.Duration(100 * 24 * time.Hour)},
	} {
		if _, err := e.m.Create(ctx, req); !errors.Is(err, sandbox.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if list, _ := e.m.List(ctx); len(list) != 0 {
		t.Fatalf("refused creates left %d sandboxes", len(list))
	}
	if _, err := e.m.Get(ctx, "../../etc"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("odd ID: %v", err)
	}
	_ = registry.SandboxRunning
}

// TestIDTag: in a cluster every sandbox ID starts with its node's tag, so
// that PORT-ID.DOMAIN names the node; a bad tag is refused.
func TestIDTag(t *testing.T) {
	e := newEnv(t, func(c *sandbox.Config) { c.IDTag = "ab12" })
	for i := 0; i < 5; i++ {
		sb, err := e.m.Create(context.Background(), api.SandboxCreateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(sb.ID) != 20 || !strings.HasPrefix(sb.ID, "ab12") || !sandbox.ValidID(sb.ID) {
			t.Fatalf("ID %q: want 20 characters starting with the tag", sb.ID)
		}
	}
	cfg := sandbox.DefaultConfig()
	cfg.Dir, cfg.Key, cfg.IDTag = t.TempDir(), []byte("0123456789abcdef0123456789abcdef"), "AB-1"
	if _, err := sandbox.New(cfg, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "ID tag") {
		t.Errorf("bad tag: %v", err)
	}
}

// TestExpireOnlyOwn: in a cluster the registry is shared; a node times
// out only the sandboxes whose IDs carry its tag, never another node's.
func TestExpireOnlyOwn(t *testing.T) {
	e := newEnv(t, func(c *sandbox.Config) { c.IDTag = "ab12" })
	ctx := context.Background()
	mine, err := e.m.Create(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Minute), OnTimeout: "kill"})
	if err != nil {
		t.Fatal(err)
	}
	other := "cd34" + strings.Repeat("x", 16)
	if _, err := e.reg.UpdateSandbox(ctx, other, true, func(r *registry.Sandbox) error {
		*r = registry.Sandbox{ID: other, Template: "base", State: registry.SandboxRunning, OnTimeout: "kill", ExpiresAt: e.now.Add(time.Minute)}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.advance(2 * time.Minute)
	e.m.Expire(ctx)
	if _, err := e.reg.GetSandbox(ctx, mine.ID); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("this node's expired sandbox: %v, want killed", err)
	}
	if r, err := e.reg.GetSandbox(ctx, other); err != nil || r.State != registry.SandboxRunning {
		t.Errorf("another node's sandbox: %+v %v, want left running", r, err)
	}
}

// TestOtherNodesSandbox: a node does not run a copy of another node's
// sandbox (whose checkpoint is on that node): it says where it belongs.
func TestOtherNodesSandbox(t *testing.T) {
	e := newEnv(t, func(c *sandbox.Config) { c.IDTag = "ab12" })
	ctx := context.Background()
	other := "cd34" + strings.Repeat("y", 16)
	if _, err := e.reg.UpdateSandbox(ctx, other, true, func(r *registry.Sandbox) error {
		*r = registry.Sandbox{ID: other, Template: "base", State: registry.SandboxPaused, Snapshot: "k", OnTimeout: "pause", ExpiresAt: e.now.Add(time.Hour)}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.m.Exec(ctx, other, api.ExecRequest{Cmd: []string{"true"}}, sandbox.Stdio{}); !errors.Is(err, sandbox.ErrElsewhere) {
		t.Errorf("exec in another node's sandbox: %v, want ErrElsewhere", err)
	}
	if _, err := e.m.Resume(ctx, other); !errors.Is(err, sandbox.ErrElsewhere) {
		t.Errorf("resume of another node's sandbox: %v", err)
	}
	if len(e.rt.Live) != 0 {
		t.Errorf("a copy was booted: %v", e.rt.Live)
	}
}

// TestPublicPorts: whether a sandbox's ports need its token is read once
// and kept; a request for a sandbox that does not exist leaves nothing
// behind.
func TestPublicPorts(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pub, _ := e.m.Create(ctx, api.SandboxCreateRequest{PublicPorts: true})
	priv, _ := e.m.Create(ctx, api.SandboxCreateRequest{})
	for range 2 {
		if !e.m.PublicPorts(ctx, pub.ID) || e.m.PublicPorts(ctx, priv.ID) {
			t.Fatal("public ports answered wrong")
		}
	}
	nobody := strings.Repeat("z", 20)
	if e.m.PublicPorts(ctx, nobody) || e.m.Known(nobody) {
		t.Error("a sandbox that does not exist is public, or remembered")
	}
}

// TestPortsKeepAlive: requests to a sandbox's port that can be sent again
// share a kept-alive connection; the rest get one each (a server closing
// an idle connection as a POST goes out on it would fail the POST); a
// pause closes the idle ones, and the next request resumes the sandbox on
// a new connection.
func TestPortsKeepAlive(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.rt.Port = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path) })
	sb, err := e.m.Create(ctx, api.SandboxCreateRequest{PublicPorts: true})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(e.m.Ports("localhost", http.NotFoundHandler()))
	defer front.Close()
	send := func(method string, body io.Reader) {
		t.Helper()
		req, _ := http.NewRequest(method, front.URL+"/x", body)
		req.Host = "8000-" + sb.ID + ".localhost"
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := method + " /x"; resp.StatusCode != 200 || method != "HEAD" && string(b) != want {
			t.Fatalf("%s: %d %q", method, resp.StatusCode, b)
		}
	}
	for range 5 {
		send("GET", nil)
		send("HEAD", nil)
	}
	if n := e.rt.Dials.Load(); n != 1 {
		t.Fatalf("10 GETs and HEADs dialled the sandbox %d times, want 1 (kept alive)", n)
	}
	for range 3 {
		send("POST", strings.NewReader("body"))
	}
	if n := e.rt.Dials.Load(); n != 4 {
		t.Fatalf("3 POSTs made %d connections, want 3 of their own", n-1)
	}
	if _, err := e.m.Pause(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	send("GET", nil) // resumes it: a new connection, not the paused box's
	if n := e.rt.Dials.Load(); n != 5 {
		t.Fatalf("the GET after the pause made %d connections, want 1", n-4)
	}
	if len(e.rt.Live) != 1 {
		t.Fatal("the request did not resume the sandbox")
	}
}

// TestDialEndsOnPause: a connection into a sandbox ends when the sandbox
// is paused or killed (its box goes without a FIN: nothing else would
// end it).
func TestDialEndsOnPause(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.rt.Port = http.NotFoundHandler()
	sb, _ := e.m.Create(ctx, api.SandboxCreateRequest{})
	for _, stop := range []func() error{
		func() error { _, err := e.m.Pause(ctx, sb.ID); return err },
		func() error { return e.m.Kill(ctx, sb.ID) },
	} {
		c, err := e.m.Dial(ctx, sb.ID, 8000)
		if err != nil {
			t.Fatal(err)
		}
		read := make(chan error, 1)
		go func() { _, err := c.Read(make([]byte, 1)); read <- err }()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-read:
			if err == nil {
				t.Fatal("read data from a stopped sandbox")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a connection into a stopped sandbox is still open")
		}
		c.Close()
	}
}

// TestSandboxDies: a box the host ends on its own (out of memory) is told
// from a call that failed: the call answers ErrDied saying why, and the
// sandbox's next use boots it afresh (its state is lost), saying so; a
// pause of a dead box says the same.
func TestSandboxDies(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb, err := e.m.Create(ctx, api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.WriteFile(ctx, sb.ID, "/root/kept", 0, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	e.rt.Live[sb.ID].Die("ran out of memory (its limit, 512 MiB)")
	_, _, err = e.m.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"true"}}, sandbox.Stdio{})
	if !errors.Is(err, sandbox.ErrDied) || !strings.Contains(err.Error(), "ran out of memory") || !strings.Contains(err.Error(), "boots it afresh") {
		t.Fatalf("exec in a dead box: %v", err)
	}
	// Buried beside the answer: soon the next use boots it afresh.
	var out bytes.Buffer
	for i := 0; ; i++ {
		out.Reset()
		_, _, err = e.m.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"echo", "again"}}, sandbox.Stdio{Out: &out})
		if err == nil || i == 100 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || !strings.HasPrefix(out.String(), "ran echo again") {
		t.Fatalf("the next exec: %q %v", out.String(), err)
	}
	if n := e.m.Deaths(); n != 1 {
		t.Errorf("deaths counted: %d, want 1", n)
	}
	if got := e.m.Fallback(sb.ID); !strings.Contains(got, "died: ran out of memory") {
		t.Errorf("fallback %q", got)
	}
	if err := e.m.ReadFile(ctx, sb.ID, "/root/kept", &out); !errors.Is(err, sandbox.ErrNoFile) {
		t.Errorf("its files after it died: %v", err)
	}
	// A pause of a dead box.
	e.rt.Live[sb.ID].Die("ran out of memory")
	if _, err := e.m.Pause(ctx, sb.ID); !errors.Is(err, sandbox.ErrDied) {
		t.Fatalf("pause of a dead box: %v", err)
	}
	if _, _, err := e.m.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"true"}}, sandbox.Stdio{}); err != nil {
		t.Fatalf("the exec after: %v", err)
	}
	if got := e.m.Fallback(sb.ID); !strings.Contains(got, "died: ran out of memory") {
		t.Errorf("fallback after the pause %q", got)
	}
	// One that dies and then times out is paused, with nothing to
	// restore, once: not tried again at every pass.
	e.rt.Live[sb.ID].Die("ran out of memory")
	if _, _, err := e.m.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"true"}}, sandbox.Stdio{}); !errors.Is(err, sandbox.ErrDied) {
		t.Fatal(err)
	}
	for i := 0; i < 100 && e.rt.Running(sb.ID); i++ {
		time.Sleep(10 * time.Millisecond) // buried: its box killed
	}
	e.advance(time.Hour)
	e.m.Expire(ctx)
	got, err := e.m.Get(ctx, sb.ID)
	if err != nil || got.State != api.SandboxPaused || got.Snapshot != nil {
		t.Fatalf("a dead sandbox past its timeout: %+v %v", got, err)
	}
	if _, _, err := e.m.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"true"}}, sandbox.Stdio{}); err != nil {
		t.Fatalf("its next use: %v", err)
	}
	if got, _ := e.m.Get(ctx, sb.ID); got.State != api.SandboxRunning || got.Boot != "cold" {
		t.Fatalf("after its next use: %+v", got)
	}
}
