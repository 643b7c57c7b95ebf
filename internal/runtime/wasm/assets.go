package wasm

import (
	"io/fs"
	"sync/atomic"

	xsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"

	"github.com/frostdev/frost/internal/assets"
)

// assetsDir is where a release's assets appear in every guest.
const assetsDir = "/assets"

// assetsMount is a release's assets as one instance sees them at /assets:
// read-only, with a count of the handles the guest holds open.
//
// The tree (an assets.FS) is shared by every instance of the program and
// never changes, so it needs no reset between requests. What does need care
// is wazero's descriptor table: a descriptor the guest leaves open stays in
// the table across a reset (the table is not in linear memory), so the next
// request could read it by number, and learn what the last one opened and
// how far it read. The count lets program.put discard such an instance, as
// guestfs.FS.OpenFiles does for "/".
//
// wazero's own adapter for an fs.FS (what FSConfig.WithFSMount installs)
// ignores open flags: a create fails with ENOENT, and an existing file
// opened for writing opens, and only the write fails (ENOSYS). assetsMount
// refuses both at open with EROFS, what a read-only mount says on Linux.
type assetsMount struct {
	xsys.FS // sysfs.AdaptFS over the shared tree

	// open counts handles open now, but for the pre-opened directory.
	open atomic.Int32
	// rootSeen: wazero has opened the root for the pre-opened directory.
	// wazero opens it once per module, on first use, and keeps it open for
	// the module's life; that handle is not the guest's doing, so it is not
	// counted. Only the instance's goroutine touches it.
	rootSeen bool
}

var _ xsys.FS = (*assetsMount)(nil)

func newAssetsMount(tree *assets.FS) *assetsMount {
	return &assetsMount{FS: &sysfs.AdaptFS{FS: tree}}
}

// openFiles returns how many handles the guest holds open on the assets,
// directories included, the pre-opened directory excluded.
func (m *assetsMount) openFiles() int {
	if m == nil {
		return 0
	}
	return int(m.open.Load())
}

const writeFlags = xsys.O_WRONLY | xsys.O_RDWR | xsys.O_CREAT | xsys.O_TRUNC | xsys.O_APPEND

// OpenFile implements xsys.FS: read-only opens go through, counted; any
// other is refused with EROFS (ENOENT for a missing file not being created).
func (m *assetsMount) OpenFile(path string, flag xsys.Oflag, perm fs.FileMode) (xsys.File, xsys.Errno) {
	if flag&writeFlags != 0 {
		if _, errno := m.FS.Stat(path); errno == xsys.ENOENT && flag&xsys.O_CREAT == 0 {
			return nil, xsys.ENOENT
		}
		return nil, xsys.EROFS
	}
	f, errno := m.FS.OpenFile(path, flag, perm)
	if errno != 0 {
		return nil, errno
	}
	if (path == "." || path == "/" || path == "") && !m.rootSeen {
		m.rootSeen = true
		return f, 0
	}
	m.open.Add(1)
	return &countedFile{File: f, m: m}, 0
}

// countedFile is an open asset; closing it takes it off its mount's count.
type countedFile struct {
	xsys.File
	m      *assetsMount
	closed bool
}

// Close implements xsys.File.
func (f *countedFile) Close() xsys.Errno {
	if !f.closed {
		f.closed = true
		f.m.open.Add(-1)
	}
	return f.File.Close()
}

// The rest of xsys.FS changes the tree, which is read-only.

func (m *assetsMount) Mkdir(string, fs.FileMode) xsys.Errno    { return xsys.EROFS }
func (m *assetsMount) Chmod(string, fs.FileMode) xsys.Errno    { return xsys.EROFS }
func (m *assetsMount) Rename(string, string) xsys.Errno        { return xsys.EROFS }
func (m *assetsMount) Rmdir(string) xsys.Errno                 { return xsys.EROFS }
func (m *assetsMount) Unlink(string) xsys.Errno                { return xsys.EROFS }
func (m *assetsMount) Link(string, string) xsys.Errno          { return xsys.EROFS }
func (m *assetsMount) Symlink(string, string) xsys.Errno       { return xsys.EROFS }
func (m *assetsMount) Utimens(string, int64, int64) xsys.Errno { return xsys.EROFS }
