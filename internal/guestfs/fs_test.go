package guestfs

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	xsys "github.com/tetratelabs/wazero/experimental/sys"
)

// base is the tree most cases start from.
var base = []string{"d/", "d/e/", "d/e/x=deep", "d/f=in d", "empty/", "f=top"}

const baseDump = "d/ d/e/ d/e/x=deep d/f=in d empty/ f=top"

func TestPathOps(t *testing.T) {
	openOp := func(p string, flag xsys.Oflag) func(*FS) xsys.Errno {
		return func(f *FS) xsys.Errno {
			h, errno := f.OpenFile(p, flag, 0o644)
			if errno == 0 {
				h.Close()
			}
			return errno
		}
	}
	long := strings.Repeat("n", maxNameLen)
	tests := []struct {
		name string
		op   func(*FS) xsys.Errno
		want xsys.Errno
		tree string // the tree afterwards; "" means unchanged
	}{
		// OpenFile
		{"open missing", openOp("nope", xsys.O_RDONLY), xsys.ENOENT, ""},
		{"open in missing dir", openOp("nope/x", xsys.O_RDWR|xsys.O_CREAT), xsys.ENOENT, ""},
		{"open through file", openOp("f/x", xsys.O_RDONLY), xsys.ENOTDIR, ""},
		{"create through file", openOp("f/x", xsys.O_RDWR|xsys.O_CREAT), xsys.ENOTDIR, ""},
		{"create", openOp("d/new", xsys.O_WRONLY|xsys.O_CREAT), 0, "d/ d/e/ d/e/x=deep d/f=in d d/new= empty/ f=top"},
		{"create excl existing file", openOp("f", xsys.O_RDWR|xsys.O_CREAT|xsys.O_EXCL), xsys.EEXIST, ""},
		{"create excl existing dir", openOp("d", xsys.O_RDONLY|xsys.O_CREAT|xsys.O_EXCL), xsys.EEXIST, ""},
		{"create excl root", openOp("/", xsys.O_RDONLY|xsys.O_CREAT|xsys.O_EXCL), xsys.EEXIST, ""},
		{"create excl new", openOp("g", xsys.O_RDWR|xsys.O_CREAT|xsys.O_EXCL), 0, baseDump + " g="},
		{"create existing keeps data", openOp("f", xsys.O_RDWR|xsys.O_CREAT), 0, ""},
		{"trunc", openOp("d/f", xsys.O_RDWR|xsys.O_TRUNC), 0, "d/ d/e/ d/e/x=deep d/f= empty/ f=top"},
		{"trunc read-only, as Linux", openOp("d/f", xsys.O_RDONLY|xsys.O_TRUNC), 0, "d/ d/e/ d/e/x=deep d/f= empty/ f=top"},
		{"dir read-write", openOp("d", xsys.O_RDWR), xsys.EISDIR, ""},
		{"dir write-only", openOp("d", xsys.O_WRONLY), xsys.EISDIR, ""},
		{"root write", openOp("/", xsys.O_WRONLY), xsys.EISDIR, ""},
		{"dir trunc", openOp("d", xsys.O_RDONLY|xsys.O_TRUNC), xsys.EISDIR, ""},
		{"dir creat", openOp("d", xsys.O_RDONLY|xsys.O_CREAT), xsys.EISDIR, ""},
		{"dir read", openOp("d", xsys.O_RDONLY|xsys.O_DIRECTORY), 0, ""},
		{"file O_DIRECTORY", openOp("f", xsys.O_RDONLY|xsys.O_DIRECTORY), xsys.ENOTDIR, ""},
		{"file trailing slash", openOp("f/", xsys.O_RDONLY), xsys.ENOTDIR, ""},
		{"file slash dot", openOp("f/.", xsys.O_RDONLY), xsys.ENOTDIR, ""},
		{"dir trailing slash", openOp("d/", xsys.O_RDONLY), 0, ""},
		{"create trailing slash", openOp("g/", xsys.O_RDWR|xsys.O_CREAT), xsys.EISDIR, ""},
		{"create O_DIRECTORY", openOp("g", xsys.O_RDONLY|xsys.O_CREAT|xsys.O_DIRECTORY), xsys.EINVAL, ""},
		{"bad access mode", openOp("f", xsys.O_RDWR|xsys.O_WRONLY), xsys.EINVAL, ""},
		{"name at limit", openOp(long, xsys.O_RDWR|xsys.O_CREAT), 0, baseDump + " " + long + "="},
		{"name too long", openOp(long+"n", xsys.O_RDWR|xsys.O_CREAT), xsys.ENAMETOOLONG, ""},
		{"path too long", openOp(strings.Repeat("d/", maxPathLen/2)+"f", xsys.O_RDONLY), xsys.ENAMETOOLONG, ""},
		{"NUL in name", openOp("a\x00b", xsys.O_RDWR|xsys.O_CREAT), xsys.EINVAL, ""},
		{"dotdot above root", openOp("../../../f", xsys.O_RDONLY), 0, ""},
		{"host path", openOp("/etc/passwd", xsys.O_RDONLY), xsys.ENOENT, ""},
		{"host path escape", openOp("../../../etc/passwd", xsys.O_RDONLY), xsys.ENOENT, ""},
		{"create via dotdot stays inside", openOp("d/../../g", xsys.O_RDWR|xsys.O_CREAT), 0, baseDump + " g="},

		// Mkdir
		{"mkdir", func(f *FS) xsys.Errno { return f.Mkdir("d/e/n", 0o700) }, 0, "d/ d/e/ d/e/n/ d/e/x=deep d/f=in d empty/ f=top"},
		{"mkdir trailing slash", func(f *FS) xsys.Errno { return f.Mkdir("/g/", 0o700) }, 0, baseDump + " g/"},
		{"mkdir existing dir", func(f *FS) xsys.Errno { return f.Mkdir("d", 0o700) }, xsys.EEXIST, ""},
		{"mkdir existing file", func(f *FS) xsys.Errno { return f.Mkdir("f", 0o700) }, xsys.EEXIST, ""},
		{"mkdir root", func(f *FS) xsys.Errno { return f.Mkdir("/", 0o700) }, xsys.EEXIST, ""},
		{"mkdir missing parent", func(f *FS) xsys.Errno { return f.Mkdir("a/b", 0o700) }, xsys.ENOENT, ""},
		{"mkdir under file", func(f *FS) xsys.Errno { return f.Mkdir("f/b", 0o700) }, xsys.ENOTDIR, ""},

		// Rmdir
		{"rmdir", func(f *FS) xsys.Errno { return f.Rmdir("empty") }, 0, "d/ d/e/ d/e/x=deep d/f=in d f=top"},
		{"rmdir missing", func(f *FS) xsys.Errno { return f.Rmdir("nope") }, xsys.ENOENT, ""},
		{"rmdir file", func(f *FS) xsys.Errno { return f.Rmdir("f") }, xsys.ENOTDIR, ""},
		{"rmdir not empty", func(f *FS) xsys.Errno { return f.Rmdir("d") }, xsys.ENOTEMPTY, ""},
		{"rmdir root", func(f *FS) xsys.Errno { return f.Rmdir("/") }, xsys.EINVAL, ""},

		// Unlink
		{"unlink", func(f *FS) xsys.Errno { return f.Unlink("d/f") }, 0, "d/ d/e/ d/e/x=deep empty/ f=top"},
		{"unlink missing", func(f *FS) xsys.Errno { return f.Unlink("nope") }, xsys.ENOENT, ""},
		{"unlink dir", func(f *FS) xsys.Errno { return f.Unlink("empty") }, xsys.EISDIR, ""},
		{"unlink root", func(f *FS) xsys.Errno { return f.Unlink("/") }, xsys.EISDIR, ""},
		{"unlink file slash", func(f *FS) xsys.Errno { return f.Unlink("f/") }, xsys.ENOTDIR, ""},

		// Rename
		{"rename file", func(f *FS) xsys.Errno { return f.Rename("f", "d/e/g") }, 0, "d/ d/e/ d/e/g=top d/e/x=deep d/f=in d empty/"},
		{"rename over file", func(f *FS) xsys.Errno { return f.Rename("f", "d/f") }, 0, "d/ d/e/ d/e/x=deep d/f=top empty/"},
		{"rename dir", func(f *FS) xsys.Errno { return f.Rename("d", "z") }, 0, "empty/ f=top z/ z/e/ z/e/x=deep z/f=in d"},
		{"rename dir over empty dir", func(f *FS) xsys.Errno { return f.Rename("d/e", "empty") }, 0, "d/ d/f=in d empty/ empty/x=deep f=top"},
		{"rename dir into another", func(f *FS) xsys.Errno { return f.Rename("empty", "d/e/m") }, 0, "d/ d/e/ d/e/m/ d/e/x=deep d/f=in d f=top"},
		{"rename onto itself", func(f *FS) xsys.Errno { return f.Rename("d/f", "/d/./f") }, 0, ""},
		{"rename missing", func(f *FS) xsys.Errno { return f.Rename("nope", "g") }, xsys.ENOENT, ""},
		{"rename to missing dir", func(f *FS) xsys.Errno { return f.Rename("f", "nope/g") }, xsys.ENOENT, ""},
		{"rename file over dir", func(f *FS) xsys.Errno { return f.Rename("f", "empty") }, xsys.EISDIR, ""},
		{"rename dir over file", func(f *FS) xsys.Errno { return f.Rename("empty", "f") }, xsys.ENOTDIR, ""},
		{"rename dir over non-empty", func(f *FS) xsys.Errno { return f.Rename("empty", "d") }, xsys.ENOTEMPTY, ""},
		{"rename dir onto its parent", func(f *FS) xsys.Errno { return f.Rename("d/e", "d") }, xsys.ENOTEMPTY, ""},
		{"rename dir into itself", func(f *FS) xsys.Errno { return f.Rename("d", "d/e/d") }, xsys.EINVAL, ""},
		{"rename root", func(f *FS) xsys.Errno { return f.Rename("/", "g") }, xsys.EINVAL, ""},
		{"rename onto root", func(f *FS) xsys.Errno { return f.Rename("empty", "/") }, xsys.EINVAL, ""},
		{"rename file slash", func(f *FS) xsys.Errno { return f.Rename("f/", "g") }, xsys.ENOTDIR, ""},
		{"rename file to slash", func(f *FS) xsys.Errno { return f.Rename("f", "g/") }, xsys.ENOTDIR, ""},
		{"rename through file", func(f *FS) xsys.Errno { return f.Rename("f/x", "g") }, xsys.ENOTDIR, ""},

		// Links and the rest
		{"link", func(f *FS) xsys.Errno { return f.Link("f", "g") }, xsys.ENOSYS, ""},
		{"symlink", func(f *FS) xsys.Errno { return f.Symlink("f", "g") }, xsys.ENOSYS, ""},
		{"readlink file", func(f *FS) xsys.Errno { _, e := f.Readlink("f"); return e }, xsys.EINVAL, ""},
		{"readlink missing", func(f *FS) xsys.Errno { _, e := f.Readlink("nope"); return e }, xsys.ENOENT, ""},
		{"chmod missing", func(f *FS) xsys.Errno { return f.Chmod("nope", 0) }, xsys.ENOENT, ""},
		{"utimens missing", func(f *FS) xsys.Errno { return f.Utimens("nope", 1, 1) }, xsys.ENOENT, ""},
		{"stat missing", func(f *FS) xsys.Errno { _, e := f.Stat("nope"); return e }, xsys.ENOENT, ""},
		{"stat through file", func(f *FS) xsys.Errno { _, e := f.Stat("f/x"); return e }, xsys.ENOTDIR, ""},
		{"stat file slash", func(f *FS) xsys.Errno { _, e := f.Lstat("f/"); return e }, xsys.ENOTDIR, ""},
		{"stat dir slash", func(f *FS) xsys.Errno { _, e := f.Stat("d/e/"); return e }, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newTestFS(t)
			populate(t, f, base...)
			img := f.Snapshot()
			if got := tc.op(f); got != tc.want {
				t.Fatalf("errno %v, want %v", got, tc.want)
			}
			want := tc.tree
			if want == "" {
				want = baseDump
			}
			if got := dump(t, f); got != want {
				t.Errorf("tree\n got %s\nwant %s", got, want)
			}
			// A failed operation changes nothing, not even the dirty flag.
			if tc.want != 0 && f.Dirty() {
				t.Error("failed operation dirtied the tree")
			}
			f.Reset(img)
			if got := dump(t, f); got != baseDump {
				t.Errorf("after Reset: %s", got)
			}
		})
	}
}

