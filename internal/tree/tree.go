// Package tree packs a directory tree into a tar stream and unpacks one
// into a directory: what `frost sandbox cp` of a directory moves, on both
// ends (the CLI on the user's machine, the agent in the sandbox).
//
// Unpack stages: the archive is written whole into a hidden directory
// inside the destination, and only once its last byte has come is it
// moved into place (a rename per top-level entry new to the destination,
// a rename per file otherwise). An archive cut short, malformed, or
// holding what the destination cannot take (a file where a directory
// is) leaves the destination as it was.
package tree

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Stats counts what an archive held.
type Stats struct {
	Files    int   `json:"files"`
	Dirs     int   `json:"dirs"`
	Symlinks int   `json:"symlinks"`
	Bytes    int64 `json:"bytes"` // of the files' contents
}

// Limits of an archive Unpack takes.
const (
	MaxEntries = 1_000_000
	MaxPath    = 4096
)

// ErrArchive is what a malformed or refused archive's error wraps.
var ErrArchive = errors.New("bad archive")

// Pack writes the tree under dir to w as a tar stream: directories,
// regular files and symbolic links, with their permission bits and
// modification times, named relative to dir, in lexical order. Sockets,
// pipes and devices are left out; a hard link is packed as a file of its
// own. dir itself is not an entry.
func Pack(dir string, w io.Writer) (Stats, error) {
	var st Stats
	fi, err := os.Stat(dir)
	if err != nil {
		return st, err
	}
	if !fi.IsDir() {
		return st, &fs.PathError{Op: "pack", Path: dir, Err: ErrNotDir}
	}
	// A link to a directory is packed as the directory (WalkDir would
	// not descend from it).
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return st, err
	}
	tw := tar.NewWriter(w)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile
		} else if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			st.Dirs++
			return tw.WriteHeader(header(info, name+"/", ""))
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			st.Symlinks++
			return tw.WriteHeader(header(info, name, target))
		case info.Mode().IsRegular():
			n, err := packFile(tw, p, name)
			if err != nil {
				return err
			}
			st.Files++
			st.Bytes += n
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	return st, tw.Close()
}

// header is the tar header of a file: its kind, permission bits (with
// setuid, setgid, sticky), size and modification time (to the second, as
// tar keeps it); not its owners, nor its access and change times.
func header(info fs.FileInfo, name, link string) *tar.Header {
	h, _ := tar.FileInfoHeader(info, link) // only fails for sockets and devices, never packed
	h.Name = name
	h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
	h.ModTime = info.ModTime().Truncate(time.Second)
	h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
	return h
}

// packFile writes one regular file: its size as it is when opened; a
// file that shrinks while it is read fails the pack, one that grows is
// packed as it was.
func packFile(tw *tar.Writer, p, name string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if err := tw.WriteHeader(header(fi, name, "")); err != nil {
		return 0, err
	}
	n, err := io.CopyN(tw, f, fi.Size())
	if err == io.EOF {
		err = fmt.Errorf("%s shrank while it was packed", p)
	}
	return n, err
}

// ErrNotDir is what Pack and Unpack answer for a path that is not a
// directory.
var ErrNotDir = errors.New("not a directory")

// Unpack writes the archive r holds into dir (created, with its parents,
// if missing), merging it with what is there: a file of the archive
// replaces the file of the same name, a directory of the archive is
// merged into the one there. Nothing in dir changes unless the whole
// archive came (r read to its end without an error) and every entry can
// take its place. Entries must be
// directories, regular files, symbolic links or hard links to earlier
// entries, with relative paths that stay inside dir (no "..", no
// absolute names); a pax global header is ignored.
func Unpack(dir string, r io.Reader) (st Stats, err error) {
	made, err := mkdirAllNew(dir)
	if errors.Is(err, syscall.ENOTDIR) {
		return st, &fs.PathError{Op: "unpack", Path: dir, Err: ErrNotDir} // a file there, or on the way to it
	} else if err != nil {
		return st, err
	}
	staging, err := os.MkdirTemp(dir, ".frost-unpack-*")
	if err != nil {
		return st, err
	}
	defer func() {
		os.RemoveAll(staging)
		if err != nil && made != "" {
			os.Remove(dir) // only if still empty: nothing else was put there
			for p := filepath.Dir(dir); len(p) >= len(made); p = filepath.Dir(p) {
				if os.Remove(p) != nil {
					break
				}
			}
		}
	}()
	dirs, st, err := extract(staging, r)
	if err != nil {
		return st, err
	}
	if err := checkPlaces(staging, dir); err != nil {
		return st, err
	}
	if err := moveInto(staging, dir); err != nil {
		return st, err
	}
	// The archive's directories get their modes and times last, deepest
	// first: a read-only one was writable while it was filled, and
	// filling one changes its time.
	slices.SortFunc(dirs, func(a, b dirEntry) int { return strings.Count(b.name, "/") - strings.Count(a.name, "/") })
	for _, d := range dirs {
		p := filepath.Join(dir, filepath.FromSlash(d.name))
		if err := os.Chmod(p, d.mode); err != nil {
			return st, err
		}
		os.Chtimes(p, d.mtime, d.mtime)
	}
	return st, nil
}

