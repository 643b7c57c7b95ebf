package node

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/testguest"
)

// assetsBlob packs files (path → content) with api.PackAssets and stores
// the archive in n's blob store; it returns the digest.
func assetsBlob(t *testing.T, n *Node, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := api.PackAssets(dir)
	if err != nil {
		t.Fatal(err)
	}
	return storeBlob(t, n, b)
}

func storeBlob(t *testing.T, n *Node, b []byte) string {
	t.Helper()
	info, err := n.blobs.Put(context.Background(), "", bytes.NewReader(b), 0)
	if err != nil {
		t.Fatal(err)
	}
	return info.Digest
}

func moduleBlob(t *testing.T, n *Node, guest string) string {
	t.Helper()
	b, err := os.ReadFile(testguest.Path(t, guest))
	if err != nil {
		t.Fatal(err)
	}
	return storeBlob(t, n, b)
}

func assetGet(n *Node, app, name string) (int, string) {
	w := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/asset?name="+name, nil)
	req.Host = app + ".localhost"
	n.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

func TestDeployWithAssets(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	mod := moduleBlob(t, n, "go-cgi")
	v1 := assetsBlob(t, n, map[string]string{"index.html": "one", "sub/data.txt": "data"})
	rel, err := n.Deploy(ctx, "site", api.DeployRequest{Module: mod, Assets: v1})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := n.blobs.Stat(ctx, v1)
	if rel.Assets != v1 || rel.AssetsSize != info.Size || rel.Version != 1 {
		t.Fatalf("release %+v", rel)
	}
	for name, want := range map[string]string{"index.html": "one", "sub/data.txt": "data"} {
		if code, body := assetGet(n, "site", name); code != 200 || body != want {
			t.Errorf("%s: %d %q, want %q", name, code, body, want)
		}
	}
	d, err := n.App(ctx, "site")
	if err != nil {
		t.Fatal(err)
	}
	if r := d.Releases[0]; r.Assets != v1 || r.AssetsSize != info.Size {
		t.Errorf("wire release %+v", r)
	}

	// New assets, same module: a new release that serves them.
	v2 := assetsBlob(t, n, map[string]string{"index.html": "two"})
	rel2, err := n.Deploy(ctx, "site", api.DeployRequest{Module: mod, Assets: v2})
	if err != nil {
		t.Fatal(err)
	}
	if rel2.ID == rel.ID || rel2.Version != 2 {
		t.Fatalf("new assets: release %s v%d; want a new ID at v2", rel2.ID, rel2.Version)
	}
	if _, body := assetGet(n, "site", "index.html"); body != "two" {
		t.Errorf("after new assets: %q", body)
	}
	if code, _ := assetGet(n, "site", "sub/data.txt"); code != 404 {
		t.Errorf("a file the new assets lack: %d", code)
	}
	// The old assets again: the old release again.
	back, err := n.Deploy(ctx, "site", api.DeployRequest{Module: mod, Assets: v1})
	if err != nil {
		t.Fatal(err)
	}
	if back.ID != rel.ID || back.Version != 1 {
		t.Errorf("rollback: %s v%d; want %s v1", back.ID, back.Version, rel.ID)
	}
	// No assets at all: another release, without /assets.
	none, err := n.Deploy(ctx, "site", api.DeployRequest{Module: mod})
	if err != nil {
		t.Fatal(err)
	}
	if none.ID == rel.ID || none.Assets != "" || none.AssetsSize != 0 {
		t.Errorf("without assets: %+v", none)
	}
	if code, _ := assetGet(n, "site", "index.html"); code != 404 {
		t.Errorf("without assets: %d", code)
	}

	// A node started over the same stores loads the release, assets and
	// all, on its first request.
	if _, err := n.Deploy(ctx, "site", api.DeployRequest{Module: mod, Assets: v2}); err != nil {
		t.Fatal(err)
	}
	n2, err := New(ctx, n.cfg, n.reg, n.blobs, n.rt)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close(ctx)
	if _, body := assetGet(n2, "site", "index.html"); body != "two" {
		t.Errorf("after a restart: %q", body)
	}
}

// TestReleaseID: the release ID covers the app, its code, assets and
// config, and nothing else.
func TestReleaseID(t *testing.T) {
	rel := registry.Release{App: "a", Runtime: "wasm", Module: strings.Repeat("a", 64), Mode: registry.ModeRequest, Limits: DefaultConfig().Defaults}
	id := releaseID(rel)
	rel.Version, rel.CreatedAt, rel.Shape = 7, time.Unix(1, 0), "http-wasm"
	if releaseID(rel) != id {
		t.Error("the version, creation time or shape changes the release ID")
	}
	for name, change := range map[string]func(r *registry.Release){
		"app":    func(r *registry.Release) { r.App = "b" },
		"module": func(r *registry.Release) { r.Module = strings.Repeat("c", 64) },
		"mode":   func(r *registry.Release) { r.Mode = registry.ModeSession },
		"limits": func(r *registry.Release) { r.Limits.MemoryBytes++ },
		"assets": func(r *registry.Release) { r.Assets = strings.Repeat("b", 64) },
		"idle":   func(r *registry.Release) { r.Idle = time.Minute },
	} {
		r := rel
		change(&r)
		if releaseID(r) == id {
			t.Errorf("the %s does not change the release ID", name)
		}
	}
}

func TestDeployAssetsRefused(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	mod := moduleBlob(t, n, "go-cgi")
	good := assetsBlob(t, n, map[string]string{"index.html": "good"})
	if _, err := n.Deploy(ctx, "site", api.DeployRequest{Module: mod, Assets: good}); err != nil {
		t.Fatal(err)
	}
	// badTar is a one-file archive whose file is called name.
	badTar := func(name string) string {
		return storeBlob(t, n, []byte(tarEntry(t, name, "x")+string(make([]byte, 1024))))
	}
	cases := []struct {
		name, assets, want string
	}{
		{"not uploaded", strings.Repeat("c", 64), "have not been uploaded"},
		{"not a digest", "nope", "have not been uploaded"},
		{"not a tar", storeBlob(t, n, []byte(strings.Repeat("not a tar\n", 100))), "invalid assets archive"},
		{"escapes", badTar("../etc/passwd"), `".."`},
		{"absolute", badTar("/etc/passwd"), "absolute path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := n.Deploy(ctx, "site", api.DeployRequest{Module: mod, Assets: c.assets})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Deploy = %v; want ErrInvalid saying %q", err, c.want)
			}
			d, err := n.App(ctx, "site")
			if err != nil {
				t.Fatal(err)
			}
			if d.Version != 1 || len(d.Releases) != 1 {
				t.Errorf("a refused deploy changed the app: v%d, %d releases", d.Version, len(d.Releases))
			}
			if _, body := assetGet(n, "site", "index.html"); body != "good" {
				t.Errorf("after a refused deploy: %q", body)
			}
		})
	}
}

// tarEntry is one ustar regular-file entry written by hand, so that it can
// hold names archive/tar's writer refuses.
func tarEntry(t *testing.T, name, content string) string {
	t.Helper()
	hdr := make([]byte, 512)
	copy(hdr[0:100], name)
	copy(hdr[100:108], "0000644\x00")
	copy(hdr[108:116], "0000000\x00")
	copy(hdr[116:124], "0000000\x00")
	copy(hdr[124:136], []byte(octal(len(content), 11)+"\x00"))
	copy(hdr[136:148], "00000000000\x00")
	hdr[156] = '0'
	copy(hdr[257:265], "ustar\x0000")
	copy(hdr[148:156], "        ")
	sum := 0
	for _, c := range hdr {
		sum += int(c)
	}
	copy(hdr[148:156], octal(sum, 6)+"\x00 ")
	body := make([]byte, (len(content)+511)/512*512)
	copy(body, content)
	return string(hdr) + string(body)
}

func octal(n, width int) string {
	s := ""
	for ; n > 0; n /= 8 {
		s = string(rune('0'+n%8)) + s
	}
	return strings.Repeat("0", width-len(s)) + s
}
