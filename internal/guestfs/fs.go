package guestfs

import (
	"fmt"
	"io/fs"
	"math"
	"strings"
	"sync"
	"time"

	xsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

// ENOSPC is the error for a write, truncate or create that would take the
// tree past its byte or inode cap. wazero v1.12's experimental/sys has no
// ENOSPC, so this is Linux's number in the same Errno type: host callers match
// it with == or errors.Is, while a WASI guest sees EIO, which is what wazero
// sends for any errno it does not know.
const ENOSPC xsys.Errno = 28

// DefaultMaxInodes is the inode cap when Options.MaxInodes is zero.
const DefaultMaxInodes = 10_000

// Limits on names, as on Linux.
const (
	maxNameLen = 255  // bytes in one path component
	maxPathLen = 4096 // bytes in a path argument
)

// Options configure an FS.
type Options struct {
	// CapBytes is the most file data the tree may hold: the sum of the sizes
	// of its regular files, holes included. Must be > 0.
	CapBytes int64
	// MaxInodes is the most files and directories the tree may hold, "/"
	// included. Zero means DefaultMaxInodes.
	MaxInodes int
	// Clock stamps access, modification and change times. Nil means time.Now.
	Clock func() time.Time
}

// FS is a private, size-capped, in-memory file system for one Wasm guest
// instance. It implements wazero's experimental sys.FS; mount it with
//
//	wazero.NewFSConfig().(sysfs.FSConfig).WithSysFSMount(fsys, "/")
//
// All methods are safe for concurrent use: one mutex serialises them, and
// every File it returns takes the same mutex. In Frost the guest calls in
// from one goroutine at a time, and the host calls Snapshot, Reset, Dirty,
// OpenFiles and Used between guest calls.
type FS struct {
	xsys.UnimplementedFS

	capBytes  int64
	maxInodes int
	clock     func() time.Time
	empty     *Image // what Reset(nil) restores

	mu sync.Mutex
	// The tree is base overlaid with over: over[ino] is the live node for
	// ino when present (nil: deleted), base.nodes[ino] otherwise.
	base  *Image
	over  map[uint64]*node
	gen   uint64 // bumped by every Reset; handles from older ones are stale
	dirty bool   // the tree changed since the last Snapshot or Reset
	// Accounting for the live tree, unlinked-but-open nodes included.
	used    int64
	inodes  int
	nextIno uint64
	opens   map[uint64]int // non-root handles open in this gen, per inode
	nopen   int            // sum of opens
}

var _ xsys.FS = (*FS)(nil)

// New returns an FS holding just an empty "/". It panics if opt.CapBytes is
// not positive or opt.MaxInodes is negative: both are programming errors.
func New(opt Options) *FS {
	if opt.CapBytes <= 0 {
		panic(fmt.Sprintf("guestfs: CapBytes must be > 0, got %d", opt.CapBytes))
	}
	if opt.MaxInodes < 0 {
		panic(fmt.Sprintf("guestfs: MaxInodes must be >= 0, got %d", opt.MaxInodes))
	}
	f := &FS{capBytes: opt.CapBytes, maxInodes: opt.MaxInodes, clock: opt.Clock}
	if f.maxInodes == 0 {
		f.maxInodes = DefaultMaxInodes
	}
	if f.clock == nil {
		f.clock = time.Now
	}
	f.empty = emptyImage(f.now())
	f.over = map[uint64]*node{}
	f.opens = map[uint64]int{}
	f.load(f.empty)
	return f
}

func (f *FS) now() int64 { return f.clock().UnixNano() }

// load makes img the tree, dropping every change and open handle count.
// Caller holds mu (or owns f exclusively).
func (f *FS) load(img *Image) {
	f.base = img
	f.over = emptied(f.over)
	f.opens = emptied(f.opens)
	f.nopen = 0
	f.used = img.used
	f.inodes = len(img.nodes)
	f.nextIno = img.maxIno + 1
	f.dirty = false
}

// emptied returns m cleared, or a new map if m grew large, so that one big
// request does not leave every later Reset clearing a big table.
func emptied[V any](m map[uint64]V) map[uint64]V {
	if len(m) > 64 {
		return map[uint64]V{}
	}
	clear(m)
	return m
}

// Snapshot returns an immutable Image of the tree as it is now. It costs
// O(inodes) (file data is shared, not copied), or nothing when the tree is
// unchanged since the last Snapshot or Reset. Later changes to f never show
// in the image; open handles stay valid. Files unlinked while open are not
// part of the tree and so not of the image. The host may call it at any time,
// from any goroutine; it waits for a guest call in progress.
func (f *FS) Snapshot() *Image {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.dirty {
		return f.base
	}
	img := &Image{nodes: make(map[uint64]*node, f.inodes), maxIno: f.nextIno - 1}
	stack := []uint64{rootIno}
	for len(stack) > 0 {
		ino := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n := f.node(ino)
		img.nodes[ino] = n
		if n.isDir {
			for _, c := range n.ents {
				stack = append(stack, c)
			}
		} else {
			img.used += n.size
		}
	}
	// Every overlay node reachable from the root now belongs to img and is
	// frozen; the overlay keeps only unlinked nodes that handles still use.
	over := map[uint64]*node{}
	for ino, n := range f.over {
		if n != nil && n.unlinked {
			over[ino] = n
		}
	}
	f.over = over
	f.base = img
	f.dirty = false
	return img
}

// Reset makes the tree exactly img again (img nil: an empty "/") and makes
// every open handle stale: its calls fail with EBADF and its Close is a
// no-op that returns success. Handles on "/" are the exception (see OpenFile).
// When nothing changed since the last Snapshot or Reset to the same image,
// Reset costs a few nanoseconds; otherwise it costs O(changes). Reset may
// leave the tree above the caps if img is larger than they allow; the
// guest can then only shrink it. The host may call it at any time, from any
// goroutine (it waits for a guest call in progress), but means to between
// guest calls: a guest call that spans a Reset sees its handles go stale.
func (f *FS) Reset(img *Image) {
	if img == nil {
		img = f.empty
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
	if !f.dirty && f.base == img && len(f.over) == 0 && f.nopen == 0 {
		return
	}
	f.load(img)
}

// Dirty reports whether the tree changed since the last Snapshot or Reset.
// Reads never dirty it (access times are not updated on read). Safe to call
// at any time.
func (f *FS) Dirty() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dirty
}

// OpenFiles returns how many handles opened since the last Reset are still
// open, directories included, handles on "/" excluded: wazero keeps one on
// "/" open for a module's whole life as its pre-opened directory. Safe to
// call at any time.
func (f *FS) OpenFiles() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nopen
}

