package guestfs

import (
	"io"
	"io/fs"
	"maps"
	"math"
	"slices"

	xsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

// file is an open handle. It names its node by inode number, so it follows
// the node through renames and copy-on-write. Every method takes the FS
// mutex; a handle is stale once its FS has been Reset (except on "/").
type file struct {
	xsys.UnimplementedFile

	fs     *FS
	ino    uint64
	gen    uint64 // the FS generation it was opened in
	root   bool   // a handle on "/": survives Reset, not counted
	isDir  bool
	read   bool
	write  bool
	append bool
	closed bool
	off    int64

	// Directory listing: names as of the first Readdir since open or rewind,
	// sorted; entries removed since are skipped when reached.
	names  []string
	listed bool
	pos    int
}

var _ xsys.File = (*file)(nil)

// newHandle opens a handle on ino. Caller holds mu.
func (f *FS) newHandle(ino uint64, isDir bool, acc, flag xsys.Oflag) *file {
	h := &file{
		fs:     f,
		ino:    ino,
		gen:    f.gen,
		root:   ino == rootIno,
		isDir:  isDir,
		read:   acc != xsys.O_WRONLY,
		write:  acc != xsys.O_RDONLY,
		append: !isDir && flag&xsys.O_APPEND != 0,
	}
	if !h.root {
		f.opens[ino]++
		f.nopen++
	}
	return h
}

// live returns the handle's node, or EBADF if the handle is closed or stale.
// A handle on "/" adopts the current generation, restarting any listing.
// Caller holds mu.
func (h *file) live() (*node, xsys.Errno) {
	f := h.fs
	switch {
	case h.closed:
		return nil, xsys.EBADF
	case h.gen != f.gen:
		if !h.root {
			return nil, xsys.EBADF
		}
		h.gen = f.gen
		h.names, h.listed, h.pos = nil, false, 0
	}
	if n := f.node(h.ino); n != nil {
		return n, 0
	}
	return nil, xsys.EBADF // unreachable: an open handle keeps its node
}

// lock takes the FS mutex and returns the live node and the unlock function.
func (h *file) lock() (*node, func(), xsys.Errno) {
	h.fs.mu.Lock()
	n, errno := h.live()
	return n, h.fs.mu.Unlock, errno
}

// Dev implements sys.File. Every node is on device 0.
func (h *file) Dev() (uint64, xsys.Errno) {
	_, unlock, errno := h.lock()
	defer unlock()
	return 0, errno
}

// Ino implements sys.File.
func (h *file) Ino() (sys.Inode, xsys.Errno) {
	_, unlock, errno := h.lock()
	defer unlock()
	if errno != 0 {
		return 0, errno
	}
	return h.ino, 0
}

// IsDir implements sys.File.
func (h *file) IsDir() (bool, xsys.Errno) {
	_, unlock, errno := h.lock()
	defer unlock()
	if errno != 0 {
		return false, errno
	}
	return h.isDir, 0
}

// IsAppend implements sys.File.
func (h *file) IsAppend() bool {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	return h.append
}

// SetAppend implements sys.File.
func (h *file) SetAppend(enable bool) xsys.Errno {
	_, unlock, errno := h.lock()
	defer unlock()
	switch {
	case errno != 0:
		return errno
	case h.isDir:
		return xsys.EISDIR
	}
	h.append = enable
	return 0
}

// Stat implements sys.File. It works on a file unlinked while open (Nlink 0).
func (h *file) Stat() (sys.Stat_t, xsys.Errno) {
	n, unlock, errno := h.lock()
	defer unlock()
	if errno != 0 {
		return sys.Stat_t{}, errno
	}
	return statOf(n), 0
}

// Read implements sys.File.
func (h *file) Read(buf []byte) (int, xsys.Errno) {
	n, unlock, errno := h.lock()
	defer unlock()
	if errno = h.check(errno, h.read); errno != 0 || len(buf) == 0 {
		return 0, errno
	}
	c := n.readAt(buf, h.off)
	h.off += int64(c)
	return c, 0
}

// Pread implements sys.File.
func (h *file) Pread(buf []byte, off int64) (int, xsys.Errno) {
	n, unlock, errno := h.lock()
	defer unlock()
	if errno = h.check(errno, h.read); errno != 0 {
		return 0, errno
	}
	if off < 0 {
		return 0, xsys.EINVAL
	}
	return n.readAt(buf, off), 0
}

// check orders the errors of the data methods: closed or stale, then a
// directory, then not open for this kind of access.
func (h *file) check(errno xsys.Errno, allowed bool) xsys.Errno {
	switch {
	case errno != 0:
		return errno
	case h.isDir:
		return xsys.EISDIR
	case !allowed:
		return xsys.EBADF
	}
	return 0
}

// fileOffset is int64. Seek's parameter is spelled with it because go vet's
// stdmethods check takes any method named Seek with an int64 first parameter
// for an io.Seeker and wants it to return error; sys.File's Seek returns an
// Errno by design (wazero's own files fail the same check).
type fileOffset = int64

// Seek implements sys.File. Offsets past the end are allowed (a later write
// leaves a hole). On a directory only Seek(0, io.SeekStart), which rewinds
// Readdir, is allowed; anything else is EISDIR, as wazero's fd_seek says.
func (h *file) Seek(offset fileOffset, whence int) (int64, xsys.Errno) {
	n, unlock, errno := h.lock()
	defer unlock()
	if errno != 0 {
		return 0, errno
	}
	if h.isDir {
		if offset != 0 || whence != io.SeekStart {
			return 0, xsys.EISDIR
		}
		h.names, h.listed, h.pos = nil, false, 0
		return 0, 0
	}
	var base int64
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		base = h.off
	case io.SeekEnd:
		base = n.size
	default:
		return 0, xsys.EINVAL
	}
	if offset > 0 && base > math.MaxInt64-offset {
		return 0, xsys.EINVAL
	}
	if base+offset < 0 {
		return 0, xsys.EINVAL
	}
	h.off = base + offset
	return h.off, 0
}

