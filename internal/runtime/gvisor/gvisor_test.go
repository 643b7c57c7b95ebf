package gvisor

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/testbox"
)

// newRuntime returns a runtime on real runsc, or skips saying why runsc
// cannot run here.
func newRuntime(t *testing.T) (*Runtime, string) {
	t.Helper()
	env := testbox.Need(t)
	dir := t.TempDir()
	r, err := New(Config{Runsc: env.Runsc, StateDir: dir, Agent: env.Agent})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testbox.Cleanup(env.Runsc, filepath.Join(dir, "state"))
		r.Close()
	})
	return r, env.RootFS
}

func run(t *testing.T, b runtime.Box, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var in io.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
	}
	code, err := b.Exec(ctx, runtime.Cmd{Args: args, Cwd: "/root", Stdin: in, Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("exec %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func TestBootExecCheckpointRestore(t *testing.T) {
	r, rootfs := newRuntime(t)
	ctx := context.Background()
	spec := runtime.BoxSpec{ID: "t1box", RootFS: rootfs, Limits: registry.SandboxLimits{MemoryBytes: 512 << 20, CPUs: 1, Pids: 256}, Env: map[string]string{"GREETING": "hi"}}
	b, err := r.Boot(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Kill(ctx)
	var outb, errb bytes.Buffer
	code, err := b.Exec(ctx, runtime.Cmd{Args: []string{"bash", "-c", `echo "$GREETING out from $PWD"; echo err >&2; exit 3`}, Cwd: "/tmp", Env: map[string]string{"GREETING": "hi"}, Stdout: &outb, Stderr: &errb})
	if err != nil || outb.String() != "hi out from /tmp\n" || errb.String() != "err\n" || code != 3 {
		t.Fatalf("exec: %q %q %d %v", outb.String(), errb.String(), code, err)
	}
	if out, _, _ := run(t, b, "piped input", "cat"); out != "piped input" {
		t.Fatalf("stdin: %q", out)
	}
	// A file and a background process with state.
	data := strings.Repeat("0123456789abcdef", 4096)
	if _, e, code := run(t, b, data, "/.frost/frost", "agent", "write", "/root/work/data.txt"); code != 0 {
		t.Fatalf("agent write: %d %s", code, e)
	}
	if _, e, code := run(t, b, "", "bash", "-c", "nohup python3 -c 'import time\ni=0\nwhile True:\n    i+=1\n    open(\"/tmp/count\",\"w\").write(str(i))\n    time.sleep(0.05)' </dev/null >/dev/null 2>&1 &"); code != 0 {
		t.Fatalf("background: %d %s", code, e)
	}
	time.Sleep(300 * time.Millisecond)
	img := t.TempDir()
	start := time.Now()
	if err := b.Checkpoint(ctx, img); err != nil {
		t.Fatal(err)
	}
	t.Logf("checkpoint in %v", time.Since(start))
	entries, _ := os.ReadDir(img)
	if len(entries) == 0 {
		t.Fatal("checkpoint wrote no files")
	}
	b2, err := r.Restore(ctx, spec, img)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Kill(ctx)
	t.Logf("checkpoint+restore in %v", time.Since(start))
	out, _, _ := run(t, b2, "", "/.frost/frost", "agent", "read", "/root/work/data.txt")
	if out != data {
		t.Fatalf("after restore the file has %d bytes, want %d", len(out), len(data))
	}
	c1, _, _ := run(t, b2, "", "cat", "/tmp/count")
	time.Sleep(300 * time.Millisecond)
	c2, _, _ := run(t, b2, "", "cat", "/tmp/count")
	if c1 == "" || c1 == c2 {
		t.Fatalf("the background process is not running after restore: %q then %q", c1, c2)
	}
	// Ports: a server inside, reached through Dial.
	if _, e, code := run(t, b2, "", "bash", "-c", "nohup python3 -m http.server 8000 --directory /root/work >/dev/null 2>&1 &"); code != 0 {
		t.Fatal(e)
	}
	var got string
	for i := 0; i < 50 && !strings.Contains(got, "0123"); i++ {
		time.Sleep(100 * time.Millisecond)
		c, err := b2.Dial(ctx, 8000)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /data.txt HTTP/1.0\r\n\r\n")
		body, _ := io.ReadAll(c)
		c.Close()
		got = string(body)
	}
	if !strings.Contains(got, "200") || !strings.Contains(got, data[:64]) {
		t.Fatalf("port 8000 answered %q", got[:min(len(got), 200)])
	}
}