// Used returns the bytes of file data the tree holds (the sum of file sizes,
// files unlinked but still open included). Safe to call at any time.
func (f *FS) Used() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.used
}

// node returns the live node for ino. Caller holds mu.
func (f *FS) node(ino uint64) *node {
	if n, ok := f.over[ino]; ok {
		return n
	}
	return f.base.nodes[ino]
}

// mut returns the live node for ino, first copying it into the overlay if it
// is shared with base, and marks the tree dirty. Caller holds mu.
func (f *FS) mut(ino uint64) *node {
	f.dirty = true
	if n, ok := f.over[ino]; ok {
		if n == nil {
			panic("guestfs: write to a deleted inode")
		}
		return n
	}
	n := f.base.nodes[ino].clone()
	f.over[ino] = n
	return n
}

// release forgets the node for good and returns its space. Caller holds mu.
func (f *FS) release(n *node) {
	if !n.isDir {
		f.used -= n.size
	}
	f.inodes--
	if _, inBase := f.base.nodes[n.ino]; inBase {
		f.over[n.ino] = nil
	} else {
		delete(f.over, n.ino)
	}
}

// dropLink removes the last (only) link to ino: the node goes now, or at the
// last Close if a handle has it open. Caller holds mu.
func (f *FS) dropLink(ino uint64) {
	if f.opens[ino] > 0 {
		m := f.mut(ino)
		m.unlinked = true
		m.ctim = f.now()
		return
	}
	f.release(f.node(ino))
}