// Readdir implements sys.File. Entries come sorted by name, without "." and
// ".." (wazero adds those). A directory removed while open is ENOENT; a
// handle on a file is EBADF.
func (h *file) Readdir(count int) ([]xsys.Dirent, xsys.Errno) {
	n, unlock, errno := h.lock()
	defer unlock()
	switch {
	case errno != 0:
		return nil, errno
	case !h.isDir:
		return nil, xsys.EBADF
	case n.unlinked:
		return nil, xsys.ENOENT
	}
	if !h.listed {
		h.names = slices.Sorted(maps.Keys(n.ents))
		h.listed, h.pos = true, 0
	}
	var out []xsys.Dirent
	for h.pos < len(h.names) && (count <= 0 || len(out) < count) {
		name := h.names[h.pos]
		h.pos++
		ino, ok := n.ents[name]
		if !ok {
			continue // removed since the listing began
		}
		d := xsys.Dirent{Ino: ino, Name: name}
		if h.fs.node(ino).isDir {
			d.Type = fs.ModeDir
		}
		out = append(out, d)
	}
	return out, 0
}

// Write implements sys.File. A write that would pass the byte cap is refused
// whole with ENOSPC (nothing is written). With O_APPEND every write goes to
// the end of the file.
func (h *file) Write(buf []byte) (int, xsys.Errno) {
	n, unlock, errno := h.lock()
	defer unlock()
	if errno = h.check(errno, h.write); errno != 0 || len(buf) == 0 {
		return 0, errno
	}
	off := h.off
	if h.append {
		off = n.size
	}
	if errno = h.fs.writeAt(h.ino, buf, off); errno != 0 {
		return 0, errno
	}
	h.off = off + int64(len(buf))
	return len(buf), 0
}

// Pwrite implements sys.File. It writes at off even with O_APPEND (POSIX;
// Linux would append).
func (h *file) Pwrite(buf []byte, off int64) (int, xsys.Errno) {
	_, unlock, errno := h.lock()
	defer unlock()
	if errno = h.check(errno, h.write); errno != 0 {
		return 0, errno
	}
	if off < 0 {
		return 0, xsys.EINVAL
	}
	if len(buf) == 0 {
		return 0, 0
	}
	if errno = h.fs.writeAt(h.ino, buf, off); errno != 0 {
		return 0, errno
	}
	return len(buf), 0
}

// Truncate implements sys.File. Growth counts against the byte cap (ENOSPC);
// the new bytes read as zeros. The handle must be open for writing (EBADF).
func (h *file) Truncate(size int64) xsys.Errno {
	_, unlock, errno := h.lock()
	defer unlock()
	if errno = h.check(errno, h.write); errno != 0 {
		return errno
	}
	if size < 0 {
		return xsys.EINVAL
	}
	return h.fs.truncate(h.ino, size)
}

// Sync implements sys.File: memory is the storage, so only EBADF can fail.
func (h *file) Sync() xsys.Errno {
	_, unlock, errno := h.lock()
	defer unlock()
	return errno
}

// Datasync implements sys.File like Sync.
func (h *file) Datasync() xsys.Errno { return h.Sync() }

// Utimens implements sys.File. It works on any handle, read-only ones and
// directories included: the guest owns every file.
func (h *file) Utimens(atim, mtim int64) xsys.Errno {
	_, unlock, errno := h.lock()
	defer unlock()
	if errno != 0 {
		return errno
	}
	h.fs.utimens(h.ino, atim, mtim)
	return 0
}

// Close implements sys.File. Closing twice, or closing a stale handle, is a
// no-op that succeeds, so that wazero always frees the descriptor. The last
// Close of a file unlinked while open frees its space.
func (h *file) Close() xsys.Errno {
	f := h.fs
	f.mu.Lock()
	defer f.mu.Unlock()
	if h.closed {
		return 0
	}
	h.closed = true
	h.names = nil
	if h.root || h.gen != f.gen {
		return 0
	}
	f.nopen--
	if c := f.opens[h.ino] - 1; c > 0 {
		f.opens[h.ino] = c
		return 0
	}
	delete(f.opens, h.ino)
	if n := f.node(h.ino); n != nil && n.unlinked {
		f.release(n)
	}
	return 0
}
