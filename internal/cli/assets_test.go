package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/frostdev/frost/api"
)

func assetsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"index.html": "<h1>hi</h1>", "sub/data.txt": "data"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestDeployAssets(t *testing.T) {
	f := newFakeServer(t, testNow)
	h := newHarness(t, f)
	dir := assetsDir(t)
	out := h.must("deploy", "site", module(t, wasmHeader), "--assets", dir)
	archive, err := api.PackAssets(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(archive)
	digest := hex.EncodeToString(sum[:])
	if got := f.deploys[0].Assets; got != digest {
		t.Fatalf("deploy request assets %q, want %q", got, digest)
	}
	if f.puts != 2 {
		t.Errorf("%d uploads, want 2 (module, assets)", f.puts)
	}
	contains(t, "stdout", out, "assets", "sha256:"+digest[:12], "at /assets")

	out = h.must("app", "site")
	contains(t, "stdout", out, "sha256:"+digest[:12])

	// The same directory again: nothing uploaded.
	h.must("deploy", "site", module(t, wasmHeader), "--assets", dir)
	if f.puts != 2 {
		t.Errorf("%d uploads after an unchanged redeploy, want 2", f.puts)
	}
}

func TestDeployAssetsRefused(t *testing.T) {
	f := newFakeServer(t, testNow)
	h := newHarness(t, f)
	dir := assetsDir(t)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "sub", "passwd")); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := h.run("deploy", "site", module(t, wasmHeader), "--assets", dir)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	contains(t, "stderr", errOut, "assets directory", "sub/passwd is a symbolic link", "regular files and directories",
		"Nothing was changed: the previous release of site, if any, keeps serving.")
	if f.puts != 0 || len(f.deploys) != 0 {
		t.Errorf("%d uploads, %d deploys after a refused directory; want none", f.puts, len(f.deploys))
	}

	code, _, errOut = h.run("deploy", "site", module(t, wasmHeader), "--assets", filepath.Join(dir, "missing"))
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	contains(t, "stderr", errOut, "missing", "give the directory whose files the app reads at /assets")
}
