package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
)

// run runs the agent and returns its stdout, stderr and exit code.
func run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a", "b", "c.txt")
	content := strings.Repeat("héllo\x00binary\n", 1000)
	if _, e, code := run(t, content, "write", p, "0600"); code != ExitOK {
		t.Fatalf("write: %d %s", code, e)
	}
	out, _, code := run(t, "", "read", p)
	if code != ExitOK || out != content {
		t.Fatalf("read back %d bytes (code %d), wrote %d", len(out), code, len(content))
	}
	out, _, code = run(t, "", "stat", p)
	var info api.FileInfo
	if code != ExitOK || json.Unmarshal([]byte(out), &info) != nil {
		t.Fatalf("stat: %d %s", code, out)
	}
	if info.Type != "file" || info.Size != int64(len(content)) || info.Mode != "0600" || info.Name != "c.txt" || info.Path != p {
		t.Fatalf("stat = %+v", info)
	}
	os.Symlink("c.txt", filepath.Join(dir, "a", "b", "link"))
	out, _, _ = run(t, "", "ls", filepath.Join(dir, "a", "b"))
	var list []api.FileInfo
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 || list[0].Name != "c.txt" || list[1].Type != "symlink" || list[1].Target != "c.txt" {
		t.Fatalf("ls = %s", out)
	}
	// No temporary file is left beside it.
	if entries, _ := os.ReadDir(filepath.Join(dir, "a", "b")); len(entries) != 2 {
		t.Fatalf("%d entries after write, want 2", len(entries))
	}
	if _, _, code := run(t, "", "mkdir", filepath.Join(dir, "x", "y")); code != ExitOK {
		t.Fatalf("mkdir: %d", code)
	}
	if _, _, code := run(t, "", "rm", filepath.Join(dir, "a")); code != ExitOK {
		t.Fatalf("rm: %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Fatal("rm left the tree")
	}
}

// TestErrorsSayWhat: each failure has its own exit code and a JSON error.
func TestErrorsSayWhat(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	os.WriteFile(f, []byte("x"), 0o644)
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"read", filepath.Join(dir, "missing")}, ExitNotFound},
		{[]string{"stat", filepath.Join(dir, "missing")}, ExitNotFound},
		{[]string{"rm", filepath.Join(dir, "missing")}, ExitNotFound},
		{[]string{"read", dir}, ExitIsDir},
		{[]string{"write", dir}, ExitIsDir},
		{[]string{"ls", f}, ExitNotDir},
		{[]string{"watch", f}, ExitNotDir},
		{[]string{"write", f, "999"}, ExitUsage},
		{[]string{"relay", "70000"}, ExitUsage},
		{[]string{"frobnicate", "x"}, ExitUsage},
		{[]string{"read"}, ExitUsage},
	} {
		_, e, code := run(t, "", c.args...)
		var ae api.Error
		if code != c.code || json.Unmarshal([]byte(e), &ae) != nil || ae.Message == "" {
			t.Errorf("%v: code %d (want %d), stderr %q", c.args, code, c.code, e)
		}
	}
}

// TestFullDiskIsSaid: a write that finds no space is ExitNoSpace, which
// the host answers 507, not a failure of its own.
func TestFullDiskIsSaid(t *testing.T) {
	var e bytes.Buffer
	err := &os.PathError{Op: "write", Path: "/root/f", Err: syscall.ENOSPC}
	var ae api.Error
	if code := failErr(&e, fmt.Errorf("upload: %w", err)); code != ExitNoSpace || json.Unmarshal(e.Bytes(), &ae) != nil || ae.Code != api.CodeNoSpace {
		t.Fatalf("ENOSPC: code %d, %q", code, e.String())
	}
}

func TestRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c)
		c.Write(append([]byte("echo:"), b...))
		c.Close()
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	out, e, code := run(t, "ping", "relay", port)
	if code != ExitOK || out != "echo:ping" {
		t.Fatalf("relay: %d %q %s", code, out, e)
	}
	ln.Close()
	if _, _, code := run(t, "", "relay", port); code != ExitRefused {
		t.Fatalf("relay to a closed port: code %d, want %d", code, ExitRefused)
	}
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "old"), []byte("1"), 0o644)
	pr, pw := io.Pipe()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- watch(dir, 10*time.Millisecond, pw, stop); pw.Close() }()
	lines := bufio.NewScanner(pr)
	next := func() api.FileEvent {
		t.Helper()
		if !lines.Scan() {
			t.Fatal("watch ended")
		}
		var ev api.FileEvent
		if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	if ev := next(); ev.Op != "ready" {
		t.Fatalf("first event %+v, want ready", ev)
	}
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	if ev := next(); ev.Op != "create" || ev.Path != filepath.Join(dir, "sub") || ev.Info.Type != "dir" {
		t.Fatalf("mkdir: %+v", ev)
	}
	os.WriteFile(filepath.Join(dir, "sub", "new"), []byte("hello"), 0o644)
	if ev := next(); ev.Op != "create" || ev.Info.Size != 5 {
		t.Fatalf("create: %+v", ev)
	}
	os.WriteFile(filepath.Join(dir, "old"), []byte("123"), 0o644)
	if ev := next(); ev.Op != "write" || ev.Path != filepath.Join(dir, "old") || ev.Info.Size != 3 {
		t.Fatalf("write: %+v", ev)
	}
	os.Remove(filepath.Join(dir, "old"))
	if ev := next(); ev.Op != "remove" || ev.Path != filepath.Join(dir, "old") {
		t.Fatalf("remove: %+v", ev)
	}
	close(stop)
	go io.Copy(io.Discard, pr)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestMove(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "a"), filepath.Join(dir, "x", "y", "b")
	os.WriteFile(src, []byte("data"), 0o644)
	out, e, code := run(t, "", "mv", src, dst)
	var info api.FileInfo
	if code != ExitOK || json.Unmarshal([]byte(out), &info) != nil || info.Path != dst || info.Size != 4 {
		t.Fatalf("mv: %d %s %s", code, out, e)
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Fatal("the source is still there")
	}
	if _, _, code := run(t, "", "mv", src, dst); code != ExitNotFound {
		t.Fatalf("mv of a missing file: %d", code)
	}
}

// TestParseSignal: names read as Linux's numbers (what a sandbox's kernel
// takes) on any host; numbers pass; anything else is refused.
func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{
		"HUP": 1, "int": 2, "SIGQUIT": 3, "KILL": 9, "USR1": 10, "sigusr2": 12,
		"TERM": 15, "CONT": 18, "STOP": 19, "28": 28,
	} {
		if got, err := ParseSignal(in); err != nil || int(got) != want {
			t.Errorf("ParseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "32", "-9", "SIGFOO", "PWR"} {
		if _, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) took it", in)
		}
	}
}
