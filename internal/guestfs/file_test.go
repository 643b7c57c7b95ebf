package guestfs

import (
	"bytes"
	"io"
	"io/fs"
	"math"
	"slices"
	"strings"
	"testing"

	xsys "github.com/tetratelabs/wazero/experimental/sys"
)

// readAll reads h from its offset to the end through Read.
func readAll(t *testing.T, h xsys.File) string {
	t.Helper()
	var out []byte
	buf := make([]byte, 3) // small, to cross reads
	for {
		n, errno := h.Read(buf)
		if errno != 0 {
			t.Fatalf("read: %v", errno)
		}
		if n == 0 {
			return string(out)
		}
		out = append(out, buf[:n]...)
	}
}

func TestFileReadWriteSeek(t *testing.T) {
	f := newTestFS(t)
	h := open(t, f, "f", xsys.O_RDWR|xsys.O_CREAT)
	defer h.Close()

	steps := []struct {
		name string
		do   func() (int64, xsys.Errno) // returns a count or offset
		want int64
		file string // content afterwards
	}{
		{"write", func() (int64, xsys.Errno) { n, e := h.Write([]byte("hello world")); return int64(n), e }, 11, "hello world"},
		{"seek start", func() (int64, xsys.Errno) { return h.Seek(6, io.SeekStart) }, 6, "hello world"},
		{"overwrite", func() (int64, xsys.Errno) { n, e := h.Write([]byte("WORLD")); return int64(n), e }, 5, "hello WORLD"},
		{"seek current", func() (int64, xsys.Errno) { return h.Seek(-6, io.SeekCurrent) }, 5, "hello WORLD"},
		{"seek end", func() (int64, xsys.Errno) { return h.Seek(-1, io.SeekEnd) }, 10, "hello WORLD"},
		{"seek past end", func() (int64, xsys.Errno) { return h.Seek(3, io.SeekEnd) }, 14, "hello WORLD"},
		{"write leaves hole", func() (int64, xsys.Errno) { n, e := h.Write([]byte("!")); return int64(n), e }, 1, "hello WORLD\x00\x00\x00!"},
		{"pwrite", func() (int64, xsys.Errno) { n, e := h.Pwrite([]byte("J"), 0); return int64(n), e }, 1, "Jello WORLD\x00\x00\x00!"},
		{"pwrite keeps offset", func() (int64, xsys.Errno) { return h.Seek(0, io.SeekCurrent) }, 15, "Jello WORLD\x00\x00\x00!"},
		{"truncate down", func() (int64, xsys.Errno) { return 0, h.Truncate(5) }, 0, "Jello"},
		{"truncate up reads zeros", func() (int64, xsys.Errno) { return 0, h.Truncate(7) }, 0, "Jello\x00\x00"},
		{"write after truncate up", func() (int64, xsys.Errno) { n, e := h.Pwrite([]byte("X"), 8); return int64(n), e }, 1, "Jello\x00\x00\x00X"},
		{"empty write", func() (int64, xsys.Errno) { n, e := h.Write(nil); return int64(n), e }, 0, "Jello\x00\x00\x00X"},
		{"seek negative", func() (int64, xsys.Errno) { return h.Seek(-100, io.SeekCurrent) }, 0, ""},
		{"seek bad whence", func() (int64, xsys.Errno) { return h.Seek(0, 3) }, 0, ""},
		{"seek overflow", func() (int64, xsys.Errno) { return h.Seek(math.MaxInt64, io.SeekEnd) }, 0, ""},
		{"pread negative", func() (int64, xsys.Errno) { n, e := h.Pread(make([]byte, 1), -1); return int64(n), e }, 0, ""},
		{"pwrite negative", func() (int64, xsys.Errno) { n, e := h.Pwrite([]byte("x"), -1); return int64(n), e }, 0, ""},
		{"pwrite overflow", func() (int64, xsys.Errno) { n, e := h.Pwrite([]byte("xy"), math.MaxInt64-1); return int64(n), e }, 0, ""},
		{"truncate negative", func() (int64, xsys.Errno) { return 0, h.Truncate(-1) }, 0, ""},
	}
	for _, s := range steps {
		got, errno := s.do()
		if s.file == "" { // the error cases
			if errno != xsys.EINVAL {
				t.Errorf("%s: errno %v, want EINVAL", s.name, errno)
			}
			continue
		}
		if errno != 0 || got != s.want {
			t.Fatalf("%s: %d, %v; want %d", s.name, got, errno, s.want)
		}
		if b, _ := f.ReadFile("f"); string(b) != s.file {
			t.Fatalf("%s: file %q, want %q", s.name, b, s.file)
		}
	}

	// Read from an offset, past the end, and Pread past the end.
	h.Seek(1, io.SeekStart)
	if got := readAll(t, h); got != "ello\x00\x00\x00X" {
		t.Errorf("read %q", got)
	}
	buf := make([]byte, 4)
	if n, errno := h.Pread(buf, 7); n != 2 || errno != 0 || string(buf[:n]) != "\x00X" {
		t.Errorf("pread at tail: %d %v %q", n, errno, buf[:n])
	}
	if n, errno := h.Pread(buf, 100); n != 0 || errno != 0 {
		t.Errorf("pread past end: %d %v", n, errno)
	}
	st, _ := h.Stat()
	if st.Size != 9 {
		t.Errorf("size %d", st.Size)
	}
}