// splitPath turns a path into its components, resolving "." and ".."
// lexically; ".." at the top stays at "/", as on POSIX. A leading "/" is
// optional: every path is from the root. dirOnly is set when the path ends in
// "/", "/." or "/..", so the last component must be a directory.
func splitPath(p string) (parts []string, dirOnly bool, errno xsys.Errno) {
	if len(p) > maxPathLen {
		return nil, false, xsys.ENAMETOOLONG
	}
	switch p[strings.LastIndexByte(p, '/')+1:] {
	case "", ".", "..":
		dirOnly = true
	}
	for len(p) > 0 {
		var name string
		if i := strings.IndexByte(p, '/'); i >= 0 {
			name, p = p[:i], p[i+1:]
		} else {
			name, p = p, ""
		}
		switch name {
		case "", ".":
			continue
		case "..":
			if len(parts) > 0 {
				parts = parts[:len(parts)-1]
			}
			continue
		}
		if len(name) > maxNameLen {
			return nil, false, xsys.ENAMETOOLONG
		}
		if strings.IndexByte(name, 0) >= 0 {
			return nil, false, xsys.EINVAL
		}
		parts = append(parts, name)
	}
	return parts, dirOnly, 0
}

// walk returns the inode the components name. Caller holds mu.
func (f *FS) walk(parts []string) (uint64, xsys.Errno) {
	ino := rootIno
	for _, name := range parts {
		n := f.node(ino)
		if !n.isDir {
			return 0, xsys.ENOTDIR
		}
		c, ok := n.ents[name]
		if !ok {
			return 0, xsys.ENOENT
		}
		ino = c
	}
	return ino, 0
}

// resolve returns the node a path names. Caller holds mu.
func (f *FS) resolve(p string) (*node, xsys.Errno) {
	parts, dirOnly, errno := splitPath(p)
	if errno != 0 {
		return nil, errno
	}
	ino, errno := f.walk(parts)
	if errno != 0 {
		return nil, errno
	}
	n := f.node(ino)
	if dirOnly && !n.isDir {
		return nil, xsys.ENOTDIR
	}
	return n, 0
}

// parent returns the directory that holds the last component, which parts
// must have. Caller holds mu.
// entry finds the last of parts in its parent directory: the directory, the
// name, and its inode number, or ENOENT. parts is not empty; f.mu is held.
func (f *FS) entry(parts []string) (dir *node, name string, ino uint64, errno xsys.Errno) {
	if dir, errno = f.parent(parts); errno != 0 {
		return nil, "", 0, errno
	}
	name = parts[len(parts)-1]
	ino, ok := dir.ents[name]
	if !ok {
		return nil, "", 0, xsys.ENOENT
	}
	return dir, name, ino, 0
}

func (f *FS) parent(parts []string) (*node, xsys.Errno) {
	ino, errno := f.walk(parts[:len(parts)-1])
	if errno != 0 {
		return nil, errno
	}
	if n := f.node(ino); n.isDir {
		return n, 0
	}
	return nil, xsys.ENOTDIR
}

// create adds a new empty file or directory called name to dir. Caller holds
// mu and has checked that name is free.
func (f *FS) create(dir *node, name string, isDir bool, perm fs.FileMode) (uint64, xsys.Errno) {
	if f.inodes >= f.maxInodes {
		return 0, ENOSPC
	}
	now := f.now()
	n := &node{ino: f.nextIno, isDir: isDir, perm: perm & fs.ModePerm, atim: now, mtim: now, ctim: now}
	if isDir {
		n.ents = map[string]uint64{}
	}
	f.nextIno++
	f.inodes++
	f.over[n.ino] = n
	d := f.mut(dir.ino)
	d.ents[name] = n.ino
	if isDir {
		d.nsub++
	}
	d.mtim, d.ctim = now, now
	return n.ino, 0
}

// statOf returns n's status.
func statOf(n *node) sys.Stat_t {
	st := sys.Stat_t{Ino: n.ino, Mode: n.perm, Nlink: 1, Size: n.size, Atim: n.atim, Mtim: n.mtim, Ctim: n.ctim}
	if n.isDir {
		st.Mode |= fs.ModeDir
		st.Nlink = 2 + uint64(n.nsub)
	}
	if n.unlinked {
		st.Nlink = 0
	}
	return st
}

