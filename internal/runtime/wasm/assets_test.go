package wasm

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/testguest"
)

// assetsTar makes a tar of the given files (path → content); a path ending
// in "/" is a directory.
func assetsTar(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, content := range files {
		hdr := &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(content))}
		if strings.HasSuffix(name, "/") {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// loadWithAssets loads guest with the assets archive tarball.
func loadWithAssets(t testing.TB, r *Runtime, guest string, tarball []byte) (runtime.Program, error) {
	t.Helper()
	code, err := os.ReadFile(testguest.Path(t, guest))
	if err != nil {
		t.Fatal(err)
	}
	sum, asum := sha256.Sum256(code), sha256.Sum256(tarball)
	p, err := r.Load(context.Background(), runtime.Spec{
		Release: registry.Release{ID: guest, App: guest, Module: hex.EncodeToString(sum[:]),
			Assets: hex.EncodeToString(asum[:]), AssetsSize: int64(len(tarball)),
			Limits: registry.Limits{MemoryBytes: 64 << 20, Timeout: 10 * time.Second}},
		Code:   code,
		Assets: tarball,
	})
	if err == nil {
		t.Cleanup(func() { p.Close(context.Background()) })
	}
	return p, err
}

func handle(t *testing.T, p runtime.Program, uri string) (int, string, runtime.Boot) {
	t.Helper()
	resp, tm, err := p.Handle(context.Background(), get(uri))
	if err != nil {
		t.Fatalf("GET %s: %v", uri, err)
	}
	defer p.Release(resp)
	return resp.Status, string(resp.Body), tm.Boot
}

var testAssets = map[string]string{
	"index.html":   "<h1>hello</h1>\n",
	"sub/":         "",
	"sub/data.txt": "data\x00with\xffbytes",
}

// TestAssetsCGI: a stock Go program reads assets at /assets, cannot change
// them, and still has its writable tree at "/".
func TestAssetsCGI(t *testing.T) {
	r := newRuntime(t)
	p, err := loadWithAssets(t, r, "go-cgi", assetsTar(t, testAssets))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"index.html": testAssets["index.html"], "sub/data.txt": testAssets["sub/data.txt"]} {
		if st, body, _ := handle(t, p, "/asset?name="+name); st != 200 || body != want {
			t.Errorf("/assets/%s: %d %q, want %q", name, st, body, want)
		}
	}
	if st, body, _ := handle(t, p, "/asset?name=missing"); st != 404 {
		t.Errorf("/assets/missing: %d %q, want 404", st, body)
	}
	// Writes: an existing file and a new one, and a path that is the mount.
	for _, name := range []string{"index.html", "new.txt", "sub/data.txt", "sub/new/x"} {
		if _, body, _ := handle(t, p, "/asset-write?name="+name); !readOnly(body) {
			t.Errorf("write /assets/%s: %q, want a read-only error", name, body)
		}
	}
	if _, body, _ := handle(t, p, "/asset?name=index.html"); body != testAssets["index.html"] {
		t.Errorf("after the writes /assets/index.html is %q", body)
	}
	// The writable tree is beside the assets, not shadowed by them.
	if _, body, _ := handle(t, p, "/write-read?path=/other.txt"); body != "written=overwritten\nls=other.txt\n" {
		t.Errorf("write /other.txt: %q", body)
	}
	if _, body, _ := handle(t, p, "/write-read?path=/sub/x"); !strings.Contains(strings.ToLower(body), "no such file") {
		t.Errorf("write /sub/x (no /sub in the writable tree): %q", body)
	}
	// Go's wasip1 syscall package matches mounts by byte prefix, not by
	// path element: "/assets.txt" is "/assets" + ".txt", so it lands in the
	// assets mount (read-only), not in the writable tree.
	if _, body, _ := handle(t, p, "/write-read?path=/assets.txt"); !readOnly(body) {
		t.Errorf("write /assets.txt: %q", body)
	}
}

// readOnly reports whether a guest's error text is EROFS's.
func readOnly(body string) bool {
	return strings.Contains(strings.ToLower(body), "read-only file system")
}

