package api_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/assets"
)

// writeTree creates files (path → content; a path ending in "/" is a
// directory) under dir, in the order given.
func writeTree(t *testing.T, dir string, files ...string) {
	t.Helper()
	for i := 0; i < len(files); i += 2 {
		p := filepath.Join(dir, filepath.FromSlash(files[i]))
		if strings.HasSuffix(files[i], "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(files[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var tree = []string{
	"index.html", "<h1>hello</h1>\n",
	"sub/data.txt", "data",
	"sub/deeper/x.bin", "\x00\x01\x02",
	"empty/", "",
	".hidden", "h",
	"a-b", "sorted before a/ by byte",
}

func TestPackAssetsDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	writeTree(t, a, tree...)
	// The same tree made in the reverse order, with other times and modes.
	for i := len(tree) - 2; i >= 0; i -= 2 {
		writeTree(t, b, tree[i], tree[i+1])
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(b, "index.html"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(b, "sub", "data.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	pa, err := api.PackAssets(a)
	if err != nil {
		t.Fatal(err)
	}
	pa2, err := api.PackAssets(a)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := api.PackAssets(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pa, pa2) || !bytes.Equal(pa, pb) {
		t.Fatal("the same tree packed to different archives")
	}

	// What the archive holds: sorted paths, fixed modes, no times or owners.
	tr := tar.NewReader(bytes.NewReader(pa))
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		wantMode := int64(0o644)
		if hdr.Typeflag == tar.TypeDir {
			wantMode = 0o755
		}
		if hdr.Mode != wantMode || hdr.ModTime.Unix() != 0 || hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: mode %o, mtime %v, owner %d/%d %q/%q", hdr.Name, hdr.Mode, hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
		}
	}
	want := []string{".hidden", "a-b", "empty/", "index.html", "sub/", "sub/data.txt", "sub/deeper/", "sub/deeper/x.bin"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("entries %q, want %q", names, want)
	}

	// A change to any byte is a different archive.
	if err := os.WriteFile(filepath.Join(b, "sub", "data.txt"), []byte("date"), 0o644); err != nil {
		t.Fatal(err)
	}
	if pb, _ = api.PackAssets(b); bytes.Equal(pa, pb) {
		t.Error("changed content, same archive")
	}
}

// TestPackAssetsRoundTrip: what PackAssets writes, the server's reader takes,
// byte for byte.
func TestPackAssetsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, tree...)
	if err := os.Chmod(filepath.Join(dir, "index.html"), 0o755); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("long-directory-name/", 8) + "file.txt"
	writeTree(t, dir, long, "deep")
	b, err := api.PackAssets(dir)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := assets.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(tree); i += 2 {
		if strings.HasSuffix(tree[i], "/") {
			if fi, err := fsys.Stat(strings.TrimSuffix(tree[i], "/")); err != nil || !fi.IsDir() {
				t.Errorf("%s: %v", tree[i], err)
			}
			continue
		}
		if got, err := fsys.ReadFile(tree[i]); err != nil || string(got) != tree[i+1] {
			t.Errorf("%s: %q, %v", tree[i], got, err)
		}
	}
	if got, err := fsys.ReadFile(long); err != nil || string(got) != "deep" {
		t.Errorf("%s: %q, %v", long, got, err)
	}
	if fi, _ := fsys.Stat("index.html"); fi.Mode() != 0o555 {
		t.Errorf("executable file: mode %v", fi.Mode())
	}
}

func TestPackAssetsRefusesSymlinks(t *testing.T) {
	for _, target := range []string{"../index.html", "/etc/passwd", "missing"} {
		dir := t.TempDir()
		writeTree(t, dir, tree...)
		if err := os.Symlink(target, filepath.Join(dir, "sub", "link")); err != nil {
			t.Skipf("no symbolic links here: %v", err)
		}
		_, err := api.PackAssets(dir)
		if err == nil || !strings.Contains(err.Error(), "sub/link is a symbolic link") || !strings.Contains(err.Error(), "regular files and directories") {
			t.Errorf("link to %s: %v; want an error naming sub/link", target, err)
		}
	}
	// A symbolic link to a directory is refused too, not followed.
	dir := t.TempDir()
	writeTree(t, dir, "real/x", "x")
	if err := os.Symlink("real", filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	if _, err := api.PackAssets(dir); err == nil || !strings.Contains(err.Error(), "alias is a symbolic link") {
		t.Errorf("link to a directory: %v", err)
	}
}

// TestPackAssetsRootLink: the directory named may itself be a link.
func TestPackAssetsRootLink(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, tree...)
	link := filepath.Join(t.TempDir(), "assets")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	direct, err := api.PackAssets(dir)
	if err != nil {
		t.Fatal(err)
	}
	via, err := api.PackAssets(link)
	if err != nil || !bytes.Equal(direct, via) {
		t.Fatalf("through a link: %v", err)
	}
}

