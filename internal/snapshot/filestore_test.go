package snapshot_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/snapshot"
)

// imageFile is one file of a checkpoint image as a test lays it out: size
// bytes, zero but for data at the given offsets.
type imageFile struct {
	size int64
	data map[int64][]byte
}

// runscImage is shaped like what `runsc checkpoint --image-path` writes:
// a state file whose size is not a multiple of 4 KiB, a large sparse
// memory file with data in its first block, across a block boundary, in
// the middle and at its very end, a small metadata file, and an empty
// file. big is the size of the memory file.
func runscImage(seed uint64, big int64) map[string]imageFile {
	return map[string]imageFile{
		"checkpoint.img": {300<<10 + 123, map[int64][]byte{0: randomBytes(seed, 300<<10+123)}},
		"pages.img": {big, map[int64][]byte{
			0:              randomBytes(seed+1, 4096),
			3*4096 - 10:    randomBytes(seed+2, 20),
			big / 2:        randomBytes(seed+3, 100<<10),
			big - 1 - 2000: append(randomBytes(seed+4, 2000), 0xff),
		}},
		"pages_meta.img": {5000, map[int64][]byte{0: randomBytes(seed+5, 5000)}},
		"empty.img":      {0, nil},
	}
}

// writeImage writes the files of img into dir, sparsely (the zeros are
// holes), and returns the map PutFiles takes.
func writeImage(t testing.TB, dir string, img map[string]imageFile) map[string]string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for name, f := range img {
		path := filepath.Join(dir, name)
		out, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := out.Truncate(f.size); err != nil {
			t.Fatal(err)
		}
		for off, b := range f.data {
			if _, err := out.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
		files[name] = path
	}
	return files
}

// fileSHA returns the SHA-256 and size of the file at path, read in
// pieces so that a large file costs no memory.
func fileSHA(t testing.TB, path string) (string, int64) {
	t.Helper()
	d, n, err := hashFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return d, n
}

// hashFile is fileSHA for goroutines other than the test's.
func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// sameFiles fails t unless the files at a and b hold the same bytes.
func sameFiles(t testing.TB, a, b string) {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); ; {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			t.Fatalf("%s and %s differ in the MiB at %d", a, b, off)
		}
		if erra != nil || errb != nil {
			if erra != errb {
				t.Fatalf("reading %s and %s: %v, %v", a, b, erra, errb)
			}
			return
		}
		off += int64(na)
	}
}

// infosOf returns what the manifest should list for files: the parts
// sorted by name with their SHA-256 and size.
func infosOf(t testing.TB, files map[string]string) []snapshot.PartInfo {
	t.Helper()
	var infos []snapshot.PartInfo
	for _, name := range slices.Sorted(maps.Keys(files)) {
		d, n := fileSHA(t, files[name])
		infos = append(infos, snapshot.PartInfo{Name: name, Digest: d, Size: n})
	}
	return infos
}

// fileState is what PutFiles must not change about a source file.
type fileState struct {
	sha     string
	size    int64
	mode    fs.FileMode
	modTime time.Time
}

func stateOf(t testing.TB, path string) fileState {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	d, n := fileSHA(t, path)
	return fileState{d, n, fi.Mode(), fi.ModTime()}
}

func putFiles(t testing.TB, s *snapshot.Store, m snapshot.Manifest, files map[string]string) snapshot.Manifest {
	t.Helper()
	got, err := s.PutFiles(context.Background(), m, files)
	if err != nil {
		t.Fatalf("PutFiles(%s): %v", m.Release[:8], err)
	}
	return got
}

