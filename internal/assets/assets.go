// Package assets reads an app's read-only assets: a tar archive of regular
// files and directories, checked strictly and held in memory as an immutable
// fs.FS that the runtime mounts at /assets in every guest.
//
// The archive is untrusted input (anyone with the API token uploads it), so
// Parse accepts only what api.PackAssets writes, plus the variations other
// tar writers commonly make (a "./" prefix, implicit parent directories, PAX
// and GNU long names), and refuses everything else with a precise error:
// absolute paths, "..", non-UTF-8 names, duplicates, a path that is both a
// file and a directory, and any entry that is not a regular file or a
// directory (symbolic and hard links, devices, pipes, sparse files).
//
// An FS never changes after Parse, so one FS serves every instance of a
// program at once; file data is shared, never copied per open.
package assets

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero/sys"
)

// ErrInvalid is the error, checked with errors.Is, for an archive Parse
// refuses. The message names the entry and says what is wrong with it.
var ErrInvalid = errors.New("invalid assets archive")

// Limits on an archive's shape. Its size is bounded by whoever hands Parse
// the bytes (the blob store's upload limit).
const (
	// MaxEntries is the most files and directories an archive may hold.
	MaxEntries = 100_000
	// MaxPathLen is the longest path, in bytes, as on Linux.
	MaxPathLen = 4096
	// MaxNameLen is the longest path component, in bytes, as on Linux.
	MaxNameLen = 255
)

// Dev is the device number every asset reports in its stat, so that a guest
// never takes an asset and a file of its writable file system (device 0)
// for the same file.
const Dev = 1

// FS is an immutable in-memory tree of files and directories. It implements
// fs.FS, fs.ReadDirFS, fs.ReadFileFS and fs.StatFS and is safe for
// concurrent use; each File it opens is for one goroutine at a time.
type FS struct {
	nodes map[string]*node // by path; "." is the root
	size  int64            // sum of file sizes
}

// node is one file or directory.
type node struct {
	path    string
	name    string // last path element; "." for the root
	isDir   bool
	mode    fs.FileMode
	modTime time.Time
	ino     uint64
	data    []byte  // files
	kids    []*node // directories, sorted by name once Parse returns
	// explicit: the archive had an entry for it (not just a path under it).
	explicit bool
}

var (
	_ fs.ReadDirFS  = (*FS)(nil)
	_ fs.ReadFileFS = (*FS)(nil)
	_ fs.StatFS     = (*FS)(nil)
)

// Parse reads a tar archive into an FS, or says precisely why it cannot. An
// empty input is an empty tree. File modes are normalised to read-only:
// 0444 for files (0555 if the archive made them executable) and 0555 for
// directories.
func Parse(archive []byte) (*FS, error) {
	root := &node{path: ".", name: ".", isDir: true, mode: fs.ModeDir | 0o555, modTime: time.Unix(0, 0), ino: 1, explicit: true}
	f := &FS{nodes: map[string]*node{".": root}}
	tr := tar.NewReader(bytes.NewReader(archive))
	for entries := 0; ; entries++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: %v", ErrInvalid, entries+1, tarError(err))
		}
		if entries >= MaxEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrInvalid, MaxEntries)
		}
		if err := f.add(tr, hdr, int64(len(archive))); err != nil {
			return nil, err
		}
	}
	for _, n := range f.nodes {
		if n.isDir {
			slices.SortFunc(n.kids, func(a, b *node) int { return strings.Compare(a.name, b.name) })
		}
	}
	return f, nil
}

// add adds the entry hdr, reading a file's data from tr; limit bounds a
// file's size (no file is larger than the archive that holds it).
func (f *FS) add(tr *tar.Reader, hdr *tar.Header, limit int64) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // archive-wide metadata, such as the commit git archive records
	}
	name, err := cleanName(hdr)
	if err != nil {
		return err
	}
	var isDir bool
	switch hdr.Typeflag {
	case tar.TypeReg:
	case tar.TypeDir:
		isDir = true
	default:
		return fmt.Errorf("%w: %q is %s; assets hold only regular files and directories", ErrInvalid, hdr.Name, typeName(hdr.Typeflag))
	}
	if name == "." {
		if !isDir {
			return fmt.Errorf("%w: %q names the root, which is a directory", ErrInvalid, hdr.Name)
		}
		return nil // the root always exists
	}
	if !isDir && (hdr.Size < 0 || hdr.Size > limit) {
		return fmt.Errorf("%w: %q claims %d bytes, more than the archive holds", ErrInvalid, hdr.Name, hdr.Size)
	}
	parent, err := f.parentOf(name)
	if err != nil {
		return err
	}
	if n, ok := f.nodes[name]; ok {
		if n.explicit || !isDir {
			return fmt.Errorf("%w: %q appears twice (or is both a file and a directory)", ErrInvalid, hdr.Name)
		}
		n.explicit = true // a directory first seen as a parent
		n.modTime = hdr.ModTime
		return nil
	}
	n := &node{path: name, name: path.Base(name), isDir: isDir, modTime: hdr.ModTime, explicit: true}
	if isDir {
		n.mode = fs.ModeDir | 0o555
	} else {
		n.mode = 0o444
		if hdr.Mode&0o111 != 0 {
			n.mode = 0o555
		}
		n.data = make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, n.data); err != nil {
			return fmt.Errorf("%w: %q: %v", ErrInvalid, hdr.Name, tarError(err))
		}
		f.size += hdr.Size
	}
	f.link(parent, n)
	return nil
}