func TestStat(t *testing.T) {
	clock := newFakeClock()
	f := New(Options{CapBytes: 1 << 20, Clock: clock.Now})
	populate(t, f, "d/", "d/a/", "d/b/", "d/x=12345")

	st, errno := f.Stat("d/x")
	if errno != 0 {
		t.Fatal(errno)
	}
	if st.Mode != 0o644 || st.Size != 5 || st.Nlink != 1 || st.Ino == 0 || st.Atim == 0 || st.Mtim < st.Atim || st.Ctim != st.Mtim {
		t.Errorf("file stat %+v", st)
	}
	dst, _ := f.Stat("d")
	if dst.Mode != fs.ModeDir|0o755 || dst.Nlink != 4 || dst.Ino == st.Ino {
		t.Errorf("dir stat %+v", dst)
	}
	// Adding an entry moves the directory's mtime.
	before := dst.Mtim
	populate(t, f, "d/y=")
	if dst, _ = f.Stat("d"); dst.Mtim <= before || dst.Ctim != dst.Mtim {
		t.Errorf("dir mtime %d → %d", before, dst.Mtim)
	}
	if err := f.Rmdir("d/a"); err != 0 {
		t.Fatal(err)
	}
	if dst, _ = f.Stat("d"); dst.Nlink != 3 {
		t.Errorf("nlink after rmdir: %d", dst.Nlink)
	}
	if err := f.Rename("d/b", "b"); err != 0 {
		t.Fatal(err)
	}
	if dst, _ = f.Stat("d"); dst.Nlink != 2 {
		t.Errorf("nlink after rename out: %d", dst.Nlink)
	}
	if rst, _ := f.Stat("/"); rst.Nlink != 4 {
		t.Errorf("root nlink after rename in: %d", rst.Nlink)
	}
	lst, _ := f.Lstat("d/x")
	if st, _ := f.Stat("d/x"); lst != st {
		t.Errorf("Lstat %+v != Stat %+v", lst, st)
	}

	// Chmod keeps only permission bits and is not enforced.
	if errno := f.Chmod("d/x", 0o400|fs.ModeSetuid); errno != 0 {
		t.Fatal(errno)
	}
	if got := mode(f, "d/x"); got != "-r--------" {
		t.Errorf("mode after chmod: %s", got)
	}
	if err := f.WriteFile("d/x", []byte("still writable"), 0); err != nil {
		t.Errorf("chmod 0400 was enforced: %v", err)
	}

	// Utimens sets, UTIME_OMIT keeps, and ctime moves.
	st, _ = f.Stat("d/x")
	if errno := f.Utimens("d/x", 111, xsys.UTIME_OMIT); errno != 0 {
		t.Fatal(errno)
	}
	st2, _ := f.Stat("d/x")
	if st2.Atim != 111 || st2.Mtim != st.Mtim || st2.Ctim <= st.Ctim {
		t.Errorf("after Utimens(111, omit): %+v (was %+v)", st2, st)
	}
	f.Utimens("d", xsys.UTIME_OMIT, -5)
	if st, _ := f.Stat("d"); st.Mtim != -5 {
		t.Errorf("dir mtime %d", st.Mtim)
	}
}

