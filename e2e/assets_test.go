package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testguest"
)

// TestAssets deploys a Go CGI guest with read-only assets and checks what it
// sees at /assets through the real binary, the real CLI and real HTTP.
func TestAssets(t *testing.T) {
	s := startServer(t, "")
	guest := testguest.Path(t, "go-cgi")

	dir := t.TempDir()
	index := "<!doctype html>\n<h1>hello from assets</h1>\n"
	data := "line one\nline two\x00\xff\xfe binary tail"
	writeFile(t, filepath.Join(dir, "index.html"), index)
	writeFile(t, filepath.Join(dir, "sub", "data.txt"), data)

	out := s.mustFrost("deploy", "site", guest, "--assets", dir)
	if !strings.Contains(out, "at /assets") {
		t.Errorf("deploy output does not mention the assets:\n%s", out)
	}
	first := appDetail(t, s, "site")
	if first.Version != 1 || first.Releases[0].Assets == "" || first.Releases[0].AssetsSize == 0 {
		t.Fatalf("after the first deploy: v%d, releases %+v", first.Version, first.Releases)
	}

	for name, want := range map[string]string{"index.html": index, "sub/data.txt": data} {
		resp, body := s.get("site", "/asset?name="+name)
		if resp.StatusCode != 200 || body != want {
			t.Errorf("GET /asset?name=%s: %d %q, want %q", name, resp.StatusCode, body, want)
		}
	}
	if resp, _ := s.get("site", "/asset?name=missing.txt"); resp.StatusCode != 404 {
		t.Errorf("a missing asset: %d, want 404", resp.StatusCode)
	}

	// Writes fail, and change nothing for the next request.
	for _, name := range []string{"index.html", "new.txt"} {
		_, body := s.get("site", "/asset-write?name="+name)
		if !strings.Contains(strings.ToLower(body), "read-only file system") {
			t.Errorf("write /assets/%s: %q, want a read-only error", name, body)
		}
	}
	if _, body := s.get("site", "/asset?name=index.html"); body != index {
		t.Errorf("after a write, /assets/index.html is %q", body)
	}
	if resp, _ := s.get("site", "/asset?name=new.txt"); resp.StatusCode != 404 {
		t.Errorf("after a create, /assets/new.txt answers %d, want 404", resp.StatusCode)
	}

	// Changed assets: a new release serving them.
	index2 := "<h1>second edition</h1>\n"
	writeFile(t, filepath.Join(dir, "index.html"), index2)
	s.mustFrost("deploy", "site", guest, "--assets", dir)
	second := appDetail(t, s, "site")
	if second.Version != 2 || second.Release == first.Release || second.Releases[0].Assets == first.Releases[0].Assets {
		t.Fatalf("after changing the assets: v%d release %s (was %s)", second.Version, second.Release, first.Release)
	}
	if _, body := s.get("site", "/asset?name=index.html"); body != index2 {
		t.Errorf("after the redeploy /assets/index.html is %q, want %q", body, index2)
	}

	// A symbolic link in the directory: refused before anything is sent.
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "sub", "passwd")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "index.html"), "<h1>never served</h1>\n")
	out, errOut, code := s.frost("deploy", "site", guest, "--assets", dir)
	if code == 0 {
		t.Fatalf("deploy with a symbolic link succeeded:\n%s", out)
	}
	for _, want := range []string{"sub/passwd is a symbolic link", "regular files and directories", "Nothing was changed"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("deploy with a symbolic link: stderr lacks %q:\n%s", want, errOut)
		}
	}
	if now := appDetail(t, s, "site"); now.Release != second.Release || now.Version != 2 || len(now.Releases) != 2 {
		t.Errorf("a refused deploy changed the app: release %s v%d, %d releases", now.Release, now.Version, len(now.Releases))
	}
	if _, body := s.get("site", "/asset?name=index.html"); body != index2 {
		t.Errorf("after a refused deploy /assets/index.html is %q", body)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appDetail(t *testing.T, s *server, name string) api.AppDetail {
	t.Helper()
	var d api.AppDetail
	if err := json.Unmarshal([]byte(s.mustFrost("app", name, "--json")), &d); err != nil {
		t.Fatal(err)
	}
	return d
}
