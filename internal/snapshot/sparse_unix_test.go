//go:build unix

package snapshot_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
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