// emptyDir makes a new empty directory for GetFiles to write into.
func emptyDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "image")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPutFilesGetFilesRoundTrip(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	s := open(t, dir, snapshot.Options{Now: clk.Now})
	files := writeImage(t, t.TempDir(), runscImage(1, 64<<20))
	before := map[string]fileState{}
	for name, path := range files {
		before[name] = stateOf(t, path)
	}

	stored := putFiles(t, s, manifestFor("app", releaseID("a")), files)

	if stored.Format != snapshot.FormatVersion || !stored.Created.Equal(clk.Now()) {
		t.Errorf("Format, Created = %d, %v; want %d, %v", stored.Format, stored.Created, snapshot.FormatVersion, clk.Now())
	}
	if want := infosOf(t, files); !reflect.DeepEqual(stored.Parts, want) {
		t.Errorf("Parts = %+v, want %+v", stored.Parts, want)
	}
	if names := dirNames(t, filepath.Join(dir, stored.Release)); !slices.Equal(names, partFiles(stored)) {
		t.Errorf("snapshot directory holds %v, want %v", names, partFiles(stored))
	}
	for name, path := range files {
		if got := stateOf(t, path); got != before[name] {
			t.Errorf("PutFiles changed its source %s: %+v, was %+v", name, got, before[name])
		}
	}

	out := emptyDir(t)
	m, err := s.GetFiles(context.Background(), wantFor(stored), out)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, stored) {
		t.Errorf("GetFiles manifest = %+v, want what PutFiles returned, %+v", m, stored)
	}
	if names := dirNames(t, out); !slices.Equal(names, slices.Sorted(maps.Keys(files))) {
		t.Errorf("GetFiles wrote %v, want the part names", names)
	}
	for name, path := range files {
		sameFiles(t, filepath.Join(out, name), path)
	}

	// The two APIs share one store: Get reads what PutFiles wrote.
	_, parts := get(t, s, wantFor(stored))
	for i, p := range parts {
		if sha(p.Data) != stored.Parts[i].Digest {
			t.Errorf("Get of a snapshot from PutFiles: part %q differs", p.Name)
		}
	}
}

func TestPutGetFilesInterop(t *testing.T) {
	s := open(t, t.TempDir(), snapshot.Options{})
	m := put(t, s, manifestFor("app", releaseID("a")), sampleParts(1))
	_, got, err := getFiles(t, s, context.Background(), wantFor(m))
	if err != nil {
		t.Fatal(err)
	}
	equalParts(t, got, sortedParts(sampleParts(1)))
}

func TestPutFilesKeepsUnchangedPart(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, snapshot.Options{})
	src := t.TempDir()
	files := writeImage(t, src, runscImage(1, 4<<20))
	m1 := putFiles(t, s, manifestFor("app", releaseID("r")), files)
	partPath := func(m snapshot.Manifest, name string) string {
		for _, p := range m.Parts {
			if p.Name == name {
				return filepath.Join(dir, m.Release, p.Digest)
			}
		}
		t.Fatalf("no part %q", name)
		return ""
	}
	stat := func(path string) os.FileInfo {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	kept := stat(partPath(m1, "pages.img"))

	// A second checkpoint in which only the state file changed.
	writeFile(t, files["checkpoint.img"], randomBytes(2, 1000))
	m2 := putFiles(t, s, manifestFor("app", m1.Release), files)
	if !os.SameFile(kept, stat(partPath(m2, "pages.img"))) {
		t.Errorf("re-putting an unchanged part rewrote its file")
	}
	if names := dirNames(t, filepath.Join(dir, m1.Release)); !slices.Equal(names, partFiles(m2)) {
		t.Errorf("after replacing, directory holds %v, want %v", names, partFiles(m2))
	}
	out := emptyDir(t)
	if _, err := s.GetFiles(context.Background(), wantFor(m2), out); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, filepath.Join(out, "checkpoint.img"), files["checkpoint.img"])

	// Two parts with the same bytes share one file.
	same := writeImage(t, t.TempDir(), map[string]imageFile{
		"a.img": {5000, map[int64][]byte{0: randomBytes(7, 5000)}},
		"b.img": {5000, map[int64][]byte{0: randomBytes(7, 5000)}},
	})
	m3 := putFiles(t, s, manifestFor("app", releaseID("same")), same)
	if names := dirNames(t, filepath.Join(dir, m3.Release)); len(names) != 2 {
		t.Errorf("two parts with the same bytes should share one file, directory holds %v", names)
	}
	_, got, err := getFiles(t, s, context.Background(), wantFor(m3))
	if err != nil || len(got) != 2 || !bytes.Equal(got[0].Data, got[1].Data) {
		t.Errorf("GetFiles of two identical parts = %d parts, %v", len(got), err)
	}
}

