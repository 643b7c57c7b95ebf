package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testbox"
)

// startSandboxServer starts frost server with agent sandboxes enabled
// (real runsc), or skips where runsc cannot run.
func startSandboxServer(t testing.TB, data string, extra ...string) (*server, *api.Client) {
	t.Helper()
	env := testbox.Need(t)
	if data == "" {
		data = t.TempDir()
	}
	// Registered before the server's own cleanup, so it runs after the
	// server is killed: runsc's sandboxes and mounts outlive a SIGKILL.
	t.Cleanup(func() { testbox.Cleanup(env.Runsc, filepath.Join(data, "sandboxes", "runsc", "state")) })
	s := startServer(t, data, append([]string{"--runsc", env.Runsc, "--rootfs", env.RootFS}, extra...)...)
	return s, api.NewClient("http://"+s.api, s.token)
}

// sbExec runs a command and returns stdout, stderr and the exit code.
func sbExec(t testing.TB, c *api.Client, id, stdin string, cmd ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	var in io.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, err := c.Exec(ctx, id, api.ExecRequest{Cmd: cmd}, in, &out, &errb)
	if err != nil {
		t.Fatalf("exec %v: %v (stderr %q)", cmd, err, errb.String())
	}
	return out.String(), errb.String(), code
}

// portGet requests a sandbox port through Frost's HTTP listener.
func portGet(s *server, id string, port int, tok, path string) (int, string) {
	req, _ := http.NewRequest("GET", "http://"+s.http+path, nil)
	req.Host = fmt.Sprintf("%d-%s.localhost", port, id)
	if tok != "" {
		req.Header.Set("X-Frost-Sandbox-Token", tok)
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitPort requests a sandbox port (portGet) until it answers 200, for at
// most 10 s, and returns the last answer: for a server just started in
// the sandbox.
func waitPort(s *server, id string, port int, tok, path string) (int, string) {
	var status int
	var body string
	for range 100 {
		if status, body = portGet(s, id, port, tok, path); status == 200 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return status, body
}

// TestSandboxLifecycle: a real gVisor sandbox over the real binary —
// exec with streaming and stdin, files byte for byte, a port with and
// without its token, pause (state and memory gone) → resume with files and
// a running process intact, auto-resume on traffic, a server restart that
// loses nothing, and kill.
func TestSandboxLifecycle(t *testing.T) {
	data := t.TempDir()
	s, c := startSandboxServer(t, data)
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Env: map[string]string{"GREETING": "hi"}, Timeout: api.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if sb.State != "running" || sb.Boot != "cold" || sb.Token == "" {
		t.Fatalf("created: %+v", sb)
	}
	out, errs, code := sbExec(t, c, sb.ID, "", "bash", "-c", `echo "$GREETING from $(hostname)"; echo to-stderr >&2; exit 5`)
	if out != "hi from sandbox\n" || errs != "to-stderr\n" || code != 5 {
		t.Fatalf("exec: %q %q %d", out, errs, code)
	}
	if out, _, _ := sbExec(t, c, sb.ID, "through stdin", "tr", "a-z", "A-Z"); out != "THROUGH STDIN" {
		t.Fatalf("stdin: %q", out)
	}

	// Files: 3 MiB of random bytes, nested directories, byte for byte.
	blob := make([]byte, 3<<20)
	rand.Read(blob)
	info, err := c.WriteFile(ctx, sb.ID, "/root/project/data/blob.bin", 0o600, bytes.NewReader(blob))
	if err != nil || info.Size != int64(len(blob)) || info.Mode != "0600" {
		t.Fatalf("write: %+v %v", info, err)
	}
	for i := 0; i < 20; i++ {
		if _, err := c.WriteFile(ctx, sb.ID, fmt.Sprintf("/root/project/src/f%02d.txt", i), 0, strings.NewReader(strings.Repeat(fmt.Sprint(i), 100+i))); err != nil {
			t.Fatal(err)
		}
	}
	var got bytes.Buffer
	if err := c.ReadFile(ctx, sb.ID, "/root/project/data/blob.bin", &got); err != nil || !bytes.Equal(got.Bytes(), blob) {
		t.Fatalf("read back %d bytes, %v", got.Len(), err)
	}
	if _, err := c.StatFile(ctx, sb.ID, "/root/nope"); !isStatus(err, 404) {
		t.Fatalf("stat of a missing file: %v, want 404", err)
	}
	// A git repo, as an agent would make.
	if _, e, code := sbExec(t, c, sb.ID, "", "bash", "-c", "cd /root/project && git init -q && git add -A && git -c user.email=a@b -c user.name=a commit -qm init && git rev-parse HEAD"); code != 0 {
		t.Fatalf("git: %s", e)
	}
	head, _, _ := sbExec(t, c, sb.ID, "", "git", "-C", "/root/project", "rev-parse", "HEAD")

	// A server in the background, and a counter process with state (it
	// replaces its file by a rename: a reader never catches it truncated).
	sbExec(t, c, sb.ID, "", "bash", "-c", "cd /root/project/src && nohup python3 -m http.server 8000 >/tmp/http.log 2>&1 &")
	sbExec(t, c, sb.ID, "", "bash", "-c", "nohup python3 -c 'import os, time\ni=0\nwhile True:\n    i+=1\n    open(\"/tmp/count.new\",\"w\").write(str(i))\n    os.replace(\"/tmp/count.new\", \"/tmp/count\")\n    time.sleep(0.05)' >/dev/null 2>&1 &")
	status, body := waitPort(s, sb.ID, 8000, sb.Token, "/f07.txt")
	if status != 200 || body != strings.Repeat("7", 107) {
		t.Fatalf("port 8000 with the token: %d %q", status, body)
	}
	if status, _ := portGet(s, sb.ID, 8000, "", "/f07.txt"); status != 401 {
		t.Fatalf("port without a token: %d, want 401", status)
	}
	if status, _ := portGet(s, sb.ID, 8000, "AAAAAAAAAAA.BBBB", "/f07.txt"); status != 401 {
		t.Fatalf("port with a forged token: %d, want 401", status)
	}

	// Pause: checkpointed, nothing left running.
	p, err := c.PauseSandbox(ctx, sb.ID)
	if err != nil || p.State != "paused" || p.Snapshot == nil || p.Snapshot.Size == 0 {
		t.Fatalf("pause: %+v %v", p, err)
	}
	// Resume: every file byte for byte, git intact, processes running.
	r, err := c.ResumeSandbox(ctx, sb.ID)
	if err != nil || r.State != "running" || r.Boot != "resume" {
		t.Fatalf("resume: %+v %v", r, err)
	}
	got.Reset()
	if err := c.ReadFile(ctx, sb.ID, "/root/project/data/blob.bin", &got); err != nil || sha256.Sum256(got.Bytes()) != sha256.Sum256(blob) {
		t.Fatalf("after resume: %d bytes, %v", got.Len(), err)
	}
	list, err := c.ListDir(ctx, sb.ID, "/root/project/src")
	if err != nil || len(list) != 20 {
		t.Fatalf("after resume: %d files in src, %v", len(list), err)
	}
	if h, _, _ := sbExec(t, c, sb.ID, "", "git", "-C", "/root/project", "rev-parse", "HEAD"); h != head {
		t.Fatalf("git HEAD %q after resume, was %q", h, head)
	}
	c1, _, _ := sbExec(t, c, sb.ID, "", "cat", "/tmp/count")
	time.Sleep(300 * time.Millisecond)
	c2, _, _ := sbExec(t, c, sb.ID, "", "cat", "/tmp/count")
	if c1 == "" || c1 == c2 {
		t.Fatalf("the background process does not run after resume: %q then %q", c1, c2)
	}
	if status, body := portGet(s, sb.ID, 8000, sb.Token, "/f07.txt"); status != 200 || body != strings.Repeat("7", 107) {
		t.Fatalf("port 8000 after resume: %d %q", status, body)
	}

	// Traffic to a paused sandbox resumes it.
	if _, err := c.PauseSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if status, body := portGet(s, sb.ID, 8000, sb.Token, "/f03.txt"); status != 200 || body != strings.Repeat("3", 103) {
		t.Fatalf("port of a paused sandbox: %d %q", status, body)
	}
	if g, _ := c.Sandbox(ctx, sb.ID); g.State != "running" {
		t.Fatalf("after traffic the sandbox is %s, want running", g.State)
	}

	// A restart pauses it at shutdown; the next server resumes it on
	// demand with everything there.
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	s2, c2c := startSandboxServer(t, data)
	if g, err := c2c.Sandbox(ctx, sb.ID); err != nil || g.State != "paused" {
		t.Fatalf("after restart: %+v %v", g, err)
	}
	got.Reset()
	if err := c2c.ReadFile(ctx, sb.ID, "/root/project/data/blob.bin", &got); err != nil || !bytes.Equal(got.Bytes(), blob) {
		t.Fatalf("after restart: %d bytes, %v", got.Len(), err)
	}
	if status, _ := portGet(s2, sb.ID, 8000, sb.Token, "/f07.txt"); status != 200 {
		t.Fatalf("port after restart with the old token: %d", status)
	}

	// Kill: gone, and its checkpoint with it.
	if err := c2c.KillSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c2c.Sandbox(ctx, sb.ID); !isStatus(err, 404) {
		t.Fatalf("after kill: %v, want 404", err)
	}
}

// TestSandboxLimits: a fork bomb and a memory bomb inside a sandbox are
// contained; the sandbox (or at least the server and other sandboxes)
// keep working.
func TestSandboxLimits(t *testing.T) {
	_, c := startSandboxServer(t, "")
	ctx := context.Background()
	bystander, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{MemoryBytes: 256 << 20, Pids: 64, Timeout: api.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// Memory: a process that allocates 1 GiB under a 256 MiB limit dies.
	_, _, code := sbExecTimeout(t, c, sb.ID, 2*time.Minute, "python3", "-c", "x = bytearray(1 << 30); x[::4096] = b'1' * len(x[::4096]); print('survived')")
	if code == 0 {
		t.Fatal("a 1 GiB allocation succeeded under a 256 MiB limit")
	}
	// Processes: a fork bomb stalls at the limit instead of taking the host.
	_, _, _ = sbExecTimeout(t, c, sb.ID, 10*time.Second, "bash", "-c", ":(){ :|:& };:")
	// The bystander is unaffected.
	if out, _, code := sbExec(t, c, bystander.ID, "", "echo", "fine"); out != "fine\n" || code != 0 {
		t.Fatalf("bystander: %q %d", out, code)
	}
	// The bombed sandbox can still be killed, and a new one created.
	if err := c.KillSandbox(ctx, sb.ID); err != nil {
		t.Fatalf("kill the bombed sandbox: %v", err)
	}
	fresh, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if out, _, code := sbExec(t, c, fresh.ID, "", "echo", "ok"); out != "ok\n" || code != 0 {
		t.Fatalf("a sandbox after the bombs: %q %d", out, code)
	}
}

// sbExecTimeout runs a command with a per-command timeout; the command's
// own failure or timeout is not a test failure.
func sbExecTimeout(t *testing.T, c *api.Client, id string, d time.Duration, cmd ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
	defer cancel()
	code, err := c.Exec(ctx, id, api.ExecRequest{Cmd: cmd, Timeout: api.Duration(d)}, nil, &out, &errb)
	if err != nil && !errors.Is(err, api.ErrExecTimeout) {
		var se *api.StatusError
		if !errors.As(err, &se) {
			t.Fatalf("exec %v: %v", cmd, err)
		}
	}
	return out.String(), errb.String(), code
}

// isStatus reports whether err is a control API answer with that status.
func isStatus(err error, status int) bool {
	var se *api.StatusError
	return errors.As(err, &se) && se.Status == status
}

// TestSandboxBadCheckpointAndTimeout: a paused sandbox whose checkpoint
// was damaged on disk is never restored from it: it boots afresh from its
// template (and says so), the checkpoint is quarantined. A sandbox past
// its timeout is paused by the server, one that asked for it is killed.
func TestSandboxBadCheckpointAndTimeout(t *testing.T) {
	data := t.TempDir()
	_, c := startSandboxServer(t, data)
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteFile(ctx, sb.ID, "/root/kept.txt", 0, strings.NewReader("before")); err != nil {
		t.Fatal(err)
	}
	p, err := c.PauseSandbox(ctx, sb.ID)
	if err != nil || p.Snapshot == nil {
		t.Fatalf("pause: %+v %v", p, err)
	}
	// Flip one byte of the largest part of the checkpoint.
	dir := filepath.Join(data, "sandboxes", "snapshots", p.Snapshot.Release)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var biggest string
	var size int64
	for _, e := range entries {
		if fi, _ := e.Info(); fi != nil && e.Name() != "manifest.json" && fi.Size() > size {
			biggest, size = filepath.Join(dir, e.Name()), fi.Size()
		}
	}
	f, err := os.OpenFile(biggest, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, size/2)
	b[0] ^= 0x40
	f.WriteAt(b, size/2)
	f.Close()
	r, err := c.ResumeSandbox(ctx, sb.ID)
	if err != nil || r.State != "running" || r.Boot != "cold" {
		t.Fatalf("resume from a damaged checkpoint: %+v %v", r, err)
	}
	if _, err := c.StatFile(ctx, sb.ID, "/root/kept.txt"); !isStatus(err, 404) {
		t.Fatalf("a file from the damaged checkpoint is there: %v", err)
	}
	if q, _ := os.ReadDir(filepath.Join(data, "sandboxes", "snapshots", "quarantine")); len(q) != 1 {
		t.Fatalf("%d quarantined checkpoints, want 1", len(q))
	}

	// Timeouts.
	pauseMe, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	killMe, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Second), OnTimeout: "kill"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, perr := c.Sandbox(ctx, pauseMe.ID)
		_, kerr := c.Sandbox(ctx, killMe.ID)
		if perr == nil && p.State == "paused" && isStatus(kerr, 404) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after their timeout: %+v %v; killed one: %v", p, perr, kerr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSandboxSurvivesServerCrash: a server killed outright (no chance to
// pause anything) leaves its sandboxes running under runsc; the next
// server re-attaches them, with files and processes as they were.
func TestSandboxSurvivesServerCrash(t *testing.T) {
	data := t.TempDir()
	s, c := startSandboxServer(t, data)
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteFile(ctx, sb.ID, "/root/work.txt", 0, strings.NewReader("unsaved work")); err != nil {
		t.Fatal(err)
	}
	sbExec(t, c, sb.ID, "", "bash", "-c", "nohup python3 -c 'import os, time\ni=0\nwhile True:\n    i+=1\n    open(\"/tmp/count.new\",\"w\").write(str(i))\n    os.replace(\"/tmp/count.new\", \"/tmp/count\")\n    time.sleep(0.05)' >/dev/null 2>&1 &")
	s.kill() // SIGKILL: no shutdown, no pause
	s2, c2 := startSandboxServer(t, data)
	_ = s2
	g, err := c2.Sandbox(ctx, sb.ID)
	if err != nil || g.State != "running" || g.Boot != "reattach" {
		t.Fatalf("after the crash: %+v %v", g, err)
	}
	var got bytes.Buffer
	if err := c2.ReadFile(ctx, sb.ID, "/root/work.txt", &got); err != nil || got.String() != "unsaved work" {
		t.Fatalf("after the crash: %q %v", got.String(), err)
	}
	n1, _, _ := sbExec(t, c2, sb.ID, "", "cat", "/tmp/count")
	time.Sleep(300 * time.Millisecond)
	n2, _, _ := sbExec(t, c2, sb.ID, "", "cat", "/tmp/count")
	if n1 == "" || n1 == n2 {
		t.Fatalf("the process does not run after the crash: %q then %q", n1, n2)
	}
	// And it can still be paused and resumed by the new server.
	if _, err := c2.PauseSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if r, err := c2.ResumeSandbox(ctx, sb.ID); err != nil || r.Boot != "resume" {
		t.Fatalf("resume after re-attach: %+v %v", r, err)
	}
}