func TestPackAssetsSizeCap(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, "small", strings.Repeat("s", 100), "big", strings.Repeat("b", 5000))
	_, err := api.PackAssetsLimit(dir, 4096)
	if err == nil || !strings.Contains(err.Error(), "limit") || !strings.Contains(err.Error(), "big") {
		t.Fatalf("over the limit: %v; want an error naming the limit and the file", err)
	}
	// The limit is on the archive, headers included.
	_, err = api.PackAssetsLimit(dir, 5100)
	if err == nil || !strings.Contains(err.Error(), "archive larger than") {
		t.Fatalf("archive over the limit: %v", err)
	}
	b, err := api.PackAssetsLimit(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.PackAssetsLimit(dir, int64(len(b))); err != nil {
		t.Errorf("an archive exactly at the limit: %v", err)
	}
	if api.DefaultMaxAssetsBytes != 64<<20 {
		t.Errorf("default limit %d", api.DefaultMaxAssetsBytes)
	}
}

func TestPackAssetsBadDir(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, "file", "x")
	if _, err := api.PackAssets(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: %v", err)
	}
	if _, err := api.PackAssets(filepath.Join(dir, "file")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file: %v", err)
	}
	empty, err := api.PackAssets(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if fsys, err := assets.Parse(empty); err != nil || fsys.Len() != 1 {
		t.Errorf("an empty directory: %v", err)
	}
}

func TestUploadAssetsUploadsOnlyWhenMissing(t *testing.T) {
	f, srv := newFakeAPI(t)
	c := api.NewClient(srv.URL, testToken)
	dir := t.TempDir()
	writeTree(t, dir, tree...)
	ctx := context.Background()
	digest, err := c.UploadAssets(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := api.PackAssets(dir)
	sum := sha256.Sum256(b)
	if digest != hex.EncodeToString(sum[:]) || !bytes.Equal(f.blobs[digest], b) {
		t.Fatalf("digest %s; uploaded %d bytes", digest, len(f.blobs[digest]))
	}
	if _, err := c.UploadAssets(ctx, dir); err != nil {
		t.Fatal(err)
	}
	want := []string{"HEAD /v1/blobs/" + digest, "PUT /v1/blobs/" + digest, "HEAD /v1/blobs/" + digest}
	if strings.Join(f.calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(f.calls, "\n"), strings.Join(want, "\n"))
	}

	// The digest goes in the deploy request, and DeployFile keeps it.
	wasm := filepath.Join(t.TempDir(), "app.wasm")
	os.WriteFile(wasm, []byte("\x00asm\x01\x00\x00\x00"), 0o644)
	if _, err := c.DeployFile(ctx, "app", wasm, api.DeployRequest{Assets: digest}); err != nil {
		t.Fatal(err)
	}
	if got := f.deploys[len(f.deploys)-1].Assets; got != digest {
		t.Errorf("deploy request assets %q, want %q", got, digest)
	}

	// A directory that cannot be packed sends nothing.
	os.Symlink("index.html", filepath.Join(dir, "link"))
	n := len(f.calls)
	if _, err := c.UploadAssets(ctx, dir); err == nil || len(f.calls) != n {
		t.Errorf("bad directory: %v, %d calls", err, len(f.calls)-n)
	}
	if _, err := c.Deploy(ctx, "app", api.DeployRequest{Module: digest, Assets: "nope"}); err == nil || len(f.calls) != n {
		t.Errorf("bad assets digest: %v", err)
	}
}