// mkdirAllNew is os.MkdirAll that returns the first directory it made
// ("" if dir was there).
func mkdirAllNew(dir string) (string, error) {
	dir = filepath.Clean(dir)
	first := ""
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		first = p
		if filepath.Dir(p) == p {
			break
		}
	}
	return first, os.MkdirAll(dir, 0o755)
}

type dirEntry struct {
	name  string
	mode  fs.FileMode
	mtime time.Time
}

// extract writes the archive's entries under staging, through an
// os.Root: a symbolic link of the archive never leads a later entry out
// of it. It returns the archive's directories.
func extract(staging string, r io.Reader) ([]dirEntry, Stats, error) {
	var st Stats
	root, err := os.OpenRoot(staging)
	if err != nil {
		return nil, st, err
	}
	defer root.Close()
	dirs := map[string]dirEntry{} // by name: a directory given twice takes its last header
	// What is known to be there already, so that each directory is made
	// once and only a name given twice is looked up: every system call
	// counts in a sandbox, where gVisor serves each.
	made := map[string]bool{".": true}
	seen := map[string]bool{}
	mkdirAll := func(name string) error {
		if made[name] {
			return nil
		}
		if err := root.MkdirAll(name, 0o755); err != nil {
			return err
		}
		for p := name; !made[p]; p = path.Dir(p) {
			made[p] = true
		}
		return nil
	}
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			// Read to the end of the stream, past the archive's end
			// blocks: a stream that fails there (an upload cut short
			// after them) was not whole either.
			if _, err := io.Copy(io.Discard, r); err != nil {
				return nil, st, fmt.Errorf("%w: after its last entry: %v", ErrArchive, err)
			}
			st.Dirs = len(dirs)
			return slices.Collect(maps.Values(dirs)), st, nil
		}
		if err != nil {
			return nil, st, fmt.Errorf("%w: after %d entries: %v", ErrArchive, n, err)
		}
		if n >= MaxEntries {
			return nil, st, fmt.Errorf("%w: more than %d entries", ErrArchive, MaxEntries)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := entryName(h.Name)
		if err != nil {
			return nil, st, err
		}
		if name == "." {
			continue // the destination itself
		}
		if err := mkdirAll(path.Dir(name)); err != nil {
			return nil, st, entryErr(h.Name, err)
		}
		if h.Typeflag != tar.TypeDir && (seen[name] || made[name]) {
			// A later entry of a name replaces the earlier, as tar does.
			if made[name] {
				return nil, st, fmt.Errorf("%w: entry %q: a directory of that name came before it", ErrArchive, h.Name)
			}
			root.Remove(name)
		}
		seen[name] = true
		mode := h.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := mkdirAll(name); err != nil {
				return nil, st, fmt.Errorf("%w: entry %q: a file of that name came before it (%v)", ErrArchive, h.Name, err)
			}
			dirs[name] = dirEntry{name: name, mode: mode, mtime: h.ModTime}
		case tar.TypeReg: // the reader gives old-style files (TypeRegA) as TypeReg
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return nil, st, entryErr(h.Name, err)
			}
			src := &readSide{r: tr}
			k, err := io.Copy(f, src)
			if err == nil {
				err = f.Chmod(mode)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if src.err != nil { // the archive's failure, not the file's
				return nil, st, fmt.Errorf("%w: entry %q: the archive ended inside it: %v", ErrArchive, h.Name, src.err)
			}
			if err != nil {
				return nil, st, entryErr(h.Name, err)
			}
			root.Chtimes(name, h.ModTime, h.ModTime)
			st.Files++
			st.Bytes += k
		case tar.TypeSymlink:
			if h.Linkname == "" || len(h.Linkname) > MaxPath {
				return nil, st, fmt.Errorf("%w: entry %q: a symbolic link needs a target of 1 to %d bytes", ErrArchive, h.Name, MaxPath)
			}
			if err := root.Symlink(h.Linkname, name); err != nil {
				return nil, st, entryErr(h.Name, err)
			}
			st.Symlinks++
		case tar.TypeLink:
			target, err := entryName(h.Linkname)
			if err != nil {
				return nil, st, err
			}
			if fi, err := root.Lstat(target); err != nil || !fi.Mode().IsRegular() {
				return nil, st, fmt.Errorf("%w: entry %q: a hard link to %q, which is not a file earlier in the archive", ErrArchive, h.Name, h.Linkname)
			}
			if err := root.Link(target, name); err != nil {
				return nil, st, entryErr(h.Name, err)
			}
			st.Files++
		default:
			return nil, st, fmt.Errorf("%w: entry %q is of type %q: only directories, files and links can be unpacked", ErrArchive, h.Name, h.Typeflag)
		}
	}
}