func TestFileAccessModes(t *testing.T) {
	f := newTestFS(t)
	populate(t, f, "d/", "f=data")
	ro := open(t, f, "f", xsys.O_RDONLY)
	wo := open(t, f, "f", xsys.O_WRONLY)
	dir := open(t, f, "d", xsys.O_RDONLY)
	defer ro.Close()
	defer wo.Close()
	defer dir.Close()
	buf := make([]byte, 4)

	cases := []struct {
		name string
		got  xsys.Errno
		want xsys.Errno
	}{
		{"write read-only", second(ro.Write([]byte("x"))), xsys.EBADF},
		{"pwrite read-only", second(ro.Pwrite([]byte("x"), 0)), xsys.EBADF},
		{"truncate read-only", ro.Truncate(0), xsys.EBADF},
		{"read write-only", second(wo.Read(buf)), xsys.EBADF},
		{"pread write-only", second(wo.Pread(buf, 0)), xsys.EBADF},
		{"read dir", second(dir.Read(buf)), xsys.EISDIR},
		{"pread dir", second(dir.Pread(buf, 0)), xsys.EISDIR},
		{"write dir", second(dir.Write(buf)), xsys.EISDIR},
		{"pwrite dir", second(dir.Pwrite(buf, 0)), xsys.EISDIR},
		{"truncate dir", dir.Truncate(0), xsys.EISDIR},
		{"append dir", dir.SetAppend(true), xsys.EISDIR},
		{"seek dir", second(dir.Seek(1, io.SeekStart)), xsys.EISDIR},
		{"rewind dir", second(dir.Seek(0, io.SeekStart)), 0},
		{"readdir file", second(ro.Readdir(-1)), xsys.EBADF},
		{"utimens read-only", ro.Utimens(5, 6), 0},
		{"utimens dir", dir.Utimens(5, 6), 0},
		{"sync", wo.Sync(), 0},
		{"datasync", ro.Datasync(), 0},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if isDir, errno := dir.IsDir(); !isDir || errno != 0 {
		t.Errorf("dir IsDir %v %v", isDir, errno)
	}
	if isDir, errno := ro.IsDir(); isDir || errno != 0 {
		t.Errorf("file IsDir %v %v", isDir, errno)
	}
	ino, _ := ro.Ino()
	if st, _ := f.Stat("f"); st.Ino != ino || st.Atim != 5 || st.Mtim != 6 {
		t.Errorf("Ino %d, stat %+v", ino, st)
	}
	if b, _ := f.ReadFile("f"); string(b) != "data" {
		t.Errorf("refused calls changed the file: %q", b)
	}
}

func second[T any](_ T, e xsys.Errno) xsys.Errno { return e }

func TestFileAppend(t *testing.T) {
	f := newTestFS(t)
	populate(t, f, "f=abc")
	h := open(t, f, "f", xsys.O_RDWR|xsys.O_APPEND)
	defer h.Close()
	if !h.IsAppend() {
		t.Error("IsAppend false")
	}
	h.Seek(0, io.SeekStart)
	h.Write([]byte("de"))
	if off, _ := h.Seek(0, io.SeekCurrent); off != 5 {
		t.Errorf("offset after append %d", off)
	}
	h.Pwrite([]byte("A"), 0) // POSIX: pwrite honours the offset
	if errno := h.SetAppend(false); errno != 0 {
		t.Fatal(errno)
	}
	h.Seek(1, io.SeekStart)
	h.Write([]byte("B"))
	if b, _ := f.ReadFile("f"); string(b) != "ABcde" {
		t.Errorf("content %q", b)
	}
}

func TestReaddir(t *testing.T) {
	f := newTestFS(t)
	populate(t, f, "d/", "d/c=", "d/a/", "d/b=", "d/e=")
	h := open(t, f, "d", xsys.O_RDONLY|xsys.O_DIRECTORY)
	defer h.Close()

	first, errno := h.Readdir(2)
	if errno != 0 || len(first) != 2 || first[0].Name != "a" || !first[0].IsDir() || first[1].Name != "b" || first[1].IsDir() {
		t.Fatalf("first page %v %v", first, errno)
	}
	if st, _ := f.Stat("d/a"); first[0].Ino != st.Ino {
		t.Errorf("dirent ino %d, stat %d", first[0].Ino, st.Ino)
	}
	// Removed entries not yet returned are skipped; added ones wait for a rewind.
	f.Unlink("d/c")
	populate(t, f, "d/d=")
	rest, errno := h.Readdir(10)
	if errno != 0 || names(rest) != "e" {
		t.Fatalf("rest %v %v", names(rest), errno)
	}
	if end, errno := h.Readdir(10); len(end) != 0 || errno != 0 {
		t.Errorf("after end %v %v", end, errno)
	}
	h.Seek(0, io.SeekStart)
	all, _ := h.Readdir(-1)
	if names(all) != "a b d e" {
		t.Errorf("after rewind %s", names(all))
	}

	// A directory removed while open lists as ENOENT but still stats.
	g := open(t, f, "d/a", xsys.O_RDONLY)
	defer g.Close()
	if errno := f.Rmdir("d/a"); errno != 0 {
		t.Fatal(errno)
	}
	if _, errno := g.Readdir(-1); errno != xsys.ENOENT {
		t.Errorf("readdir removed dir: %v", errno)
	}
	if st, errno := g.Stat(); errno != 0 || st.Nlink != 0 {
		t.Errorf("stat removed dir: %+v %v", st, errno)
	}
}

func names(ds []xsys.Dirent) string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Name)
	}
	return strings.Join(out, " ")
}