func TestPutFilesInvalid(t *testing.T) {
	src := t.TempDir()
	good := writeImage(t, src, map[string]imageFile{"checkpoint.img": {10, map[int64][]byte{0: []byte("0123456789")}}})
	with := func(name, path string) map[string]string { return map[string]string{name: path} }
	tests := []struct {
		name     string
		edit     func(m *snapshot.Manifest)
		files    map[string]string
		sentinel error // nil: the file system's error, wrapping fs.ErrNotExist
	}{
		{"short release", func(m *snapshot.Manifest) { m.Release = m.Release[:63] }, good, snapshot.ErrInvalid},
		{"empty app", func(m *snapshot.Manifest) { m.App = "" }, good, snapshot.ErrInvalid},
		{"empty runtime version", func(m *snapshot.Manifest) { m.RuntimeVersion = "" }, good, snapshot.ErrInvalid},
		{"upper-case part name", nil, with("Checkpoint.img", good["checkpoint.img"]), snapshot.ErrInvalid},
		{"part name starting with a dot", nil, with(".img", good["checkpoint.img"]), snapshot.ErrInvalid},
		{"part name ..", nil, with("..", good["checkpoint.img"]), snapshot.ErrInvalid},
		{"part name with a slash", nil, with("a/b.img", good["checkpoint.img"]), snapshot.ErrInvalid},
		{"part name climbing out", nil, with("../x", good["checkpoint.img"]), snapshot.ErrInvalid},
		{"empty part name", nil, with("", good["checkpoint.img"]), snapshot.ErrInvalid},
		{"empty path", nil, with("checkpoint.img", ""), snapshot.ErrInvalid},
		{"path is a directory", nil, with("checkpoint.img", src), snapshot.ErrInvalid},
		{"meta too large", func(m *snapshot.Manifest) { m.Meta = map[string]string{"x": strings.Repeat("y", 2<<20)} }, good, snapshot.ErrInvalid},
		{"missing file", nil, with("checkpoint.img", filepath.Join(src, "nope")), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, snapshot.Options{})
			m := manifestFor("app", releaseID("r"))
			if tt.edit != nil {
				tt.edit(&m)
			}
			_, err := s.PutFiles(context.Background(), m, tt.files)
			if tt.sentinel != nil {
				wantSentinel(t, err, tt.sentinel)
			} else if !errors.Is(err, fs.ErrNotExist) || slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
				t.Errorf("PutFiles = %v, want the file system's fs.ErrNotExist and no sentinel", err)
			}
			if names := dirNames(t, dir); !slices.Equal(names, []string{"quarantine"}) {
				t.Errorf("a refused PutFiles left %v in the store", names)
			}
		})
	}
}

func TestGetFilesInvalid(t *testing.T) {
	s := open(t, t.TempDir(), snapshot.Options{})
	m := put(t, s, manifestFor("app", releaseID("r")), sampleParts(1))
	ctx := context.Background()
	bad := wantFor(m)
	bad.Release = "../" + bad.Release[3:]
	_, err := s.GetFiles(ctx, bad, emptyDir(t))
	wantSentinel(t, err, snapshot.ErrInvalid)
	_, err = s.GetFiles(ctx, wantFor(m), "")
	wantSentinel(t, err, snapshot.ErrInvalid)
	file := filepath.Join(t.TempDir(), "file")
	writeFile(t, file, nil)
	_, err = s.GetFiles(ctx, wantFor(m), file)
	wantSentinel(t, err, snapshot.ErrInvalid)
	if _, err := s.GetFiles(ctx, wantFor(m), filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("GetFiles into a missing directory = %v, want fs.ErrNotExist", err)
	}

	// A part whose name is taken in dir: nothing is overwritten, and the
	// parts written before it are removed.
	out := emptyDir(t)
	mine := filepath.Join(out, "memory") // the last part by name
	writeFile(t, mine, []byte("the caller's"))
	if _, err := s.GetFiles(ctx, wantFor(m), out); !errors.Is(err, fs.ErrExist) {
		t.Errorf("GetFiles over an existing file = %v, want fs.ErrExist", err)
	}
	if names := dirNames(t, out); !slices.Equal(names, []string{"memory"}) {
		t.Errorf("after a failed GetFiles the directory holds %v, want only the caller's file", names)
	}
	if got := string(readFile(t, mine)); got != "the caller's" {
		t.Errorf("GetFiles overwrote a file it did not create: %q", got)
	}
}

