package guestfs

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	xsys "github.com/tetratelabs/wazero/experimental/sys"
)

// statDump lists every path with all its Stat fields and content: two trees
// with equal statDumps are the same as far as a guest can tell.
func statDump(t *testing.T, f *FS) string {
	t.Helper()
	var b strings.Builder
	var walk func(p string)
	walk = func(p string) {
		st, errno := f.Stat(p)
		if errno != 0 {
			t.Fatalf("stat %q: %v", p, errno)
		}
		fmt.Fprintf(&b, "%s ino=%d mode=%v nlink=%d size=%d a=%d m=%d c=%d", p, st.Ino, st.Mode, st.Nlink, st.Size, st.Atim, st.Mtim, st.Ctim)
		if !st.Mode.IsDir() {
			data, err := f.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, " %q\n", data)
			return
		}
		b.WriteByte('\n')
		h := open(t, f, p, xsys.O_RDONLY)
		ents, _ := h.Readdir(-1)
		h.Close()
		for _, e := range ents {
			walk(strings.TrimPrefix(p+"/"+e.Name, "//"))
		}
	}
	walk("/")
	return b.String()
}

func TestResetRestoresSnapshot(t *testing.T) {
	f := newTestFS(t)
	populate(t, f, "app/", "app/main.py=print(1)", "app/data/", "app/data/db=rows", "etc/", "etc/conf=a=1", "gone=bye")
	f.Chmod("app/main.py", 0o755)
	img := f.Snapshot()
	want := statDump(t, f)
	usedBefore := f.Used()

	// Change everything there is to change.
	populate(t, f, "new/", "new/file=fresh", "app/data/extra=x")
	f.WriteFile("app/main.py", []byte("print(2)"), 0)
	h := open(t, f, "app/data/db", xsys.O_RDWR|xsys.O_APPEND)
	h.Write([]byte(" more rows"))
	h.Truncate(2)
	h.Close()
	f.Unlink("gone")
	f.Rename("etc", "etc2")
	f.Rename("app/data", "moved")
	f.Chmod("app/main.py", 0o600)
	f.Utimens("/", 1, 2)
	f.Mkdir("app/data", 0o700)
	if !f.Dirty() {
		t.Fatal("not dirty after changes")
	}

	f.Reset(img)
	if f.Dirty() {
		t.Error("dirty after Reset")
	}
	if got := statDump(t, f); got != want {
		t.Errorf("after Reset:\n%s\nwant:\n%s", got, want)
	}
	if f.Used() != usedBefore || f.Used() != img.Size() {
		t.Errorf("Used %d, want %d", f.Used(), usedBefore)
	}
	// A fresh inode after Reset does not reuse one from the image.
	populate(t, f, "later=1")
	st, _ := f.Stat("later")
	if st.Ino <= img.maxIno {
		t.Errorf("new inode %d reuses the image's range (max %d)", st.Ino, img.maxIno)
	}

	// Reset(nil) empties the tree.
	f.Reset(nil)
	if got := dump(t, f); got != "" || f.Used() != 0 {
		t.Errorf("after Reset(nil): %q, used %d", got, f.Used())
	}
}

func TestSnapshotIsImmutable(t *testing.T) {
	f := newTestFS(t)
	populate(t, f, "d/", "d/f=one", "g=two")
	img := f.Snapshot()
	before, _ := img.MarshalBinary()

	populate(t, f, "d/f=changed", "h=three")
	f.Unlink("g")
	f.Rename("d", "e")
	img2 := f.Snapshot()
	if img2 == img {
		t.Fatal("Snapshot after changes returned the old image")
	}
	after, _ := img.MarshalBinary()
	if !bytes.Equal(before, after) {
		t.Error("the first image changed")
	}
	// Writing after the second snapshot changes neither.
	populate(t, f, "e/f=again")
	second, _ := img2.MarshalBinary()
	f.Reset(img2)
	if got := dump(t, f); got != "e/ e/f=changed h=three" {
		t.Errorf("img2 tree %q", got)
	}
	f.Reset(img)
	if got := dump(t, f); got != "d/ d/f=one g=two" {
		t.Errorf("img tree %q", got)
	}
	if again, _ := img2.MarshalBinary(); !bytes.Equal(second, again) {
		t.Error("the second image changed")
	}

	// Clean: Snapshot returns the current image and Reset keeps it.
	if f.Snapshot() != img {
		t.Error("clean Snapshot made a new image")
	}
}

func TestImageSharedByTwoFS(t *testing.T) {
	a := newTestFS(t)
	populate(t, a, "d/", "d/f=shared")
	img := a.Snapshot()
	b := newTestFS(t)
	b.Reset(img)
	populate(t, a, "d/f=from a")
	populate(t, b, "d/f=from b", "d/g=b only")
	if got := dump(t, a); got != "d/ d/f=from a" {
		t.Errorf("a: %s", got)
	}
	if got := dump(t, b); got != "d/ d/f=from b d/g=b only" {
		t.Errorf("b: %s", got)
	}
	b.Reset(img)
	if got := dump(t, b); got != "d/ d/f=shared" {
		t.Errorf("b after reset: %s", got)
	}
}