// readSide remembers the failure of the reader it wraps, so that a copy's
// error is told to be the source's or the destination's.
type readSide struct {
	r   io.Reader
	err error
}

func (s *readSide) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// entryName checks and cleans an entry's name: relative, inside the
// destination, of at most MaxPath bytes ("." for the destination).
func entryName(name string) (string, error) {
	if name == "" || len(name) > MaxPath || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: entry name %q: want 1 to %d bytes", ErrArchive, name, MaxPath)
	}
	clean := path.Clean(name) // ".." can only lead it then
	if path.IsAbs(name) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("%w: entry %q leaves the directory it is unpacked into (absolute, or through \"..\")", ErrArchive, name)
	}
	return clean, nil
}

func entryErr(name string, err error) error {
	return fmt.Errorf("entry %q: %w", name, err)
}

// eachStaged calls fn for every entry under staging, top down, with its
// path relative to staging and its place in dir; fn's filepath.SkipDir
// skips what a directory holds.
func eachStaged(staging, dir string, fn func(p, rel, dst string, d fs.DirEntry) error) error {
	return filepath.WalkDir(staging, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == staging {
			return err
		}
		rel, _ := filepath.Rel(staging, p)
		return fn(p, rel, filepath.Join(dir, rel), d)
	})
}

// checkPlaces makes sure every staged entry can take its place in dir:
// no file where dir has a directory, no directory where it has a file.
func checkPlaces(staging, dir string) error {
	return eachStaged(staging, dir, func(_, rel, dst string, d fs.DirEntry) error {
		if d.IsDir() {
			// Merged into a directory there, or one a link there leads to.
			there, err := os.Stat(dst)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return filepath.SkipDir // moved whole
			case err != nil:
				return err
			case !there.IsDir():
				return fmt.Errorf("%w: %s is a file in %s; the archive has a directory there", ErrArchive, filepath.ToSlash(rel), dir)
			}
			return nil
		}
		// A file or link replaces a file or link there, never a directory.
		there, err := os.Lstat(dst)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			return err
		case there.IsDir():
			return fmt.Errorf("%w: %s is a directory in %s; the archive has a file there", ErrArchive, filepath.ToSlash(rel), dir)
		}
		return nil
	})
}

// moveInto moves the staged entries into dir: a directory new to dir in
// one rename, a file over the one there. Across file systems (a mount
// point inside dir) what a rename cannot move is copied.
func moveInto(staging, dir string) error {
	return eachStaged(staging, dir, func(p, _, dst string, d fs.DirEntry) error {
		if d.IsDir() {
			if _, err := os.Stat(dst); err == nil {
				return nil // merge into it
			}
			if os.Rename(p, dst) == nil {
				return filepath.SkipDir
			}
			return os.Mkdir(dst, 0o755) // another file system: file by file
		}
		if os.Rename(p, dst) == nil {
			return nil
		}
		return copyInto(p, dst, d)
	})
}

// copyInto copies a staged file or symbolic link to dst, replacing it at
// once (a temporary file beside it, renamed).
func copyInto(src, dst string, d fs.DirEntry) error {
	if d.Type()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		tmp := filepath.Join(filepath.Dir(dst), ".frost-unpack-link-"+filepath.Base(dst))
		os.Remove(tmp)
		if err := os.Symlink(target, tmp); err != nil {
			return err
		}
		return os.Rename(tmp, dst)
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.CreateTemp(filepath.Dir(dst), ".frost-unpack-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Chmod(fi.Mode())
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		os.Chtimes(out.Name(), fi.ModTime(), fi.ModTime())
		err = os.Rename(out.Name(), dst)
	}
	if err != nil {
		os.Remove(out.Name())
	}
	return err
}