// cleanName returns hdr's path relative to the root ("." for the root
// itself), or why it is not acceptable.
func cleanName(hdr *tar.Header) (string, error) {
	name := hdr.Name
	bad := func(why string) error {
		return fmt.Errorf("%w: entry %q: %s", ErrInvalid, name, why)
	}
	switch {
	case name == "":
		return "", bad("empty path")
	case len(name) > MaxPathLen:
		return "", bad(fmt.Sprintf("path longer than %d bytes", MaxPathLen))
	case !utf8.ValidString(name):
		return "", bad("path is not UTF-8")
	case strings.ContainsRune(name, 0):
		return "", bad("path contains a NUL byte")
	case strings.HasPrefix(name, "/"):
		return "", bad("absolute path; paths must be relative to the assets root")
	}
	p := name
	for strings.HasPrefix(p, "./") {
		p = p[2:]
	}
	if hdr.Typeflag == tar.TypeDir {
		p = strings.TrimSuffix(p, "/")
	}
	if p == "" || p == "." {
		return ".", nil
	}
	if !fs.ValidPath(p) {
		for _, el := range strings.Split(p, "/") {
			if el == ".." {
				return "", bad(`path contains ".."`)
			}
		}
		return "", bad(`path is not clean (an empty, "." or trailing element)`)
	}
	for _, el := range strings.Split(p, "/") {
		if len(el) > MaxNameLen {
			return "", bad(fmt.Sprintf("a path element is longer than %d bytes", MaxNameLen))
		}
	}
	return p, nil
}

// parentOf returns the directory that holds name, making the directories
// on the way that the archive has not named (yet).
func (f *FS) parentOf(name string) (*node, error) {
	dir := path.Dir(name)
	if n, ok := f.nodes[dir]; ok {
		if !n.isDir {
			return nil, fmt.Errorf("%w: %q is under %q, which is a file", ErrInvalid, name, dir)
		}
		return n, nil
	}
	parent, err := f.parentOf(dir)
	if err != nil {
		return nil, err
	}
	n := &node{path: dir, name: path.Base(dir), isDir: true, mode: fs.ModeDir | 0o555, modTime: time.Unix(0, 0)}
	f.link(parent, n)
	return n, nil
}

func (f *FS) link(parent, n *node) {
	n.ino = uint64(len(f.nodes)) + 1
	f.nodes[n.path] = n
	parent.kids = append(parent.kids, n)
}

// tarError explains archive/tar's terse errors.
func tarError(err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("the archive ends early: it is truncated, or not a tar archive")
	case errors.Is(err, tar.ErrHeader):
		return errors.New("bad tar header: the archive is damaged, or not a tar archive")
	}
	return err
}

// typeName says what kind of entry a tar type flag is, for error messages.
func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "a symbolic link"
	case tar.TypeLink:
		return "a hard link"
	case tar.TypeChar:
		return "a character device"
	case tar.TypeBlock:
		return "a block device"
	case tar.TypeFifo:
		return "a named pipe"
	case tar.TypeGNUSparse:
		return "a sparse file"
	case tar.TypeCont:
		return "a contiguous file"
	}
	return fmt.Sprintf("an entry of tar type %q", t)
}

// Size returns the bytes of file data the tree holds.
func (f *FS) Size() int64 { return f.size }

// Len returns how many files and directories the tree holds, the root
// included.
func (f *FS) Len() int { return len(f.nodes) }

// lookup returns the node at name, or an *fs.PathError for op.
func (f *FS) lookup(op, name string) (*node, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	n, ok := f.nodes[name]
	if !ok {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return n, nil
}

// Open implements fs.FS. The file reads from the tree's memory; it has no
// Write method, so nothing can change the tree through it.
func (f *FS) Open(name string) (fs.File, error) {
	n, err := f.lookup("open", name)
	if err != nil {
		return nil, err
	}
	return &File{n: n}, nil
}

// Stat implements fs.StatFS.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	n, err := f.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	return info{n}, nil
}

// ReadDir implements fs.ReadDirFS: the directory's entries, sorted by name.
func (f *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	n, err := f.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if !n.isDir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: syscall.ENOTDIR}
	}
	return dirEntries(n.kids), nil
}

// ReadFile implements fs.ReadFileFS; the caller owns the returned copy.
func (f *FS) ReadFile(name string) ([]byte, error) {
	n, err := f.lookup("read", name)
	if err != nil {
		return nil, err
	}
	if n.isDir {
		return nil, &fs.PathError{Op: "read", Path: name, Err: syscall.EISDIR}
	}
	return bytes.Clone(n.data), nil
}