func TestDirty(t *testing.T) {
	f := newTestFS(t)
	if f.Dirty() {
		t.Error("new FS dirty")
	}
	populate(t, f, "d/", "f=x")
	img := f.Snapshot()
	if f.Dirty() {
		t.Error("dirty after Snapshot")
	}
	// Reads and failed changes leave it clean.
	reads := []func(){
		func() { f.ReadFile("f") },
		func() { f.Stat("d") },
		func() { f.Readlink("f") },
		func() { h := open(t, f, "d", xsys.O_RDONLY); h.Readdir(-1); h.Close() },
		func() { h := open(t, f, "f", xsys.O_RDWR); h.Write(nil); h.Seek(0, io.SeekEnd); h.Close() },
		func() { f.Utimens("f", xsys.UTIME_OMIT, xsys.UTIME_OMIT) },
		func() { f.Mkdir("d", 0) },
		func() { f.Rename("nope", "x") },
		func() { f.Rename("f", "f") },
	}
	for i, r := range reads {
		r()
		if f.Dirty() {
			t.Fatalf("read %d dirtied the tree", i)
		}
	}
	changes := []func(){
		func() { f.Chmod("f", 0o600) },
		func() { f.Utimens("f", 1, xsys.UTIME_OMIT) },
		func() { h := open(t, f, "f", xsys.O_RDWR); h.Write([]byte("y")); h.Close() },
		func() { h := open(t, f, "f", xsys.O_RDWR); h.Truncate(0); h.Close() },
		func() { h := open(t, f, "f", xsys.O_RDWR|xsys.O_TRUNC); h.Close() },
		func() { h := open(t, f, "n", xsys.O_RDWR|xsys.O_CREAT); h.Close() },
		func() { f.Mkdir("e", 0) },
		func() { f.Rmdir("d") },
		func() { f.Unlink("f") },
		func() { f.Rename("f", "g") },
	}
	for i, c := range changes {
		f.Reset(img)
		c()
		if !f.Dirty() {
			t.Errorf("change %d left the tree clean", i)
		}
	}
}

func TestStaleHandles(t *testing.T) {
	f := newTestFS(t)
	populate(t, f, "d/", "f=orig")
	img := f.Snapshot()

	h := open(t, f, "f", xsys.O_RDWR)
	d := open(t, f, "d", xsys.O_RDONLY)
	if f.OpenFiles() != 2 {
		t.Fatalf("OpenFiles %d", f.OpenFiles())
	}
	f.Reset(img) // clean, but handles are open: they must still go stale
	if f.OpenFiles() != 0 {
		t.Errorf("OpenFiles after Reset %d", f.OpenFiles())
	}
	buf := make([]byte, 4)
	calls := map[string]xsys.Errno{
		"Write":    second(h.Write([]byte("evil"))),
		"Pwrite":   second(h.Pwrite([]byte("evil"), 0)),
		"Read":     second(h.Read(buf)),
		"Pread":    second(h.Pread(buf, 0)),
		"Seek":     second(h.Seek(0, io.SeekStart)),
		"Stat":     second(h.Stat()),
		"Truncate": h.Truncate(0),
		"Utimens":  h.Utimens(1, 1),
		"Sync":     h.Sync(),
		"Datasync": h.Datasync(),
		"SetApp":   h.SetAppend(true),
		"Ino":      second(h.Ino()),
		"Dev":      second(h.Dev()),
		"IsDir":    second(d.IsDir()),
		"Readdir":  second(d.Readdir(-1)),
	}
	for name, errno := range calls {
		if errno != xsys.EBADF {
			t.Errorf("stale %s: %v, want EBADF", name, errno)
		}
	}
	if f.Dirty() {
		t.Error("stale handle dirtied the tree")
	}
	if b, _ := f.ReadFile("f"); string(b) != "orig" {
		t.Errorf("stale handle wrote: %q", b)
	}
	// Closing stale handles succeeds and does not disturb the new count.
	n := open(t, f, "f", xsys.O_RDONLY)
	if h.Close() != 0 || d.Close() != 0 || f.OpenFiles() != 1 {
		t.Errorf("after closing stale handles OpenFiles %d", f.OpenFiles())
	}
	n.Close()

	// A stale handle on a file created after the snapshot cannot reach an
	// inode of the same number in the next generation either.
	g := open(t, f, "new", xsys.O_RDWR|xsys.O_CREAT)
	f.Reset(img)
	populate(t, f, "other=safe")
	if _, errno := g.Write([]byte("evil")); errno != xsys.EBADF {
		t.Errorf("stale write after inode reuse: %v", errno)
	}
	if b, _ := f.ReadFile("other"); string(b) != "safe" {
		t.Errorf("other = %q", b)
	}
	g.Close()
}