// OpenFile implements sys.FS. Flags are honoured as on Linux: the access mode
// is enforced on the handle; O_CREAT, O_EXCL, O_TRUNC, O_APPEND and
// O_DIRECTORY as documented by open(2) (O_TRUNC truncates a file even when
// opened O_RDONLY, as Linux does); O_NOFOLLOW is moot (there are no
// symlinks); O_SYNC, O_DSYNC, O_RSYNC and O_NONBLOCK change nothing in
// memory. perm is kept (&0o777) for new files but never enforced.
//
// A handle on "/" is special: it survives Reset (it then sees the new tree)
// and OpenFiles does not count it, because wazero opens "/" once per module
// as the pre-opened directory every guest path is resolved through.
func (f *FS) OpenFile(p string, flag xsys.Oflag, perm fs.FileMode) (xsys.File, xsys.Errno) {
	acc := flag & (xsys.O_RDONLY | xsys.O_RDWR | xsys.O_WRONLY)
	if acc == xsys.O_RDWR|xsys.O_WRONLY {
		return nil, xsys.EINVAL
	}
	parts, dirOnly, errno := splitPath(p)
	if errno != 0 {
		return nil, errno
	}
	excl := flag&(xsys.O_CREAT|xsys.O_EXCL) == xsys.O_CREAT|xsys.O_EXCL

	f.mu.Lock()
	defer f.mu.Unlock()
	var ino uint64
	if len(parts) == 0 {
		ino = rootIno
	} else {
		dir, errno := f.parent(parts)
		if errno != 0 {
			return nil, errno
		}
		name := parts[len(parts)-1]
		var ok bool
		if ino, ok = dir.ents[name]; !ok {
			switch {
			case flag&xsys.O_CREAT == 0:
				return nil, xsys.ENOENT
			case dirOnly:
				return nil, xsys.EISDIR
			case flag&xsys.O_DIRECTORY != 0:
				return nil, xsys.EINVAL
			}
			if ino, errno = f.create(dir, name, false, perm); errno != 0 {
				return nil, errno
			}
			return f.newHandle(ino, false, acc, flag), 0
		}
	}
	n := f.node(ino)
	switch {
	case excl:
		return nil, xsys.EEXIST
	case n.isDir && (acc != xsys.O_RDONLY || flag&(xsys.O_CREAT|xsys.O_TRUNC) != 0):
		return nil, xsys.EISDIR
	case !n.isDir && (dirOnly || flag&xsys.O_DIRECTORY != 0):
		return nil, xsys.ENOTDIR
	case !n.isDir && flag&xsys.O_TRUNC != 0:
		m := f.mut(ino)
		f.used -= m.size
		m.truncate(0)
		now := f.now()
		m.mtim, m.ctim = now, now
	}
	return f.newHandle(ino, n.isDir, acc, flag), 0
}

// Lstat implements sys.FS. There are no symlinks, so it is Stat.
func (f *FS) Lstat(p string) (sys.Stat_t, xsys.Errno) { return f.Stat(p) }

// Stat implements sys.FS.
func (f *FS) Stat(p string) (sys.Stat_t, xsys.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, errno := f.resolve(p)
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	return statOf(n), 0
}

// Mkdir implements sys.FS. An existing path of any type is EEXIST, as on
// Linux; a missing parent is ENOENT, a parent that is a file ENOTDIR.
func (f *FS) Mkdir(p string, perm fs.FileMode) xsys.Errno {
	parts, _, errno := splitPath(p)
	if errno != 0 {
		return errno
	}
	if len(parts) == 0 {
		return xsys.EEXIST
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	dir, errno := f.parent(parts)
	if errno != 0 {
		return errno
	}
	name := parts[len(parts)-1]
	if _, ok := dir.ents[name]; ok {
		return xsys.EEXIST
	}
	_, errno = f.create(dir, name, true, perm)
	return errno
}

// Chmod implements sys.FS. Permission bits are stored and reported but never
// enforced: the guest owns every file, like root.
func (f *FS) Chmod(p string, perm fs.FileMode) xsys.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, errno := f.resolve(p)
	if errno != 0 {
		return errno
	}
	m := f.mut(n.ino)
	m.perm = perm & fs.ModePerm
	m.ctim = f.now()
	return 0
}

