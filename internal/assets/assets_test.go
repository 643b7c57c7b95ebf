package assets

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tetratelabs/wazero/sys"
)

// entry is one tar entry for the tests.
type entry struct {
	name     string
	typeflag byte
	body     string
	mode     int64
	size     int64 // overrides len(body) when non-zero
	linkname string
	format   tar.Format
}

func file(name, body string) entry { return entry{name: name, typeflag: tar.TypeReg, body: body} }
func dir(name string) entry        { return entry{name: name, typeflag: tar.TypeDir} }

func archive(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typeflag, Mode: e.mode, Size: int64(len(e.body)), Linkname: e.linkname, Format: e.format}
		if e.typeflag == tar.TypeXGlobalHeader {
			hdr = &tar.Header{Name: e.name, Typeflag: e.typeflag, PAXRecords: map[string]string{"comment": e.body}}
		}
		if e.mode == 0 && e.typeflag != tar.TypeXGlobalHeader {
			hdr.Mode = 0o644
		}
		if e.typeflag != tar.TypeReg {
			hdr.Size = 0
		}
		if e.size != 0 {
			hdr.Size = e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("%s: %v", e.name, err)
		}
		if e.typeflag == tar.TypeXGlobalHeader {
			continue // the body is in the records
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatalf("%s: %v", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// patch overwrites the first header's field at off (name 0, size 124) with
// value, NUL-padded, and fixes the header's checksum: it makes headers
// archive/tar refuses to write.
func patch(b []byte, off, size int, value string) []byte {
	b = bytes.Clone(b)
	copy(b[off:off+size], append([]byte(value), make([]byte, size)...))
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b[:512] {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func TestParse(t *testing.T) {
	long := strings.Repeat("d/", 60) + "f.txt" // > 100 bytes: a PAX or GNU long name
	cases := []struct {
		name    string
		entries []entry
		files   map[string]string // path → content; "" content and trailing "/" for a dir
		err     string            // substring of the error; "" for success
	}{
		{"empty", nil, map[string]string{}, ""},
		{"files and dirs", []entry{dir("sub/"), file("index.html", "<h1>hi</h1>"), file("sub/data.txt", "data")},
			map[string]string{"index.html": "<h1>hi</h1>", "sub/": "", "sub/data.txt": "data"}, ""},
		{"implicit parents", []entry{file("a/b/c.txt", "c")}, map[string]string{"a/": "", "a/b/": "", "a/b/c.txt": "c"}, ""},
		{"dir after its files", []entry{file("a/x", "x"), dir("a/")}, map[string]string{"a/": "", "a/x": "x"}, ""},
		{"dot slash prefix", []entry{dir("./"), file("./x", "x"), dir("./d/")}, map[string]string{"x": "x", "d/": ""}, ""},
		{"empty file", []entry{file("e", "")}, map[string]string{"e": ""}, ""},
		{"long name", []entry{file(long, "deep")}, map[string]string{long: "deep"}, ""},
		{"GNU long name", []entry{{name: long, typeflag: tar.TypeReg, body: "g", format: tar.FormatGNU}}, map[string]string{long: "g"}, ""},
		{"binary content", []entry{file("b", "\x00\xff\x00")}, map[string]string{"b": "\x00\xff\x00"}, ""},
		{"pax global header", []entry{{name: "pax_global_header", typeflag: tar.TypeXGlobalHeader, body: "git commit"}, file("x", "x")}, map[string]string{"x": "x"}, ""},

		{"absolute", []entry{file("/etc/passwd", "x")}, nil, "absolute path"},
		{"dotdot", []entry{file("../x", "x")}, nil, `".."`},
		{"dotdot inside", []entry{file("a/../../x", "x")}, nil, `".."`},
		{"dot inside", []entry{file("a/./x", "x")}, nil, "not clean"},
		{"double slash", []entry{file("a//x", "x")}, nil, "not clean"},
		{"not utf-8", []entry{file("\xff", "x")}, nil, "UTF-8"},
		{"duplicate file", []entry{file("x", "1"), file("x", "2")}, nil, "twice"},
		{"duplicate dir", []entry{dir("d/"), dir("d/")}, nil, "twice"},
		{"file then dir", []entry{file("x", "1"), dir("x/")}, nil, "twice"},
		{"dir then file", []entry{dir("x/"), file("x", "1")}, nil, "twice"},
		{"implicit dir then file", []entry{file("x/y", "1"), file("x", "1")}, nil, "twice"},
		{"under a file", []entry{file("x", "1"), file("x/y", "2")}, nil, "which is a file"},
		{"root as a file", []entry{file(".", "x")}, nil, "root"},
		{"symlink", []entry{{name: "l", typeflag: tar.TypeSymlink, linkname: "/etc/passwd"}}, nil, "symbolic link"},
		{"hard link", []entry{file("x", "1"), {name: "l", typeflag: tar.TypeLink, linkname: "x"}}, nil, "hard link"},
		{"char device", []entry{{name: "c", typeflag: tar.TypeChar}}, nil, "character device"},
		{"block device", []entry{{name: "b", typeflag: tar.TypeBlock}}, nil, "block device"},
		{"fifo", []entry{{name: "p", typeflag: tar.TypeFifo}}, nil, "named pipe"},
		{"long element", []entry{file(strings.Repeat("x", MaxNameLen+1), "")}, nil, "longer than 255"},
		{"long path", []entry{file(strings.Repeat("abcdefg/", MaxPathLen/8+1)+"x", "")}, nil, "longer than 4096"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Parse(archive(t, c.entries...))
			if c.err != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Parse = %v; want an ErrInvalid saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			all := map[string]bool{".": true}
			for name := range c.files {
				for p := strings.TrimSuffix(name, "/"); p != "."; p = path.Dir(p) {
					all[p] = true
				}
			}
			if f.Len() != len(all) {
				t.Errorf("Len = %d, want %d", f.Len(), len(all))
			}
			var size int64
			var names []string
			for name, want := range c.files {
				p := strings.TrimSuffix(name, "/")
				names = append(names, p)
				fi, err := f.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.IsDir() != strings.HasSuffix(name, "/") {
					t.Errorf("%s: IsDir %v", name, fi.IsDir())
				}
				if fi.IsDir() {
					continue
				}
				size += int64(len(want))
				got, err := f.ReadFile(p)
				if err != nil || string(got) != want {
					t.Errorf("%s: %q, %v; want %q", name, got, err, want)
				}
			}
			if f.Size() != size {
				t.Errorf("Size = %d, want %d", f.Size(), size)
			}
			if err := fstest.TestFS(f, names...); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestParseCorrupt: damaged archives are refused, never half-read.
func TestParseCorrupt(t *testing.T) {
	good := archive(t, file("a.txt", strings.Repeat("a", 1000)), file("b.txt", "b"))
	cases := map[string][]byte{
		"not a tar":       []byte(strings.Repeat("this is not a tar archive\n", 40)),
		"truncated":       good[:700],
		"bad checksum":    append([]byte{good[0] ^ 1}, good[1:]...),
		"claims too much": patch(good, 124, 12, "77777777777"),
		"trailing slash":  patch(good, 0, 100, "a.txt/"),
		"empty name":      patch(good, 0, 100, ""),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if f, err := Parse(b); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse = %v, %v; want ErrInvalid", f, err)
			}
		})
	}
}

func TestParseTooManyEntries(t *testing.T) {
	entries := make([]entry, MaxEntries+1)
	for i := range entries {
		entries[i] = dir("d" + strings.Repeat("x", i%7) + "/" + itoa(i) + "/")
	}
	if _, err := Parse(archive(t, entries...)); err == nil || !strings.Contains(err.Error(), "entries") {
		t.Fatalf("Parse = %v; want too many entries", err)
	}
}

func itoa(i int) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		if i /= 10; i == 0 {
			return string(b)
		}
	}
}

func TestModesAndStat(t *testing.T) {
	f, err := Parse(archive(t,
		entry{name: "run.sh", typeflag: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o700},
		entry{name: "secret", typeflag: tar.TypeReg, body: "s", mode: 0o600},
		dir("d/"),
	))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]fs.FileMode{"run.sh": 0o555, "secret": 0o444, "d": fs.ModeDir | 0o555, ".": fs.ModeDir | 0o555} {
		fi, err := f.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
		st, ok := fi.Sys().(*sys.Stat_t)
		if !ok || st.Dev != Dev || st.Ino == 0 || st.Mode != want || st.Size != fi.Size() {
			t.Errorf("%s: Sys() = %+v", name, fi.Sys())
		}
	}
	a, _ := f.Stat("run.sh")
	b, _ := f.Stat("secret")
	if a.Sys().(*sys.Stat_t).Ino == b.Sys().(*sys.Stat_t).Ino {
		t.Error("two files share an inode number")
	}
}

func TestFile(t *testing.T) {
	f, err := Parse(archive(t, file("x", "hello world"), dir("d/"), file("d/a", "a"), file("d/b", "b"), file("d/c", "c")))
	if err != nil {
		t.Fatal(err)
	}
	h, err := f.Open("x")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h.(io.Writer); ok {
		t.Fatal("an asset file has a Write method")
	}
	r := h.(*File)
	buf := make([]byte, 5)
	if n, err := r.ReadAt(buf, 6); n != 5 || err != nil || string(buf) != "world" {
		t.Errorf("ReadAt = %d, %v, %q", n, err, buf)
	}
	if n, err := r.ReadAt(buf, 8); n != 3 || err != io.EOF {
		t.Errorf("ReadAt past the end = %d, %v", n, err)
	}
	if off, err := r.Seek(-5, io.SeekEnd); off != 6 || err != nil {
		t.Errorf("Seek = %d, %v", off, err)
	}
	if b, _ := io.ReadAll(r); string(b) != "world" {
		t.Errorf("read after Seek: %q", b)
	}
	if _, err := r.Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek before the start succeeded")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	if _, err := r.Read(buf); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Read after Close = %v", err)
	}

	d, err := f.Open("d")
	if err != nil {
		t.Fatal(err)
	}
	rd := d.(fs.ReadDirFile)
	if _, err := rd.Read(buf); err == nil {
		t.Error("Read of a directory succeeded")
	}
	if es, err := rd.ReadDir(2); len(es) != 2 || err != nil || es[0].Name() != "a" {
		t.Errorf("ReadDir(2) = %v, %v", es, err)
	}
	if es, err := rd.ReadDir(2); len(es) != 1 || err != nil {
		t.Errorf("ReadDir(2) again = %v, %v", es, err)
	}
	if es, err := rd.ReadDir(2); len(es) != 0 || err != io.EOF {
		t.Errorf("ReadDir at the end = %v, %v", es, err)
	}
	if _, err := d.(io.Seeker).Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if es, err := rd.ReadDir(-1); len(es) != 3 || err != nil {
		t.Errorf("ReadDir(-1) after rewinding = %v, %v", es, err)
	}

	for _, name := range []string{"/x", "../x", "x/", "", "missing"} {
		if _, err := f.Open(name); err == nil {
			t.Errorf("Open(%q) succeeded", name)
		}
	}
	if _, err := f.ReadDir("x"); err == nil {
		t.Error("ReadDir of a file succeeded")
	}
	if _, err := f.ReadFile("d"); err == nil {
		t.Error("ReadFile of a directory succeeded")
	}
}

