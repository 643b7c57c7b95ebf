package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/frostdev/frost/internal/testguest"
)

// smallDisk mounts a tmpfs of size bytes for the test (root only; the
// test skips elsewhere) and returns its path.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a file until the disk is full and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = 1
	}
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// and the last crumbs
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	return p
}

// TestDiskFull: with the data directory's disk full, a freeze fails with a
// clear error and the app keeps its state and answers; a deploy fails
// with a clear error and changes nothing; every app deployed before keeps
// answering. Once space is back, both work, and a restart finds whole
// state, no temporary file and no corrupt snapshot.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end case; runs without -short")
	}
	data := filepath.Join(smallDisk(t, "160m"), "data")
	s := startServer(t, data)
	s.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	s.mustFrost("deploy", "fat", testguest.Path(t, "fat-64"), "--mode", "session", "--memory", "256MiB", "--idle", "1h")
	_, want := s.get("fat", "/?i=7")
	if !strings.HasPrefix(want, "fat word[7]=") {
		t.Fatalf("fat answers %q", want)
	}
	filler := fill(t, filepath.Dir(data))

	// Freeze: the snapshot cannot be written.
	if _, errs, code := s.frost("freeze", "fat"); code == 0 || !strings.Contains(errs, "no space left on device") {
		t.Errorf("freeze with the disk full: exit %d, stderr %q; want a failure naming the full disk", code, errs)
	}
	if resp, body := s.get("fat", "/?i=7"); resp.StatusCode != 200 || body != want {
		t.Fatalf("fat after the failed freeze: %d %q", resp.StatusCode, body)
	}
	// Deploy: the module cannot be stored.
	if _, errs, code := s.frost("deploy", "big", testguest.Path(t, "big")); code == 0 || !strings.Contains(errs, "no space left on device") {
		t.Errorf("deploy with the disk full: exit %d, stderr %q; want a failure naming the full disk", code, errs)
	}
	if _, ok := s.appsOf()["big"]; ok {
		t.Error("a deploy that failed for space left an app behind")
	}
	for app, body := range map[string]string{"hello": "hello from frost\n", "fat": want} {
		path := "/"
		if app == "fat" {
			path = "/?i=7"
		}
		if resp, got := s.get(app, path); resp.StatusCode != 200 || got != body {
			t.Fatalf("%s with the disk full: %d %q", app, resp.StatusCode, got)
		}
	}

	// Space back: everything works, and survives a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s.mustFrost("deploy", "big", testguest.Path(t, "big"))
	s.mustFrost("freeze", "fat")
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, data)
	resp, body := s.get("fat", "/?i=7")
	if resp.StatusCode != 200 || body != want || bootOf(resp) != "thaw" {
		t.Fatalf("fat after the restart: %d %q (%s); want a thaw with the same memory", resp.StatusCode, body, bootOf(resp))
	}
	if _, body := s.get("big", "/"); !strings.Contains(body, "big ok") {
		t.Fatalf("big after the restart: %q", body)
	}
	if d := s.appDetail("fat"); d.Counters.Fallbacks["corrupt"] != 0 {
		t.Errorf("fallbacks after the restart: %v", d.Counters.Fallbacks)
	}
	if got := leftovers(t, data); len(got) > 0 {
		t.Errorf("temporary files left: %v", got)
	}
}
