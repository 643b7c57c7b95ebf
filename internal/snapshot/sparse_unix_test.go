//go:build unix

package snapshot_test

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/frostdev/frost/internal/snapshot"
)

// blocksUsed returns the bytes the file at path occupies on disk.
func blocksUsed(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("no syscall.Stat_t for %s", path)
	}
	return int64(st.Blocks) * 512
}

// supportsHoles reports whether the file system of dir keeps a file with a
// 16 MiB hole smaller on disk than its size.
func supportsHoles(t *testing.T, dir string) bool {
	t.Helper()
	path := filepath.Join(dir, "hole-probe")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	if _, err := f.WriteAt([]byte{1}, 16<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return blocksUsed(t, path) < 1<<20
}

// TestSparse checks that a mostly zero part costs about its data on disk.
func TestSparse(t *testing.T) {
	dir := t.TempDir()
	if !supportsHoles(t, dir) {
		t.Skipf("the file system of %s does not keep holes in sparse files; nothing to check", dir)
	}
	const size = 64 << 20
	mem := make([]byte, size)
	copy(mem[1<<20:], randomBytes(1, 4096))
	copy(mem[size-3000:], randomBytes(2, 3000))
	mem[32<<20] = 1

	s := open(t, dir, snapshot.Options{})
	m := put(t, s, manifestFor("app", releaseID("a")), []snapshot.Part{{Name: "memory", Data: mem}})
	used := blocksUsed(t, filepath.Join(dir, m.Release, m.Parts[0].Digest))
	if used > 256<<10 {
		t.Errorf("a 64 MiB part with 12 KiB of data uses %d bytes on disk, want under 256 KiB", used)
	}
	if got := s.TotalBytes(); got > 256<<10 {
		t.Errorf("TotalBytes = %d, want the bytes on disk, under 256 KiB", got)
	}
	if m.Size() != size {
		t.Errorf("Manifest.Size() = %d, want %d", m.Size(), size)
	}
	_, parts := get(t, s, wantFor(m))
	if !bytes.Equal(parts[0].Data, mem) {
		t.Fatal("sparse part read back differs")
	}
}