// TestGetFilesAfterDamage damages a snapshot that PutFiles stored from
// files, in its large sparse part too, and checks GetFiles refuses it and
// leaves nothing behind.
func TestGetFilesAfterDamage(t *testing.T) {
	const big = 16 << 20
	files := writeImage(t, t.TempDir(), runscImage(1, big))
	tests := []struct {
		name   string
		part   string
		damage func(t *testing.T, path string)
		says   string
	}{
		{"truncated by one byte", "pages.img", func(t *testing.T, path string) {
			if err := os.Truncate(path, big-1); err != nil {
				t.Fatal(err)
			}
		}, fmt.Sprintf("is %d bytes, manifest says %d", big-1, big)},
		{"truncated to nothing", "checkpoint.img", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, `part "checkpoint.img"`},
		{"a byte written into a hole", "pages.img", func(t *testing.T, path string) { writeAt(t, path, 7<<20, []byte{1}) }, `part "pages.img" has sha256`},
		{"a data bit flipped", "pages.img", func(t *testing.T, path string) { flipBit(t, path, big/2+5) }, `part "pages.img" has sha256`},
		{"last byte flipped", "pages.img", func(t *testing.T, path string) { flipBit(t, path, big-1) }, `part "pages.img" has sha256`},
		{"first byte flipped", "checkpoint.img", func(t *testing.T, path string) { flipBit(t, path, 0) }, `part "checkpoint.img" has sha256`},
		{"removed", "pages_meta.img", func(t *testing.T, path string) { os.Remove(path) }, `part "pages_meta.img" (sha256 `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, snapshot.Options{})
			m := putFiles(t, s, manifestFor("app", releaseID("a")), files)
			for _, p := range m.Parts {
				if p.Name == tt.part {
					tt.damage(t, filepath.Join(dir, m.Release, p.Digest))
				}
			}
			out := emptyDir(t)
			_, err := s.GetFiles(context.Background(), wantFor(m), out)
			wantSentinel(t, err, snapshot.ErrCorrupt)
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error %q does not say %q", err, tt.says)
			}
			if names := dirNames(t, out); len(names) != 0 {
				t.Errorf("GetFiles failed and left %v", names)
			}
		})
	}
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func flipBit(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestFilesBoundedMemory checks that PutFiles and GetFiles of a 64 MiB
// part with 16 MiB of data allocate a small, fixed amount, not the part.
func TestFilesBoundedMemory(t *testing.T) {
	const size, limit = 64 << 20, 4 << 20
	data := map[int64][]byte{}
	for i := range int64(16) {
		data[i*4<<20] = randomBytes(uint64(i), 1<<20) // 1 MiB of every 4
	}
	files := writeImage(t, t.TempDir(), map[string]imageFile{"pages.img": {size, data}})
	data = nil
	s := open(t, t.TempDir(), snapshot.Options{})
	m := manifestFor("app", releaseID("a"))

	allocated := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	n := allocated(func() { m = putFiles(t, s, m, files) })
	t.Logf("PutFiles of a %d-byte file allocated %d bytes", size, n)
	if n > limit {
		t.Errorf("PutFiles of a %d-byte file allocated %d bytes, want under %d", size, n, limit)
	}
	out := emptyDir(t)
	n = allocated(func() {
		if _, err := s.GetFiles(context.Background(), wantFor(m), out); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("GetFiles of a %d-byte part allocated %d bytes", size, n)
	if n > limit {
		t.Errorf("GetFiles of a %d-byte part allocated %d bytes, want under %d", size, n, limit)
	}
	sameFiles(t, filepath.Join(out, "pages.img"), files["pages.img"])
}

// TestFilesCancel cancels PutFiles and GetFiles at every point where they
// check ctx, the middle of a large part included, and checks each leaves
// no temporary file, the previous snapshot intact, and no file in the
// directory GetFiles was writing to.
func TestFilesCancel(t *testing.T) {
	v1 := writeImage(t, t.TempDir(), runscImage(1, 8<<20))
	v2 := writeImage(t, t.TempDir(), runscImage(2, 8<<20))
	for _, first := range []bool{true, false} {
		t.Run(fmt.Sprintf("first Put %v", first), func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, snapshot.Options{})
			rel := releaseID("r")
			var m1 snapshot.Manifest
			if !first {
				m1 = putFiles(t, s, manifestFor("app", rel), v1)
			}
			total := s.TotalBytes()
			cancelled := 0
			for ok := 0; ; ok++ {
				ctx := &failingCtx{Context: context.Background(), okCalls: ok}
				_, err := s.PutFiles(ctx, manifestFor("app", rel), v2)
				if err == nil {
					break
				}
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("PutFiles cancelled after %d checks = %v, want context.Canceled", ok, err)
				}
				cancelled++
				if first {
					if names := dirNames(t, dir); !slices.Equal(names, []string{"quarantine"}) {
						t.Fatalf("PutFiles cancelled after %d checks left %v", ok, names)
					}
					continue
				}
				if names := dirNames(t, filepath.Join(dir, rel)); !slices.Equal(names, partFiles(m1)) {
					t.Fatalf("PutFiles cancelled after %d checks: directory holds %v, want %v", ok, names, partFiles(m1))
				}
				if s.TotalBytes() != total {
					t.Fatalf("TotalBytes = %d after a cancelled PutFiles, want %d", s.TotalBytes(), total)
				}
				out := emptyDir(t)
				if _, err := s.GetFiles(context.Background(), wantFor(m1), out); err != nil {
					t.Fatalf("previous snapshot after PutFiles cancelled after %d checks: %v", ok, err)
				}
				sameFiles(t, filepath.Join(out, "pages.img"), v1["pages.img"])
			}
			// 8 MiB is 8 buffers: some cancellations came mid-part.
			if cancelled < 10 {
				t.Fatalf("PutFiles checked ctx only %d times", cancelled)
			}
		})
	}
	t.Run("GetFiles", func(t *testing.T) {
		s := open(t, t.TempDir(), snapshot.Options{})
		m := putFiles(t, s, manifestFor("app", releaseID("r")), v1)
		cancelled := 0
		for ok := 0; ; ok++ {
			ctx := &failingCtx{Context: context.Background(), okCalls: ok}
			_, _, err := getFiles(t, s, ctx, wantFor(m)) // fails t if files are left
			if err == nil {
				break
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("GetFiles cancelled after %d checks = %v, want context.Canceled", ok, err)
			}
			cancelled++
		}
		if cancelled < 10 {
			t.Fatalf("GetFiles checked ctx only %d times", cancelled)
		}
	})
}

