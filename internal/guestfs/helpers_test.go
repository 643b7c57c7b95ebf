package guestfs

import (
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	xsys "github.com/tetratelabs/wazero/experimental/sys"
)

// fakeClock starts at a fixed instant and moves one second per reading.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// newTestFS returns an FS with a 1 MiB cap and a fake clock, checked for
// internal consistency when the test ends.
func newTestFS(t testing.TB) *FS {
	t.Helper()
	f := New(Options{CapBytes: 1 << 20, MaxInodes: 100, Clock: newFakeClock().Now})
	t.Cleanup(func() { checkInvariants(t, f) })
	return f
}

// populate creates each spec in order: "d/" is a directory, "p=data" a file.
func populate(t testing.TB, f *FS, specs ...string) {
	t.Helper()
	for _, s := range specs {
		if p, ok := strings.CutSuffix(s, "/"); ok {
			if errno := f.Mkdir(p, 0o755); errno != 0 {
				t.Fatalf("mkdir %s: %v", p, errno)
			}
			continue
		}
		p, data, _ := strings.Cut(s, "=")
		if err := f.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// dump lists the tree through the sys API in the form populate takes,
// depth first and sorted: "d/ d/f=data g=".
func dump(t testing.TB, f *FS) string {
	t.Helper()
	var out []string
	var walk func(dir string)
	walk = func(dir string) {
		d, errno := f.OpenFile(dir, xsys.O_RDONLY|xsys.O_DIRECTORY, 0)
		if errno != 0 {
			t.Fatalf("open %q: %v", dir, errno)
		}
		ents, errno := d.Readdir(-1)
		if errno != 0 {
			t.Fatalf("readdir %q: %v", dir, errno)
		}
		d.Close()
		for _, e := range ents {
			p := e.Name
			if dir != "/" {
				p = dir + "/" + e.Name
			}
			if e.IsDir() {
				out = append(out, p+"/")
				walk(p)
				continue
			}
			b, err := f.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p+"="+string(b))
		}
	}
	walk("/")
	return strings.Join(out, " ")
}

// checkInvariants verifies the FS's bookkeeping against its tree.
func checkInvariants(t testing.TB, f *FS) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var used int64
	inodes := 0
	var check func(n *node)
	seen := map[uint64]bool{}
	check = func(n *node) {
		if n == nil {
			t.Fatal("reachable inode is deleted")
		}
		if seen[n.ino] {
			t.Fatalf("inode %d reachable twice", n.ino)
		}
		seen[n.ino] = true
		inodes++
		if n.unlinked {
			t.Errorf("inode %d reachable but unlinked", n.ino)
		}
		checkNode(t, f, n)
		if !n.isDir {
			used += n.size
			return
		}
		for _, c := range n.ents {
			check(f.node(c))
		}
	}
	check(f.node(rootIno))
	opens := 0
	for ino, c := range f.opens {
		opens += c
		if c <= 0 {
			t.Errorf("inode %d has open count %d", ino, c)
		}
	}
	for ino, n := range f.over {
		if n != nil && n.unlinked {
			if f.opens[ino] == 0 {
				t.Errorf("unlinked inode %d kept with no handle", ino)
			}
			checkNode(t, f, n)
			inodes++
			if !n.isDir {
				used += n.size
			}
		}
	}
	if used != f.used || inodes != f.inodes || opens != f.nopen {
		t.Errorf("accounting: used %d inodes %d open %d; counted %d, %d, %d",
			f.used, f.inodes, f.nopen, used, inodes, opens)
	}
}

func checkNode(t testing.TB, f *FS, n *node) {
	t.Helper()
	if n.isDir {
		sub := 0
		for _, c := range n.ents {
			if f.node(c).isDir {
				sub++
			}
		}
		if sub != n.nsub {
			t.Errorf("dir %d: nsub %d, counted %d", n.ino, n.nsub, sub)
		}
		return
	}
	if _, ok := f.over[n.ino]; ok && len(n.owned) != len(n.chunks) {
		t.Errorf("file %d: %d chunks but %d owned flags", n.ino, len(n.chunks), len(n.owned))
	}
	for i, c := range n.chunks {
		if int64(i)<<chunkShift+int64(len(c)) > n.size || len(c) > chunkSize {
			t.Errorf("file %d: chunk %d of %d bytes past size %d", n.ino, i, len(c), n.size)
		}
	}
}

// open opens p or fails the test.
func open(t testing.TB, f *FS, p string, flag xsys.Oflag) xsys.File {
	t.Helper()
	h, errno := f.OpenFile(p, flag, 0o644)
	if errno != 0 {
		t.Fatalf("open %q: %v", p, errno)
	}
	return h
}

// mode returns the mode Stat reports for p, or the errno as a string.
func mode(f *FS, p string) string {
	st, errno := f.Stat(p)
	if errno != 0 {
		return errno.Error()
	}
	return fs.FileMode(st.Mode).String()
}
