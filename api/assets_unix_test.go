//go:build unix

package api_test

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/frostdev/frost/api"
)

func TestPackAssetsRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, tree...)
	if err := syscall.Mkfifo(filepath.Join(dir, "sub", "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := api.PackAssets(dir)
	if err == nil || !strings.Contains(err.Error(), "sub/pipe is a named pipe") {
		t.Fatalf("PackAssets = %v; want an error naming sub/pipe", err)
	}
}