// checkImage checks that dir holds exactly the parts of m, each with the
// digest and size m lists: whatever version GetFiles wrote, all of it and
// only it.
func checkImage(dir string, m snapshot.Manifest) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var got, want []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	for _, p := range m.Parts {
		want = append(want, p.Name)
		d, n, err := hashFile(filepath.Join(dir, p.Name))
		if err != nil {
			return err
		}
		if d != p.Digest || n != p.Size {
			return fmt.Errorf("GetFiles wrote part %q of %d bytes, sha256 %s; manifest says %d, %s", p.Name, n, d[:12], p.Size, p.Digest[:12])
		}
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("GetFiles wrote %v, manifest lists %v", got, want)
	}
	return nil
}

// growingCtx appends a byte to a file each time its Err is called: a
// checkpoint still being written while PutFiles reads it.
type growingCtx struct {
	context.Context
	path string
}

func (c growingCtx) Err() error {
	f, err := os.OpenFile(c.path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte{1}); err != nil {
		panic(err)
	}
	return nil
}

func TestPutFilesRefusesFileChangingSize(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, snapshot.Options{})
	files := writeImage(t, t.TempDir(), runscImage(1, 4<<20))
	_, err := s.PutFiles(growingCtx{context.Background(), files["pages.img"]}, manifestFor("app", releaseID("r")), files)
	if err == nil || !strings.Contains(err.Error(), "changed size while read") {
		t.Fatalf("PutFiles of a growing file = %v, want it refused", err)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"quarantine"}) {
		t.Errorf("a refused PutFiles left %v in the store", names)
	}
}

// TestFilesConcurrent runs PutFiles, GetFiles, Put, Get and Delete at once
// on a few releases, for the race detector, for every GetFiles to write a
// whole snapshot of one version, and for the index to stay true to the
// disk.
func TestFilesConcurrent(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, snapshot.Options{MaxBytes: 2 << 20})
	var versions []map[string]string
	for v := range 3 {
		versions = append(versions, writeImage(t, t.TempDir(), runscImage(uint64(v), 2<<20)))
	}
	var rels []string
	for i := range 4 {
		rels = append(rels, releaseID(fmt.Sprint(i)))
	}
	ctx := context.Background()
	outs := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for w := range 8 {
		wg.Go(func() {
			for i := range 20 {
				rel := rels[(w+i)%len(rels)]
				m := manifestFor("app", rel)
				var err error
				switch (w + i) % 6 {
				case 0, 1:
					_, err = s.PutFiles(ctx, m, versions[i%len(versions)])
				case 2:
					_, err = s.Put(ctx, m, sampleParts(uint64(i%3)))
				case 3, 4:
					out, merr := os.MkdirTemp(outs, "image")
					if merr != nil {
						errs <- merr
						return
					}
					var gm snapshot.Manifest
					if gm, err = s.GetFiles(ctx, wantFor(m), out); err == nil {
						err = checkImage(out, gm)
					}
				case 5:
					err = s.Delete(rel)
				}
				if err != nil && !errors.Is(err, snapshot.ErrNotFound) {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	list, _ := s.List()
	fresh, _ := open(t, dir, snapshot.Options{}).List()
	if !reflect.DeepEqual(list, fresh) {
		t.Errorf("index after the run\n%+v\ndiffers from a fresh Open\n%+v", list, fresh)
	}
	for _, i := range list {
		if _, _, err := getFiles(t, s, ctx, snapshot.Want{App: "app", Release: i.Release, Runtime: testRuntime, RuntimeVersion: testRuntimeVersion}); err != nil {
			t.Error(err)
		}
	}
}
