package e2e

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
)

// TestSandboxDiskFull: a sandbox's files are its memory. Filling its disk
// used to fill its memory until the host's OOM killer ended the whole
// sandbox (every file and process lost, the call answered 500, the
// sandbox still listed as running). Now its root file system holds at
// most half its memory, /tmp a quarter: a command writing past them gets
// ENOSPC, an upload 507 no_space, and the sandbox, its files and its
// processes carry on.
func TestSandboxDiskFull(t *testing.T) {
	_, c := startSandboxServer(t, "")
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{MemoryBytes: 256 << 20, Timeout: api.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, e, code := sbExec(t, c, sb.ID, "", "sh", "-c", "echo kept > /root/kept; nohup sleep 1000 >/dev/null 2>&1 &"); code != 0 {
		t.Fatal(e)
	}
	for _, dir := range []string{"/tmp", "/root"} { // a quarter of its memory, half
		if _, e, code := sbExec(t, c, sb.ID, "", "sh", "-c", "head -c 300000000 /dev/zero > "+dir+"/fill"); code == 0 || !strings.Contains(e, "No space left on device") {
			t.Fatalf("300 MB into %s of a 256 MiB sandbox: exit %d %q", dir, code, e)
		}
	}
	_, err = c.WriteFile(ctx, sb.ID, "/root/more", 0o644, bytes.NewReader(make([]byte, 8<<20)))
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusInsufficientStorage || se.Err.Code != api.CodeNoSpace || !strings.Contains(se.Err.Message, "no space left on device") {
		t.Fatalf("an upload to a full disk: %v", err)
	}
	if out, e, code := sbExec(t, c, sb.ID, "", "sh", "-c", "rm /root/fill; cat /root/kept; grep -l '^sleep$' /proc/[0-9]*/comm | wc -l"); code != 0 || out != "kept\n1\n" {
		t.Fatalf("after the disk filled: exit %d %q %q", code, out, e)
	}
	if _, err := c.WriteFile(ctx, sb.ID, "/root/more", 0o644, bytes.NewReader(make([]byte, 8<<20))); err != nil {
		t.Fatalf("an upload once there is room: %v", err)
	}
	if got, err := c.Sandbox(ctx, sb.ID); err != nil || got.State != api.SandboxRunning {
		t.Fatalf("the sandbox after: %+v %v", got, err)
	}
}

// TestSandboxDiesOfMemory: a process that takes more than a sandbox's
// memory makes the host's OOM killer end the whole sandbox (gVisor's
// processes are one host process). The call that finds it dead answers
// 410 died, saying it ran out of memory, not 500; the sandbox's next use
// boots it afresh (its files are lost), and it is listed as running.
func TestSandboxDiesOfMemory(t *testing.T) {
	s, c := startSandboxServer(t, "")
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{MemoryBytes: 256 << 20, Timeout: api.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, e, code := sbExec(t, c, sb.ID, "", "sh", "-c", "echo kept > /root/kept"); code != 0 {
		t.Fatal(e)
	}
	var out, errb bytes.Buffer
	_, err = c.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"python3", "-c", "b = bytearray(400 << 20); b[::4096] = b'x' * (len(b) // 4096)"}}, nil, &out, &errb)
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusGone || se.Err.Code != api.CodeDied || !strings.Contains(se.Err.Message, "ran out of memory") {
		t.Fatalf("400 MB held in a 256 MiB sandbox: %v", err)
	}
	// Its next use boots it afresh, soon (the dead box is let go beside
	// the answer).
	var o string
	var code int
	for i := 0; i < 50; i++ {
		var e error
		var ob, eb bytes.Buffer
		code, e = c.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"sh", "-c", "cat /root/kept 2>/dev/null; echo up"}}, nil, &ob, &eb)
		if o = ob.String(); e == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != 0 || o != "up\n" {
		t.Fatalf("after it died: exit %d %q, want a fresh sandbox", code, o)
	}
	if got, err := c.Sandbox(ctx, sb.ID); err != nil || got.State != api.SandboxRunning || got.Boot != "cold" {
		t.Fatalf("the sandbox after: %+v %v", got, err)
	}
	if resp, metrics := s.apiReq("GET", "/metrics", "", nil); resp.StatusCode != 200 || !strings.Contains(metrics, "frost_sandbox_deaths_total 1\n") {
		t.Errorf("/metrics: %d, no frost_sandbox_deaths_total 1", resp.StatusCode)
	}
}