func TestCaps(t *testing.T) {
	f := New(Options{CapBytes: 100, MaxInodes: 4})
	populate(t, f, "d/", "a=0123456789")

	// A write past the cap is refused whole.
	h := open(t, f, "a", xsys.O_RDWR)
	defer h.Close()
	if n, errno := h.Pwrite(make([]byte, 101), 0); errno != ENOSPC || n != 0 {
		t.Errorf("Pwrite past cap: %d, %v", n, errno)
	}
	if b, _ := f.ReadFile("a"); string(b) != "0123456789" || f.Used() != 10 {
		t.Errorf("refused write changed the file: %q, used %d", b, f.Used())
	}
	if n, errno := h.Pwrite(make([]byte, 100), 0); errno != 0 || n != 100 {
		t.Errorf("Pwrite up to cap: %d, %v", n, errno)
	}
	if f.Used() != 100 {
		t.Errorf("Used %d", f.Used())
	}
	// Overwriting in place needs no room; growing does.
	if _, errno := h.Pwrite([]byte("x"), 99); errno != 0 {
		t.Errorf("overwrite at cap: %v", errno)
	}
	if _, errno := h.Pwrite([]byte("x"), 100); errno != ENOSPC {
		t.Errorf("grow at cap: %v", errno)
	}
	if errno := h.Truncate(101); errno != ENOSPC {
		t.Errorf("truncate past cap: %v", errno)
	}
	if errno := h.Truncate(10); errno != 0 || f.Used() != 10 {
		t.Errorf("truncate down: %v, used %d", errno, f.Used())
	}
	if err := f.WriteFile("b", make([]byte, 91), 0o644); !errors.Is(err, ENOSPC) {
		t.Errorf("WriteFile past cap: %v", err)
	}
	if b, err := f.ReadFile("b"); err != nil || len(b) != 0 {
		t.Errorf("refused WriteFile left %d bytes, %v", len(b), err)
	}
	// Holes count against the cap.
	if _, errno := h.Pwrite([]byte("x"), 1<<40); errno != ENOSPC {
		t.Errorf("sparse write far past cap: %v", errno)
	}
	if _, errno := h.Seek(1<<62, 0); errno != 0 {
		t.Fatal(errno)
	}
	if _, errno := h.Write([]byte("x")); errno != ENOSPC {
		t.Errorf("write at huge offset: %v", errno)
	}

	// Inodes: "/", d, a and b make four.
	if errno := f.Mkdir("e", 0o755); errno != ENOSPC {
		t.Errorf("mkdir past inode cap: %v", errno)
	}
	if _, errno := f.OpenFile("d/c", xsys.O_RDWR|xsys.O_CREAT, 0o644); errno != ENOSPC {
		t.Errorf("create past inode cap: %v", errno)
	}
	if errno := f.Unlink("b"); errno != 0 {
		t.Fatal(errno)
	}
	if errno := f.Mkdir("e", 0o755); errno != 0 {
		t.Errorf("mkdir after unlink: %v", errno)
	}
	if err := f.WriteFile("d/c", nil, 0o644); !errors.Is(err, ENOSPC) {
		t.Errorf("WriteFile past inode cap: %v", err)
	}
	checkInvariants(t, f)

	if got := ENOSPC.Error(); got != "Errno(28)" {
		t.Errorf("wazero now names errno 28 %q: check ENOSPC still cannot collide", got)
	}
}

