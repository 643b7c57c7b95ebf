package tree

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// snapshot describes the tree under dir: each path's kind, mode and
// content (a link's target), for comparing trees.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "link " + target
		case fi.IsDir():
			out[rel] = "dir " + fi.Mode().Perm().String()
		default:
			b, _ := os.ReadFile(p)
			out[rel] = "file " + fi.Mode().Perm().String() + " " + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// sample makes a tree of every kind Pack takes.
func sample(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	for _, d := range []string{"a/b/c", "empty", "ro"} {
		os.MkdirAll(filepath.Join(src, d), 0o755)
	}
	os.WriteFile(filepath.Join(src, "top.txt"), []byte("top"), 0o644)
	os.WriteFile(filepath.Join(src, "a/b/c/deep.txt"), []byte("deep"), 0o600)
	os.WriteFile(filepath.Join(src, "a/run.sh"), []byte("#!/bin/sh\n"), 0o755)
	os.Chmod(filepath.Join(src, "a/run.sh"), 0o755|fs.ModeSetuid)
	os.WriteFile(filepath.Join(src, "ro/inside.txt"), []byte("inside"), 0o644)
	os.Chmod(filepath.Join(src, "ro"), 0o555)
	os.Symlink("a/b", filepath.Join(src, "link"))
	os.Symlink("/etc/hostname", filepath.Join(src, "abs-link"))
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(filepath.Join(src, "top.txt"), old, old)
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "ro"), 0o755) })
	return src
}

func pack(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Pack(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRoundTrip: what Pack writes, Unpack puts back as it was: kinds,
// modes (a read-only directory's too), contents, links, times.
func TestRoundTrip(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links and modes")
	}
	src := sample(t)
	var buf bytes.Buffer
	st, err := Pack(src, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 4 || st.Dirs != 5 || st.Symlinks != 2 || st.Bytes != int64(len("top")+len("deep")+len("#!/bin/sh\n")+len("inside")) {
		t.Fatalf("pack counted %+v", st)
	}
	dst := filepath.Join(t.TempDir(), "new", "dst") // made, parents too
	got, err := Unpack(dst, &buf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dst, "ro"), 0o755) })
	if got != st {
		t.Errorf("unpack counted %+v, pack %+v", got, st)
	}
	want := snapshot(t, src)
	have := snapshot(t, dst)
	want["."], have["."] = "", "" // the directories themselves
	if !equal(want, have) {
		t.Fatalf("unpacked\n%v\nwant\n%v", have, want)
	}
	if fi, _ := os.Stat(filepath.Join(dst, "a/run.sh")); fi.Mode()&fs.ModeSetuid == 0 {
		t.Errorf("setuid not kept: %v", fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Join(dst, "top.txt")); !fi.ModTime().Equal(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("time not kept: %v", fi.ModTime())
	}
	if entries, _ := os.ReadDir(dst); len(entries) != len(mustReadDir(t, src)) {
		t.Errorf("something beside the tree was left: %v", entries)
	}
}

func mustReadDir(t *testing.T, dir string) []fs.DirEntry {
	t.Helper()
	e, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestPackThroughLink: a link to a directory packs as the directory.
func TestPackThroughLink(t *testing.T) {
	src := sample(t)
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(src, link)
	var direct, through bytes.Buffer
	a, err1 := Pack(src, &direct)
	b, err2 := Pack(link, &through)
	if err1 != nil || err2 != nil || a != b || a.Files == 0 || !bytes.Equal(direct.Bytes(), through.Bytes()) {
		t.Fatalf("through a link %+v %v, straight %+v %v", b, err2, a, err1)
	}
}

// TestMerge: an archive merges into what is there: its files replace
// theirs, its directories merge, the rest stays.
func TestMerge(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "d/new.txt"), []byte("new"), 0o644)
	os.WriteFile(filepath.Join(src, "same.txt"), []byte("archive's"), 0o644)
	dst := t.TempDir()
	os.MkdirAll(filepath.Join(dst, "d"), 0o755)
	os.WriteFile(filepath.Join(dst, "d/kept.txt"), []byte("kept"), 0o644)
	os.WriteFile(filepath.Join(dst, "same.txt"), []byte("theirs"), 0o644)
	if _, err := Unpack(dst, bytes.NewReader(pack(t, src))); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{".": snapshot(t, dst)["."], "d": "dir -rwxr-xr-x", "d/new.txt": "file -rw-r--r-- new", "d/kept.txt": "file -rw-r--r-- kept", "same.txt": "file -rw-r--r-- archive's"}
	if got := snapshot(t, dst); !equal(got, want) {
		t.Fatalf("merged into\n%v\nwant\n%v", got, want)
	}
}