// Rename implements sys.FS with POSIX rename(2) semantics: an existing
// target is replaced atomically if the types agree (a directory only if
// empty); renaming a path onto itself does nothing; moving a directory into
// its own subtree, or renaming "/", is EINVAL.
func (f *FS) Rename(from, to string) xsys.Errno {
	fparts, fDirOnly, errno := splitPath(from)
	if errno != 0 {
		return errno
	}
	tparts, tDirOnly, errno := splitPath(to)
	if errno != 0 {
		return errno
	}
	if len(fparts) == 0 || len(tparts) == 0 {
		return xsys.EINVAL
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	fdir, fname, fino, errno := f.entry(fparts)
	if errno != 0 {
		return errno
	}
	src := f.node(fino)
	if !src.isDir && (fDirOnly || tDirOnly) {
		return xsys.ENOTDIR
	}
	tdir, errno := f.parent(tparts)
	if errno != 0 {
		return errno
	}
	if src.isDir && len(tparts) > len(fparts) && slicesHavePrefix(tparts, fparts) {
		return xsys.EINVAL
	}
	tname := tparts[len(tparts)-1]
	tino, exists := tdir.ents[tname]
	if exists {
		if tino == fino {
			return 0
		}
		dst := f.node(tino)
		switch {
		case src.isDir && !dst.isDir:
			return xsys.ENOTDIR
		case !src.isDir && dst.isDir:
			return xsys.EISDIR
		case dst.isDir && len(dst.ents) > 0:
			return xsys.ENOTEMPTY
		}
	}

	now := f.now()
	fd := f.mut(fdir.ino)
	delete(fd.ents, fname)
	if src.isDir {
		fd.nsub--
	}
	fd.mtim, fd.ctim = now, now
	td := f.mut(tdir.ino)
	if exists {
		if f.node(tino).isDir {
			td.nsub--
		}
		f.dropLink(tino)
	}
	td.ents[tname] = fino
	if src.isDir {
		td.nsub++
	}
	td.mtim, td.ctim = now, now
	return 0
}

func slicesHavePrefix(s, prefix []string) bool {
	for i, p := range prefix {
		if s[i] != p {
			return false
		}
	}
	return true
}

// Rmdir implements sys.FS. Removing "/" is EINVAL.
func (f *FS) Rmdir(p string) xsys.Errno {
	return f.remove(p, true)
}

// Unlink implements sys.FS. A directory (including "/") is EISDIR.
func (f *FS) Unlink(p string) xsys.Errno {
	return f.remove(p, false)
}

func (f *FS) remove(p string, wantDir bool) xsys.Errno {
	parts, dirOnly, errno := splitPath(p)
	if errno != 0 {
		return errno
	}
	if len(parts) == 0 {
		if wantDir {
			return xsys.EINVAL
		}
		return xsys.EISDIR
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	dir, name, ino, errno := f.entry(parts)
	if errno != 0 {
		return errno
	}
	n := f.node(ino)
	switch {
	case wantDir && !n.isDir, !wantDir && !n.isDir && dirOnly:
		return xsys.ENOTDIR
	case !wantDir && n.isDir:
		return xsys.EISDIR
	case n.isDir && len(n.ents) > 0:
		return xsys.ENOTEMPTY
	}
	d := f.mut(dir.ino)
	delete(d.ents, name)
	if n.isDir {
		d.nsub--
	}
	now := f.now()
	d.mtim, d.ctim = now, now
	f.dropLink(ino)
	return 0
}

// Link implements sys.FS: hard links are not supported (ENOSYS), so every
// file has exactly one name and an Image is a plain tree.
func (f *FS) Link(string, string) xsys.Errno { return xsys.ENOSYS }

// Symlink implements sys.FS: symbolic links are not supported (ENOSYS).
func (f *FS) Symlink(string, string) xsys.Errno { return xsys.ENOSYS }

// Readlink implements sys.FS: nothing is a symlink, so an existing path is
// EINVAL, as readlink(2) says for a path that is not a link.
func (f *FS) Readlink(p string) (string, xsys.Errno) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, errno := f.resolve(p); errno != 0 {
		return "", errno
	}
	return "", xsys.EINVAL
}

// Utimens implements sys.FS. UTIME_OMIT keeps a time; the change time
// becomes now unless both are omitted.
func (f *FS) Utimens(p string, atim, mtim int64) xsys.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, errno := f.resolve(p)
	if errno != 0 {
		return errno
	}
	f.utimens(n.ino, atim, mtim)
	return 0
}

