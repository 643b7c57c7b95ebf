package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
)

// TestSandboxCopyTree: `frost sandbox cp` of a directory, into and out of
// a real gVisor sandbox, as cp -r does (into DEST/NAME when DEST is a
// directory, else as DEST; SRC/. for what SRC holds), with modes and
// symbolic links; out to - as a tar stream; and archives the sandbox
// cannot take (cut short, malformed, leaving the directory, a file where
// a directory is) answered 400 with nothing changed.
func TestSandboxCopyTree(t *testing.T) {
	s, c := startSandboxServer(t, "")
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "proj")
	os.MkdirAll(filepath.Join(src, "pkg", "sub"), 0o755)
	os.MkdirAll(filepath.Join(src, "empty"), 0o700)
	os.WriteFile(filepath.Join(src, "main.py"), []byte("print('hi')\n"), 0o644)
	os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\necho ran\n"), 0o755)
	os.WriteFile(filepath.Join(src, "pkg", "sub", "deep.txt"), bytes.Repeat([]byte("d"), 300<<10), 0o600)
	os.Symlink("pkg/sub", filepath.Join(src, "link"))

	// A listing of a tree: type, mode, a file's size, a link's target.
	const list = `cd "$1" && find . -mindepth 1 | sort | while read f; do if [ -f "$f" ] && [ ! -L "$f" ]; then stat -c '%F %a %s %N' "$f"; else stat -c '%F %a %N' "$f"; fi; done`
	localTree := func(dir string) string {
		t.Helper()
		out, err := exec.Command("sh", "-c", list, "sh", dir).Output()
		if err != nil {
			t.Fatalf("listing %s: %v", dir, err)
		}
		return string(out)
	}
	local := localTree(src)
	if !strings.Contains(local, "symbolic link") {
		t.Fatalf("the local tree: %q", local)
	}
	tree := func(dir string) string {
		t.Helper()
		out, e, code := sbExec(t, c, sb.ID, "", "sh", "-c", list, "sh", dir)
		if code != 0 {
			t.Fatalf("listing %s: %d %s", dir, code, e)
		}
		return out
	}

	// Into a directory that is there: DEST/NAME.
	out := s.mustFrost("sandbox", "cp", src, sb.ID+":/root")
	if !strings.Contains(out, "3 files, 3 directories, 1 link") || !strings.Contains(out, ":/root/proj.") {
		t.Fatalf("cp in said %q", out)
	}
	if got := tree("/root/proj"); got != local {
		t.Fatalf("in the sandbox:\n%s\nwant (as local):\n%s", got, local)
	}
	if out, _, code := sbExec(t, c, sb.ID, "", "/root/proj/run.sh"); code != 0 || out != "ran\n" {
		t.Fatalf("the copied script: %d %q", code, out)
	}
	// To a path that is not there: DEST; SRC/.: its contents.
	s.mustFrost("sandbox", "cp", src, sb.ID+":/root/new/place")
	s.mustFrost("sandbox", "cp", src+"/.", sb.ID+":/root/flat")
	if a, b := tree("/root/new/place"), tree("/root/flat"); a != local || b != local {
		t.Fatalf("cp to a new path:\n%s\nSRC/.:\n%s\nwant:\n%s", a, b, local)
	}

	// Out: into a local directory that is there, and to a new path.
	dst := t.TempDir()
	if out := s.mustFrost("sandbox", "cp", sb.ID+":/root/proj", dst); !strings.Contains(out, "to "+filepath.Join(dst, "proj")) {
		t.Fatalf("cp out said %q", out)
	}
	if got := localTree(filepath.Join(dst, "proj")); got != local {
		t.Fatalf("copied out:\n%s\nwant:\n%s", got, local)
	}
	s.mustFrost("sandbox", "cp", sb.ID+":/root/proj", filepath.Join(dst, "again"))
	if got := localTree(filepath.Join(dst, "again")); got != local {
		t.Fatalf("copied out to a new path:\n%s\nwant:\n%s", got, local)
	}
	// To stdout: a tar stream.
	tarOut, e, code := s.frost("sandbox", "cp", sb.ID+":/root/proj", "-")
	if code != 0 {
		t.Fatalf("cp out to -: %d %s", code, e)
	}
	var names []string
	tr := tar.NewReader(strings.NewReader(tarOut))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("cp to - wrote no tar: %v", err)
		}
		names = append(names, h.Name)
	}
	if strings.Join(names, " ") != "empty/ link main.py pkg/ pkg/sub/ pkg/sub/deep.txt run.sh" {
		t.Fatalf("the tar on stdout holds %v", names)
	}

	// Archives the sandbox refuses: 400, /root/proj as it was.
	before := tree("/root/proj")
	whole := tarOf(t, "main.py", "print('replaced')\n", "pkg/big.bin", strings.Repeat("x", 2<<20))
	for what, body := range map[string]io.Reader{
		"not a tar":             strings.NewReader(strings.Repeat("junk", 1000)),
		"out of the directory":  bytes.NewReader(tarOf(t, "ok.txt", "x", "../../etc/frost-escape", "x")),
		"a file on a directory": bytes.NewReader(tarOf(t, "pkg", "x")),
	} {
		_, err := c.WriteTree(ctx, sb.ID, "/root/proj", body)
		var se *api.StatusError
		if !errors.As(err, &se) || se.Status != http.StatusBadRequest {
			t.Errorf("%s: %v, want 400", what, err)
		}
		if got := tree("/root/proj"); got != before {
			t.Errorf("%s changed the tree:\n%s", what, got)
		}
	}
	// Cut short, its client gone half way: nothing changed, nothing left
	// (the server finishes with it a moment after the client went).
	conn, err := net.Dial("tcp", s.api)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT /v1/sandboxes/%s/files/archive?path=/root/proj HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", sb.ID, s.token, len(whole))
	conn.Write(whole[:1<<20])
	time.Sleep(500 * time.Millisecond)
	conn.Close()
	for i := 0; ; i++ {
		out, _, _ := sbExec(t, c, sb.ID, "", "sh", "-c", "ls -A /root/proj; ls /etc/frost-escape 2>&1")
		if !strings.Contains(out, ".frost-unpack") && strings.Contains(out, "No such file") && tree("/root/proj") == before {
			break
		}
		if i == 50 {
			t.Fatalf("after uploads refused or cut short, left behind: %s\n%s", out, tree("/root/proj"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The whole archive lands: the file replaced, the rest kept.
	if st, err := c.WriteTree(ctx, sb.ID, "/root/proj", bytes.NewReader(whole)); err != nil || st.Files != 2 || st.Bytes != int64(len("print('replaced')\n")+2<<20) {
		t.Fatalf("whole archive: %+v %v", st, err)
	}
	if out, _, _ := sbExec(t, c, sb.ID, "", "sh", "-c", "cat /root/proj/main.py; ls /root/proj/pkg"); out != "print('replaced')\nbig.bin\nsub\n" {
		t.Fatalf("after the whole archive: %q", out)
	}
	// Reading a tree that is not there, or a file: 404, 400.
	var se *api.StatusError
	if rc, err := c.ReadTree(ctx, sb.ID, "/root/nothing"); !errors.As(err, &se) || se.Status != http.StatusNotFound {
		t.Errorf("a missing tree: %v, want 404", err)
		if rc != nil {
			rc.Close()
		}
	}
	if rc, err := c.ReadTree(ctx, sb.ID, "/root/proj/main.py"); !errors.As(err, &se) || se.Status != http.StatusBadRequest {
		t.Errorf("a file as a tree: %v, want 400", err)
		if rc != nil {
			rc.Close()
		}
	}
}

// tarOf is a tar stream of files, given as name, content pairs.
func tarOf(t *testing.T, pairs ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < len(pairs); i += 2 {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: pairs[i], Mode: 0o644, Size: int64(len(pairs[i+1]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(pairs[i+1]))
	}
	tw.Close()
	return buf.Bytes()
}