func TestCloseAndOpenFiles(t *testing.T) {
	f := newTestFS(t)
	populate(t, f, "d/", "f=x")
	a := open(t, f, "f", xsys.O_RDONLY)
	b := open(t, f, "f", xsys.O_RDWR)
	d := open(t, f, "d", xsys.O_RDONLY)
	root := open(t, f, "/", xsys.O_RDONLY)
	dot := open(t, f, ".", xsys.O_RDONLY)
	if got := f.OpenFiles(); got != 3 {
		t.Errorf("OpenFiles %d, want 3 (root handles not counted)", got)
	}
	for _, h := range []xsys.File{a, a, d, root, dot} { // a twice: idempotent
		if errno := h.Close(); errno != 0 {
			t.Errorf("close: %v", errno)
		}
	}
	if got := f.OpenFiles(); got != 1 {
		t.Errorf("OpenFiles %d, want 1", got)
	}
	buf := make([]byte, 1)
	if _, errno := a.Read(buf); errno != xsys.EBADF {
		t.Errorf("read after close: %v", errno)
	}
	if _, errno := a.Stat(); errno != xsys.EBADF {
		t.Errorf("stat after close: %v", errno)
	}
	if _, errno := root.Readdir(-1); errno != xsys.EBADF {
		t.Errorf("readdir closed root: %v", errno)
	}
	b.Close()
	if got := f.OpenFiles(); got != 0 {
		t.Errorf("OpenFiles %d, want 0", got)
	}
}

func TestUnlinkedWhileOpen(t *testing.T) {
	f := newTestFS(t)
	populate(t, f, "tmp=scratch", "keep=k")
	h := open(t, f, "tmp", xsys.O_RDWR)
	if errno := f.Unlink("tmp"); errno != 0 {
		t.Fatal(errno)
	}
	if _, errno := f.Stat("tmp"); errno != xsys.ENOENT {
		t.Errorf("unlinked name still there: %v", errno)
	}
	// The handle still works, and its data still counts.
	if _, errno := h.Pwrite([]byte("!"), 7); errno != 0 {
		t.Fatal(errno)
	}
	buf := make([]byte, 16)
	if n, _ := h.Pread(buf, 0); string(buf[:n]) != "scratch!" {
		t.Errorf("read %q", buf[:n])
	}
	if st, _ := h.Stat(); st.Nlink != 0 {
		t.Errorf("nlink %d", st.Nlink)
	}
	if f.Used() != 9 {
		t.Errorf("used %d while open", f.Used())
	}
	// A Snapshot leaves it out, but it lives on through the handle.
	img := f.Snapshot()
	if img.Size() != 1 || img.Inodes() != 2 {
		t.Errorf("image size %d inodes %d", img.Size(), img.Inodes())
	}
	if _, errno := h.Write([]byte("x")); errno != 0 {
		t.Errorf("write after snapshot: %v", errno)
	}
	checkInvariants(t, f)
	h.Close()
	if f.Used() != 1 {
		t.Errorf("used %d after last close", f.Used())
	}
	// Renaming over an open file unlinks it the same way.
	populate(t, f, "a=aaaa")
	g := open(t, f, "keep", xsys.O_RDONLY)
	if errno := f.Rename("a", "keep"); errno != 0 {
		t.Fatal(errno)
	}
	if n, _ := g.Pread(buf, 0); string(buf[:n]) != "k" {
		t.Errorf("replaced file read %q", buf[:n])
	}
	if b, _ := f.ReadFile("keep"); string(b) != "aaaa" {
		t.Errorf("new keep %q", b)
	}
	checkInvariants(t, f)
	g.Close()
	if f.Used() != 4 {
		t.Errorf("used %d", f.Used())
	}
}