func TestNewPanics(t *testing.T) {
	for _, opt := range []Options{{}, {CapBytes: -1}, {CapBytes: 1, MaxInodes: -1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%+v) did not panic", opt)
				}
			}()
			New(opt)
		}()
	}
	if f := New(Options{CapBytes: 1}); f.maxInodes != DefaultMaxInodes {
		t.Errorf("default MaxInodes %d", f.maxInodes)
	}
}

func TestHostHelpers(t *testing.T) {
	f := newTestFS(t)
	if err := f.WriteFile("/live", []byte("ping"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := f.ReadFile("live"); err != nil || string(b) != "ping" {
		t.Fatalf("ReadFile: %q, %v", b, err)
	}
	if f.OpenFiles() != 0 {
		t.Errorf("helpers left %d handles open", f.OpenFiles())
	}
	var pe *fs.PathError
	if _, err := f.ReadFile("missing"); !errors.As(err, &pe) || !errors.Is(err, xsys.ENOENT) {
		t.Errorf("ReadFile missing: %v", err)
	}
	if _, err := f.ReadFile("/"); !errors.Is(err, xsys.EISDIR) {
		t.Errorf("ReadFile dir: %v", err)
	}
	if err := f.WriteFile("no/such/dir", nil, 0o600); !errors.Is(err, xsys.ENOENT) {
		t.Errorf("WriteFile missing dir: %v", err)
	}
}