// archive builds a tar stream from headers (and contents for files).
func archive(t *testing.T, entries ...any) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < len(entries); i++ {
		h := entries[i].(*tar.Header)
		var body []byte
		if h.Typeflag == tar.TypeReg {
			i++
			body = []byte(entries[i].(string))
			h.Size = int64(len(body))
		}
		if h.Mode == 0 && h.Typeflag != tar.TypeXGlobalHeader {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	return buf.Bytes()
}

// TestRefused: archives Unpack refuses leave the destination as it was
// (no staging directory left, nothing written outside it), and say why.
func TestRefused(t *testing.T) {
	outside := t.TempDir()
	whole := archive(t, &tar.Header{Typeflag: tar.TypeReg, Name: "a.txt"}, "aaaa", &tar.Header{Typeflag: tar.TypeReg, Name: "b.txt"}, strings.Repeat("b", 10000))
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"dot-dot":      {archive(t, &tar.Header{Typeflag: tar.TypeReg, Name: "ok.txt"}, "x", &tar.Header{Typeflag: tar.TypeReg, Name: "../escape.txt"}, "x"), `entry "../escape.txt" leaves the directory`},
		"inner dotdot": {archive(t, &tar.Header{Typeflag: tar.TypeReg, Name: "a/../../escape.txt"}, "x"), "leaves the directory"},
		"absolute":     {archive(t, &tar.Header{Typeflag: tar.TypeReg, Name: "/etc/escape"}, "x"), "leaves the directory"},
		"through a link": {archive(t, &tar.Header{Typeflag: tar.TypeSymlink, Name: "out", Linkname: outside},
			&tar.Header{Typeflag: tar.TypeReg, Name: "out/escape.txt"}, "x"), `entry "out/escape.txt"`},
		"device":        {archive(t, &tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}), `entry "null" is of type`},
		"hard link out": {archive(t, &tar.Header{Typeflag: tar.TypeLink, Name: "pw", Linkname: "../../etc/passwd"}), "leaves the directory"},
		"cut short":     {whole[:len(whole)-6000], `entry "b.txt": the archive ended inside it`},
		"not a tar":     {[]byte(strings.Repeat("garbage!", 200)), "bad archive: after 0 entries"},
		"file on dir":   {archive(t, &tar.Header{Typeflag: tar.TypeReg, Name: "keep"}, "x"), "keep is a directory in"},
		"dir on file":   {archive(t, &tar.Header{Typeflag: tar.TypeDir, Name: "file.txt/"}, &tar.Header{Typeflag: tar.TypeReg, Name: "file.txt/x"}, "x"), "file.txt is a file in"},
	} {
		t.Run(name, func(t *testing.T) {
			dst := t.TempDir()
			os.MkdirAll(filepath.Join(dst, "keep"), 0o755)
			os.WriteFile(filepath.Join(dst, "file.txt"), []byte("old"), 0o644)
			before := snapshot(t, dst)
			_, err := Unpack(dst, bytes.NewReader(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one saying %q", err, tc.want)
			}
			if name != "through a link" && !errors.Is(err, ErrArchive) {
				t.Errorf("%v is not an ErrArchive", err)
			}
			if after := snapshot(t, dst); !equal(before, after) {
				t.Errorf("the destination changed: %v, was %v", after, before)
			}
			if e := mustReadDir(t, outside); len(e) != 0 {
				t.Errorf("written outside: %v", e)
			}
		})
	}
	// A destination that is a file, or under one: not a directory.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o644)
	for _, dst := range []string{file, filepath.Join(file, "below")} {
		if _, err := Unpack(dst, bytes.NewReader(whole)); !errors.Is(err, ErrNotDir) {
			t.Errorf("unpack into %s: %v, want ErrNotDir", dst, err)
		}
	}
	// A destination Unpack made is gone again after a refusal.
	dst := filepath.Join(t.TempDir(), "made", "here")
	if _, err := Unpack(dst, bytes.NewReader(whole[:100])); err == nil {
		t.Fatal("a cut archive unpacked")
	}
	if _, err := os.Stat(filepath.Dir(dst)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the directories made for a refused archive stay: %v", err)
	}
}

// TestArchiveForms: what other tars write unpacks: "./" names, a pax
// global header (git archive), hard links, a name given twice (the last
// wins), a directory after its files.
func TestArchiveForms(t *testing.T) {
	dst := t.TempDir()
	data := archive(t,
		&tar.Header{Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "abc"}, Format: tar.FormatPAX},
		&tar.Header{Typeflag: tar.TypeDir, Name: "./"},
		&tar.Header{Typeflag: tar.TypeReg, Name: "./d/f.txt"}, "first",
		&tar.Header{Typeflag: tar.TypeReg, Name: "./d/f.txt"}, "second",
		&tar.Header{Typeflag: tar.TypeLink, Name: "d/hard.txt", Linkname: "./d/f.txt"},
		&tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o750},
	)
	st, err := Unpack(dst, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 3 || st.Dirs != 1 {
		t.Errorf("counted %+v", st)
	}
	want := map[string]string{".": snapshot(t, dst)["."], "d": "dir -rwxr-x---", "d/f.txt": "file -rw-r--r-- second", "d/hard.txt": "file -rw-r--r-- second"}
	if got := snapshot(t, dst); !equal(got, want) {
		t.Fatalf("unpacked\n%v\nwant\n%v", got, want)
	}
}