func TestRootHandleSurvivesReset(t *testing.T) {
	f := newTestFS(t)
	populate(t, f, "a=", "b=")
	img := f.Snapshot()
	root := open(t, f, ".", xsys.O_RDONLY)
	defer root.Close()
	first, _ := root.Readdir(1)
	if names(first) != "a" {
		t.Fatalf("first %s", names(first))
	}
	populate(t, f, "c=")
	f.Reset(img)
	populate(t, f, "z=")
	if isDir, errno := root.IsDir(); !isDir || errno != 0 {
		t.Fatalf("root IsDir after Reset: %v %v", isDir, errno)
	}
	// The listing restarts on the new tree.
	all, errno := root.Readdir(-1)
	if errno != 0 || names(all) != "a b z" {
		t.Errorf("root listing after Reset: %s %v", names(all), errno)
	}
	if f.OpenFiles() != 0 {
		t.Errorf("root handle counted: %d", f.OpenFiles())
	}
}

func TestResetFastPath(t *testing.T) {
	f := newTestFS(t)
	populate(t, f, "f=x")
	img := f.Snapshot()
	f.Reset(img)
	gen := f.gen
	if allocs := testing.AllocsPerRun(100, func() { f.Reset(img) }); allocs != 0 {
		t.Errorf("clean Reset allocates %v times", allocs)
	}
	if f.gen != gen+101 {
		t.Errorf("generation %d → %d over 101 Resets", gen, f.gen)
	}
	// Switching images is never the fast path.
	other := New(Options{CapBytes: 10}).Snapshot()
	f.Reset(other)
	if dump(t, f) != "" {
		t.Error("Reset to another image kept the old tree")
	}
}

// TestRandomCycles drives random operations and resets, checking after each
// Reset that the tree is exactly the snapshot and the bookkeeping holds.
func TestRandomCycles(t *testing.T) {
	f := New(Options{CapBytes: 4 * chunkSize, MaxInodes: 40, Clock: newFakeClock().Now})
	rng := rand.New(rand.NewPCG(1, 2))
	paths := []string{"a", "b", "d", "d/a", "d/b", "d/e", "d/e/a", "e", "e/a"}
	pick := func() string { return paths[rng.IntN(len(paths))] }
	var handles []xsys.File
	step := func() {
		switch rng.IntN(10) {
		case 0:
			f.Mkdir(pick(), 0o755)
		case 1:
			f.Rename(pick(), pick())
		case 2:
			f.Unlink(pick())
		case 3:
			f.Rmdir(pick())
		case 4:
			if h, errno := f.OpenFile(pick(), xsys.O_RDWR|xsys.O_CREAT, 0o644); errno == 0 {
				handles = append(handles, h)
			}
		case 5, 6:
			if len(handles) > 0 {
				h := handles[rng.IntN(len(handles))]
				data := bytes.Repeat([]byte{byte(rng.Uint32())}, rng.IntN(3*chunkSize/2))
				h.Pwrite(data, rng.Int64N(2*chunkSize))
			}
		case 7:
			if len(handles) > 0 {
				handles[rng.IntN(len(handles))].Truncate(rng.Int64N(2 * chunkSize))
			}
		case 8:
			if len(handles) > 0 {
				i := rng.IntN(len(handles))
				handles[i].Close()
				handles = append(handles[:i], handles[i+1:]...)
			}
		case 9:
			f.Chmod(pick(), 0o600)
		}
	}
	img := f.Snapshot()
	want := statDump(t, f)
	for cycle := range 200 {
		for range rng.IntN(30) {
			step()
		}
		checkInvariants(t, f)
		if rng.IntN(4) == 0 {
			img = f.Snapshot()
			want = statDump(t, f)
			checkInvariants(t, f)
			continue
		}
		f.Reset(img)
		for _, h := range handles {
			if _, errno := h.Stat(); errno != xsys.EBADF {
				t.Fatalf("cycle %d: handle not stale", cycle)
			}
			h.Close()
		}
		handles = handles[:0]
		checkInvariants(t, f)
		if got := statDump(t, f); got != want {
			t.Fatalf("cycle %d: tree after Reset:\n%s\nwant:\n%s", cycle, got, want)
		}
		enc, _ := img.MarshalBinary()
		dec, err := UnmarshalImage(enc)
		if err != nil {
			t.Fatalf("cycle %d: %v", cycle, err)
		}
		if again, _ := dec.MarshalBinary(); !bytes.Equal(enc, again) {
			t.Fatalf("cycle %d: image does not round-trip", cycle)
		}
	}
}

// TestHostCallsDuringGuestCalls runs under -race: the host polls while a
// guest goroutine works, then resets between "requests".
func TestHostCallsDuringGuestCalls(t *testing.T) {
	f := newTestFS(t)
	populate(t, f, "d/")
	img := f.Snapshot()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				_, _, _ = f.Dirty(), f.OpenFiles(), f.Used()
			}
		}
	}()
	for i := range 50 {
		h := open(t, f, fmt.Sprintf("d/%d", i), xsys.O_RDWR|xsys.O_CREAT)
		h.Write([]byte("data"))
		h.Close()
		f.Snapshot()
		f.Reset(img)
	}
	close(stop)
	wg.Wait()
}