func TestLargeFileChunks(t *testing.T) {
	f := New(Options{CapBytes: 8 * chunkSize})
	data := make([]byte, 3*chunkSize+100)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := f.WriteFile("big", data, 0o644); err != nil {
		t.Fatal(err)
	}
	img := f.Snapshot()

	// A write across a chunk boundary copies two chunks, not the file.
	h := open(t, f, "big", xsys.O_RDWR)
	patch := bytes.Repeat([]byte{0xAA}, 10)
	h.Pwrite(patch, chunkSize-5)
	f.mu.Lock()
	n := f.node(h.(*file).ino)
	owned := slices.Index(n.owned, true)
	count := 0
	for _, o := range n.owned {
		if o {
			count++
		}
	}
	f.mu.Unlock()
	if owned != 0 || count != 2 {
		t.Errorf("owned chunks: first %d, count %d (want 0 and 2)", owned, count)
	}
	want := slices.Clone(data)
	copy(want[chunkSize-5:], patch)
	got, _ := f.ReadFile("big")
	if !bytes.Equal(got, want) {
		t.Error("content after patch differs")
	}
	// Truncate into the middle of a chunk, grow again: the tail reads zeros.
	h.Truncate(chunkSize + 10)
	h.Truncate(2*chunkSize + 10)
	h.Pwrite([]byte{1}, 2*chunkSize+20)
	got, _ = f.ReadFile("big")
	want = append(want[:chunkSize+10], make([]byte, chunkSize+11)...)
	want[2*chunkSize+20] = 1
	if !bytes.Equal(got, want) {
		t.Error("content after truncate and regrow differs")
	}
	h.Close()
	checkInvariants(t, f)

	// The image still holds the original bytes.
	f.Reset(img)
	if got, _ := f.ReadFile("big"); !bytes.Equal(got, data) {
		t.Error("image changed by later writes")
	}
	if m := mode(f, "big"); m != fs.FileMode(0o644).String() {
		t.Errorf("mode %s", m)
	}
}

func TestHandleFollowsRenameAndSnapshot(t *testing.T) {
	f := newTestFS(t)
	populate(t, f, "d/", "d/f=one")
	h := open(t, f, "d/f", xsys.O_RDWR)
	defer h.Close()
	d := open(t, f, "d", xsys.O_RDONLY)
	defer d.Close()

	// Renames move the name, not the handle's file.
	if errno := f.Rename("d", "e"); errno != 0 {
		t.Fatal(errno)
	}
	if errno := f.Rename("e/f", "g"); errno != 0 {
		t.Fatal(errno)
	}
	if _, errno := h.Pwrite([]byte("ONE"), 0); errno != 0 {
		t.Fatal(errno)
	}
	if b, _ := f.ReadFile("g"); string(b) != "ONE" {
		t.Errorf("g = %q", b)
	}
	populate(t, f, "e/new=")
	if ents, _ := d.Readdir(-1); names(ents) != "new" {
		t.Errorf("renamed dir lists %s", names(ents))
	}

	// A handle open across Snapshot writes to the live tree only.
	img := f.Snapshot()
	if _, errno := h.Pwrite([]byte("TWO"), 0); errno != 0 {
		t.Fatal(errno)
	}
	if b, _ := f.ReadFile("g"); string(b) != "TWO" {
		t.Errorf("live g = %q", b)
	}
	enc, _ := img.MarshalBinary()
	g := newTestFS(t)
	dec, _ := UnmarshalImage(enc)
	g.Reset(dec)
	if b, _ := g.ReadFile("g"); string(b) != "ONE" {
		t.Errorf("image g = %q", b)
	}
	if !f.Dirty() {
		t.Error("write after Snapshot left the tree clean")
	}
}