// utimens sets the times of ino. Caller holds mu.
func (f *FS) utimens(ino uint64, atim, mtim int64) {
	if atim == xsys.UTIME_OMIT && mtim == xsys.UTIME_OMIT {
		return
	}
	m := f.mut(ino)
	if atim != xsys.UTIME_OMIT {
		m.atim = atim
	}
	if mtim != xsys.UTIME_OMIT {
		m.mtim = mtim
	}
	m.ctim = f.now()
}

// writeAt writes p at off into ino, refusing the whole write with ENOSPC if
// it would take the tree past its byte cap. Caller holds mu.
func (f *FS) writeAt(ino uint64, p []byte, off int64) xsys.Errno {
	if off > math.MaxInt64-int64(len(p)) {
		return xsys.EINVAL
	}
	grow := off + int64(len(p)) - f.node(ino).size
	if grow > 0 && grow > f.capBytes-f.used {
		return ENOSPC
	}
	m := f.mut(ino)
	m.writeAt(p, off)
	if grow > 0 {
		f.used += grow
	}
	now := f.now()
	m.mtim, m.ctim = now, now
	return 0
}

// truncate sets the size of ino, refusing growth past the byte cap with
// ENOSPC. Caller holds mu.
func (f *FS) truncate(ino uint64, size int64) xsys.Errno {
	grow := size - f.node(ino).size
	if grow > 0 && grow > f.capBytes-f.used {
		return ENOSPC
	}
	m := f.mut(ino)
	m.truncate(size)
	f.used += grow
	now := f.now()
	m.mtim, m.ctim = now, now
	return 0
}

// WriteFile is os.WriteFile for the host: it creates or truncates the file
// name, writes data, syncs and closes it. The parent directory must exist.
// Like os.WriteFile, a write refused for the cap leaves the file truncated.
// Errors are *fs.PathError wrapping a sys.Errno (ENOSPC past the cap). Safe
// to call at any time; it counts as a change (Dirty).
func (f *FS) WriteFile(name string, data []byte, perm fs.FileMode) error {
	h, errno := f.OpenFile(name, xsys.O_WRONLY|xsys.O_CREAT|xsys.O_TRUNC, perm)
	if errno != 0 {
		return &fs.PathError{Op: "open", Path: name, Err: errno}
	}
	_, errno = h.Write(data)
	if errno == 0 {
		errno = h.Sync()
	}
	if cerr := h.Close(); errno == 0 {
		errno = cerr
	}
	if errno != 0 {
		return &fs.PathError{Op: "write", Path: name, Err: errno}
	}
	return nil
}

// ReadFile is os.ReadFile for the host. Errors are *fs.PathError wrapping a
// sys.Errno. Safe to call at any time.
func (f *FS) ReadFile(name string) ([]byte, error) {
	h, errno := f.OpenFile(name, xsys.O_RDONLY, 0)
	if errno != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errno}
	}
	defer h.Close()
	st, errno := h.Stat()
	if errno == 0 && st.Mode.IsDir() {
		errno = xsys.EISDIR
	}
	if errno != 0 {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errno}
	}
	buf := make([]byte, st.Size)
	n, errno := h.Pread(buf, 0)
	if errno != 0 {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errno}
	}
	return buf[:n], nil
}