func dirEntries(nodes []*node) []fs.DirEntry {
	out := make([]fs.DirEntry, len(nodes))
	for i, n := range nodes {
		out[i] = info{n}
	}
	return out
}

// info is a node's fs.FileInfo and fs.DirEntry.
type info struct{ n *node }

func (i info) Name() string               { return i.n.name }
func (i info) Size() int64                { return int64(len(i.n.data)) }
func (i info) Mode() fs.FileMode          { return i.n.mode }
func (i info) Type() fs.FileMode          { return i.n.mode.Type() }
func (i info) ModTime() time.Time         { return i.n.modTime }
func (i info) IsDir() bool                { return i.n.isDir }
func (i info) Info() (fs.FileInfo, error) { return i, nil }
func (i info) String() string             { return fs.FormatFileInfo(i) }

// Sys returns a *sys.Stat_t, which wazero hands to guests as is: it gives
// every asset its own inode number on device Dev.
func (i info) Sys() any {
	n := i.n
	st := &sys.Stat_t{Dev: Dev, Ino: n.ino, Mode: n.mode, Nlink: 1, Size: int64(len(n.data))}
	if n.isDir {
		st.Nlink = 2
		for _, k := range n.kids {
			if k.isDir {
				st.Nlink++
			}
		}
	}
	t := n.modTime.UnixNano()
	st.Atim, st.Mtim, st.Ctim = t, t, t
	return st
}

// File is an open file or directory of an FS. It implements fs.File,
// io.ReaderAt, io.Seeker and, for directories, fs.ReadDirFile. It is not
// safe for concurrent use.
type File struct {
	n      *node
	off    int64 // read offset (files) or entries read (directories)
	closed bool
}

var (
	_ fs.ReadDirFile = (*File)(nil)
	_ io.ReaderAt    = (*File)(nil)
	_ io.Seeker      = (*File)(nil)
)

func (h *File) check(op string) error {
	if h.closed {
		return &fs.PathError{Op: op, Path: h.n.path, Err: fs.ErrClosed}
	}
	return nil
}

// Stat implements fs.File.
func (h *File) Stat() (fs.FileInfo, error) {
	if err := h.check("stat"); err != nil {
		return nil, err
	}
	return info{h.n}, nil
}

// Read implements fs.File.
func (h *File) Read(p []byte) (int, error) {
	if err := h.check("read"); err != nil {
		return 0, err
	}
	if h.n.isDir {
		return 0, &fs.PathError{Op: "read", Path: h.n.path, Err: syscall.EISDIR}
	}
	if h.off >= int64(len(h.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, h.n.data[h.off:])
	h.off += int64(n)
	return n, nil
}

// ReadAt implements io.ReaderAt.
func (h *File) ReadAt(p []byte, off int64) (int, error) {
	if err := h.check("read"); err != nil {
		return 0, err
	}
	if h.n.isDir {
		return 0, &fs.PathError{Op: "read", Path: h.n.path, Err: syscall.EISDIR}
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: h.n.path, Err: fs.ErrInvalid}
	}
	if off >= int64(len(h.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, h.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Seek implements io.Seeker. On a directory only Seek(0, io.SeekStart) is
// allowed: it rewinds ReadDir.
func (h *File) Seek(offset int64, whence int) (int64, error) {
	if err := h.check("seek"); err != nil {
		return 0, err
	}
	if h.n.isDir {
		if offset != 0 || whence != io.SeekStart {
			return 0, &fs.PathError{Op: "seek", Path: h.n.path, Err: fs.ErrInvalid}
		}
		h.off = 0
		return 0, nil
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += h.off
	case io.SeekEnd:
		offset += int64(len(h.n.data))
	default:
		return 0, &fs.PathError{Op: "seek", Path: h.n.path, Err: fs.ErrInvalid}
	}
	if offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: h.n.path, Err: fs.ErrInvalid}
	}
	h.off = offset
	return offset, nil
}

// ReadDir implements fs.ReadDirFile.
func (h *File) ReadDir(count int) ([]fs.DirEntry, error) {
	if err := h.check("readdir"); err != nil {
		return nil, err
	}
	if !h.n.isDir {
		return nil, &fs.PathError{Op: "readdir", Path: h.n.path, Err: syscall.ENOTDIR}
	}
	rest := h.n.kids[min(h.off, int64(len(h.n.kids))):]
	if count > 0 {
		if len(rest) == 0 {
			return nil, io.EOF
		}
		rest = rest[:min(count, len(rest))]
	}
	h.off += int64(len(rest))
	return dirEntries(rest), nil
}

// Close implements fs.File. Closing twice is an error, as for *os.File.
func (h *File) Close() error {
	if err := h.check("close"); err != nil {
		return err
	}
	h.closed = true
	return nil
}