// TestAssetsListing: a guest lists the assets as they are in the archive.
func TestAssetsListing(t *testing.T) {
	r := newRuntime(t)
	p, err := loadWithAssets(t, r, "go-cgi", assetsTar(t, testAssets))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{".": "index.html\nsub\n", "sub": "data.txt\n", "sub/": "data.txt\n"} {
		if st, body, _ := handle(t, p, "/asset?name="+name); st != 200 || body != want {
			t.Errorf("list /assets/%s: %d %q, want %q", name, st, body, want)
		}
	}
}

// probeReport is the part of probe.c's report about descriptors.
type probeReport struct {
	Asset      string `json:"asset"`
	AssetError string `json:"asset_error"`
	AssetFD    int    `json:"asset_fd"`
	FDRead     string `json:"fd_read"`
	FDError    string `json:"fd_error"`
}

func probeGet(t *testing.T, p runtime.Program, uri string) (probeReport, runtime.Boot) {
	t.Helper()
	st, body, boot := handle(t, p, uri)
	var rep probeReport
	if err := json.Unmarshal([]byte(body), &rep); st != 200 || err != nil {
		t.Fatalf("GET %s: %d %q (%v)", uri, st, body, err)
	}
	return rep, boot
}

// TestAssetsPooledInstances: an http-wasm instance that read assets and
// closed them is reused; one that left an asset open is discarded, so its
// descriptor never reaches the next request.
func TestAssetsPooledInstances(t *testing.T) {
	r := newRuntime(t)
	p, err := loadWithAssets(t, r, "probe", assetsTar(t, testAssets))
	if err != nil {
		t.Fatal(err)
	}
	rep, boot := probeGet(t, p, "/?asset=index.html")
	if rep.Asset != testAssets["index.html"] || boot != runtime.BootThaw {
		t.Fatalf("first read: %+v, boot %v", rep, boot)
	}
	rep, boot = probeGet(t, p, "/?asset=sub/data.txt")
	if rep.Asset != "data" || boot != runtime.BootWarm { // C strings end at the NUL
		t.Fatalf("second read: %+v, boot %v; want the instance reused", rep, boot)
	}
	if rep, _ = probeGet(t, p, "/?asset=missing"); !strings.Contains(rep.AssetError, "No such file") {
		t.Errorf("missing asset: %+v", rep)
	}

	leak, _ := probeGet(t, p, "/?asset=index.html&leak=1")
	if leak.Asset != testAssets["index.html"] || leak.AssetFD < 3 {
		t.Fatalf("leaking read: %+v", leak)
	}
	rep, boot = probeGet(t, p, "/?fd="+itoa(leak.AssetFD))
	if rep.FDRead != "" || rep.FDError == "" {
		t.Errorf("descriptor %d left open by the last request is readable: %+v", leak.AssetFD, rep)
	}
	if boot != runtime.BootThaw {
		t.Errorf("boot %v after a request left an asset open; want thaw (a new instance)", boot)
	}
	if n := p.Stats().Instances; n != 1 {
		t.Errorf("%d live instances, want 1", n)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestAssetsRefused: a bad archive, or one that is not what the release
// names, fails Load.
func TestAssetsRefused(t *testing.T) {
	r := newRuntime(t)
	if _, err := loadWithAssets(t, r, "go-cgi", []byte("not a tar archive, but longer than one tar block? no.")); !errors.Is(err, runtime.ErrInvalidCode) {
		t.Errorf("bad archive: %v, want ErrInvalidCode", err)
	}
	code, err := os.ReadFile(testguest.Path(t, "go-cgi"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Load(context.Background(), runtime.Spec{
		Release: registry.Release{App: "x", Assets: strings.Repeat("0", 64), Limits: registry.Limits{MemoryBytes: 64 << 20, Timeout: time.Second}},
		Code:    code,
		Assets:  assetsTar(t, testAssets),
	})
	if !errors.Is(err, runtime.ErrInvalidCode) || !strings.Contains(err.Error(), "assets") {
		t.Errorf("digest mismatch: %v", err)
	}
}

// TestNoAssets: without assets there is no /assets mount; the path is just
// a missing directory of the writable tree.
func TestNoAssets(t *testing.T) {
	r := newRuntime(t)
	p := load(t, r, "go-cgi", registry.Limits{}, nil)
	if st, body, _ := handle(t, p, "/asset?name=index.html"); st != 404 {
		t.Errorf("/assets/index.html without assets: %d %q", st, body)
	}
}
