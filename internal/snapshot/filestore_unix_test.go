//go:build unix

package snapshot_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/snapshot"
)

// TestFilesSparse checks that a 64 MiB memory file with a little data
// costs about its data on disk in the store and in the directory GetFiles
// writes, even when the source file has no holes of its own.
func TestFilesSparse(t *testing.T) {
	dir := t.TempDir()
	if !supportsHoles(t, dir) {
		t.Skipf("the file system of %s does not keep holes in sparse files; nothing to check", dir)
	}
	const size = 64 << 20
	img := runscImage(1, size)
	files := writeImage(t, t.TempDir(), img)
	// Write the memory file again with its zeros as data, not holes: the
	// store must find the zero blocks itself.
	dense := files["pages.img"]
	f, err := os.OpenFile(dense, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros, off); err != nil {
			t.Fatal(err)
		}
	}
	for off, b := range img["pages.img"].data {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if used := blocksUsed(t, dense); used < size {
		t.Fatalf("the dense source uses %d bytes on disk, want at least %d", used, size)
	}

	s := open(t, dir, snapshot.Options{})
	m := putFiles(t, s, manifestFor("app", releaseID("a")), files)
	const small = 1 << 20 // the memory file holds about 110 KiB of data
	for _, p := range m.Parts {
		if p.Name != "pages.img" {
			continue
		}
		if used := blocksUsed(t, filepath.Join(dir, m.Release, p.Digest)); used > small {
			t.Errorf("a 64 MiB part with about 110 KiB of data uses %d bytes in the store, want under %d", used, small)
		}
	}
	if got := s.TotalBytes(); got > 2*small {
		t.Errorf("TotalBytes = %d, want the bytes on disk, under %d", got, 2*small)
	}
	out := emptyDir(t)
	if _, err := s.GetFiles(context.Background(), wantFor(m), out); err != nil {
		t.Fatal(err)
	}
	if used := blocksUsed(t, filepath.Join(out, "pages.img")); used > small {
		t.Errorf("GetFiles wrote a 64 MiB part with about 110 KiB of data using %d bytes, want under %d", used, small)
	}
	for name, path := range files {
		sameFiles(t, filepath.Join(out, name), path)
	}
}

// TestGetRefusesFIFO: a part or manifest swapped for a FIFO is refused as
// not a regular file; opening it does not wait for a writer.
func TestGetRefusesFIFO(t *testing.T) {
	for _, which := range []string{"manifest", "part"} {
		t.Run(which, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, snapshot.Options{})
			m := put(t, s, manifestFor("app", releaseID("a")), sampleParts(1))
			path := filepath.Join(dir, m.Release, "manifest.json")
			if which == "part" {
				path = filepath.Join(dir, m.Release, m.Parts[0].Digest)
			}
			os.Remove(path)
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Skipf("no FIFOs here: %v", err)
			}
			done := make(chan error, 1)
			go func() {
				_, _, err := s.Get(context.Background(), wantFor(m))
				done <- err
			}()
			select {
			case err := <-done:
				wantSentinel(t, err, snapshot.ErrCorrupt)
				if !strings.Contains(err.Error(), "not a regular file") {
					t.Errorf("Get: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Get waits on a FIFO")
			}
		})
	}
}