// TestReadFileCopies: the caller cannot change the tree through ReadFile.
func TestReadFileCopies(t *testing.T) {
	f, err := Parse(archive(t, file("x", "abc")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := f.ReadFile("x")
	b[0] = 'z'
	if b, _ := f.ReadFile("x"); string(b) != "abc" {
		t.Fatalf("the tree changed: %q", b)
	}
}

func TestConcurrentReaders(t *testing.T) {
	f, err := Parse(archive(t, file("x", strings.Repeat("0123456789", 1000))))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	for i := 0; i < 8; i++ {
		go func() {
			h, err := f.Open("x")
			if err == nil {
				var b []byte
				b, err = io.ReadAll(h)
				if err == nil && len(b) != 10000 {
					err = errors.New("short read")
				}
				h.Close()
			}
			done <- err
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// FuzzAssetsTar: Parse never panics, and whatever it accepts is a valid
// fs.FS whose every file reads back as Stat says.
func FuzzAssetsTar(f *testing.F) {
	f.Add([]byte{})
	f.Add(archive(f, dir("sub/"), file("index.html", "<h1>hi</h1>"), file("sub/data.txt", "data")))
	f.Add(archive(f, file("a/b/c", "c"), dir("a/")))
	f.Add(archive(f, file("../x", "x")))
	f.Add(archive(f, entry{name: "l", typeflag: tar.TypeSymlink, linkname: "x"}))
	f.Add(archive(f, entry{name: strings.Repeat("d/", 80) + "x", typeflag: tar.TypeReg, body: "x", format: tar.FormatPAX}))
	f.Add(archive(f, entry{name: strings.Repeat("d/", 80) + "x", typeflag: tar.TypeReg, body: "x", format: tar.FormatGNU}))
	f.Fuzz(func(t *testing.T, b []byte) {
		tree, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		var size int64
		err = fs.WalkDir(tree, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			data, err := fs.ReadFile(tree, p)
			if err != nil {
				return err
			}
			if int64(len(data)) != fi.Size() {
				t.Fatalf("%s: read %d bytes, Stat says %d", p, len(data), fi.Size())
			}
			size += fi.Size()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if size != tree.Size() || size > int64(len(b)) {
			t.Fatalf("files hold %d bytes, Size says %d, archive is %d", size, tree.Size(), len(b))
		}
	})
}
