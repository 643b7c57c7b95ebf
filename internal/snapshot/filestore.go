package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// copyBuffer is the buffer PutFiles and GetFiles stream every part
// through: their memory for part data, whatever the parts' sizes. It is a
// multiple of blockSize, so that each of its blocks is a block of the file
// and a zero one can be left a hole.
const copyBuffer = 1 << 20

// streamBuf is a copy buffer and scratch space for the data extents of
// what it holds.
type streamBuf struct {
	b    []byte
	exts []extent
}

// streamBufs keeps copy buffers between calls, so that the thaw path does
// not allocate a MiB each time. It holds at most one per call in flight.
var streamBufs = sync.Pool{New: func() any {
	// At most every other block is the start of an extent.
	return &streamBuf{b: make([]byte, copyBuffer), exts: make([]extent, 0, copyBuffer/blockSize/2+1)}
}}

// PutFiles stores a snapshot of m.Release whose parts are files on the
// host, such as the image directory `runsc checkpoint --image-path`
// writes: files maps each part's name to the path of its file. It is Put
// for parts too large to hold in memory, with Put's guarantees and result:
// the manifest as stored, parts sorted by name with their SHA-256 and
// size; atomic, sparse part files and the manifest last; an unchanged part
// kept rather than written again; then least recently used snapshots
// evicted while the store is over Options.MaxBytes, never this one.
//
// It reads each file once, through a 1 MiB buffer, hashing what it copies
// into a temporary file in the snapshot's directory and skipping zero 4
// KiB blocks, which stay holes. Only at the end of a file is its digest
// known: the copy is then fsynced and renamed to it or, if a part with
// that digest and size is already stored, dropped. So PutFiles holds no
// more than the buffer whatever the sizes. It never writes to, moves or
// removes the files it is given.
//
// Part names follow Put's rule, [a-z0-9][a-z0-9._-]{0,63}, which runsc's
// names (checkpoint.img, pages.img, pages_meta.img) meet. A bad name, an
// empty path or a path that is not a regular file is ErrInvalid, with
// nothing written; a path that cannot be opened or read returns the file
// system's error (errors.Is(err, fs.ErrNotExist) for a missing file). A
// file whose size changes while it is read is refused: something is still
// writing it, and what was read may be torn.
//
// The release's lock is held while the files are copied: a Get or
// GetFiles of the same release waits for the whole copy. ctx is checked
// between parts and between buffers.
func (s *Store) PutFiles(ctx context.Context, m Manifest, files map[string]string) (Manifest, error) {
	m, srcs, err := sealFiles(m, files, s.now())
	if err != nil {
		return Manifest{}, fmt.Errorf("put snapshot: %w", err)
	}
	return s.put(ctx, m, srcs)
}

// sealFiles is seal for PutFiles: it checks m and the files as the caller
// gives them, and returns the manifest with Parts holding pendingPart for
// each, sorted by name, and the files' sources in the same order. Errors
// wrap ErrInvalid, except the file system's from looking at the files.
func sealFiles(m Manifest, files map[string]string, now time.Time) (Manifest, []source, error) {
	m, err := sealHeader(m, now)
	if err != nil {
		return Manifest{}, nil, err
	}
	names := slices.Sorted(maps.Keys(files)) // a map has no name twice
	m.Parts = make([]PartInfo, len(names))
	srcs := make([]source, len(names))
	for i, name := range names {
		if err := checkPartName(name); err != nil {
			return Manifest{}, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		path := files[name]
		if path == "" {
			return Manifest{}, nil, fmt.Errorf("%w: part %q: empty path", ErrInvalid, name)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return Manifest{}, nil, fmt.Errorf("part %q: %w", name, err)
		}
		if !fi.Mode().IsRegular() {
			return Manifest{}, nil, fmt.Errorf("%w: part %q: %s is not a regular file", ErrInvalid, name, path)
		}
		m.Parts[i] = pendingPart(name)
		srcs[i] = fileSource{name: name, path: path}
	}
	return m, srcs, nil
}

// pendingDigest is the digest pendingPart stands in with.
var pendingDigest = strings.Repeat("0", 2*sha256.Size)

// pendingPart stands in for the info of a part not read yet. Its digest
// and size encode at least as long as any real ones, so a manifest
// encoded with it is no shorter than the one finally stored: put refuses
// one too large before anything is written.
func pendingPart(name string) PartInfo {
	return PartInfo{Name: name, Digest: pendingDigest, Size: math.MaxInt64}
}

// fileSource is a part in a file on the host, as PutFiles takes it.
type fileSource struct{ name, path string }

// store copies the file into a temporary file in dir, hashing it and
// leaving zero blocks as holes, and only then, its digest known, renames
// the copy to it, or drops it if the part is already there.
func (p fileSource) store(ctx context.Context, dir string) (_ PartInfo, _ bool, err error) {
	src, err := os.Open(p.path) // read only: the caller's file is never changed
	if err != nil {
		return PartInfo{}, false, err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return PartInfo{}, false, err
	}
	if !fi.Mode().IsRegular() { // replaced since sealFiles looked
		return PartInfo{}, false, fmt.Errorf("%w: %s is not a regular file", ErrInvalid, p.path)
	}
	tmp, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return PartInfo{}, false, err
	}
	tmpName, renamed := tmp.Name(), false
	defer func() {
		if tmp != nil {
			tmp.Close()
		}
		if !renamed {
			os.Remove(tmpName)
		}
	}()

	buf := streamBufs.Get().(*streamBuf)
	defer streamBufs.Put(buf)
	h := sha256.New()
	var size int64
	for {
		if err := ctx.Err(); err != nil {
			return PartInfo{}, false, err
		}
		// Every read but the last fills the buffer, so each starts on a
		// block boundary of the file.
		n, rerr := io.ReadFull(src, buf.b)
		if n > 0 {
			h.Write(buf.b[:n])
			if buf.exts, err = writeData(tmp, buf.b[:n], size, buf.exts); err != nil {
				return PartInfo{}, false, err
			}
			size += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return PartInfo{}, false, fmt.Errorf("read %s: %w", p.path, rerr)
		}
	}
	if size != fi.Size() {
		return PartInfo{}, false, fmt.Errorf("%s changed size while read (%d bytes when opened, %d read): is something still writing it?", p.path, fi.Size(), size)
	}
	if err := tmp.Truncate(size); err != nil { // a trailing run of zero blocks is a hole too
		return PartInfo{}, false, err
	}
	var sum [sha256.Size]byte
	info := PartInfo{Name: p.name, Digest: hex.EncodeToString(h.Sum(sum[:0])), Size: size}
	if present(dir, info) {
		return info, false, nil // the copy was never synced: dropping it costs little
	}
	if err := tmp.Sync(); err != nil {
		return PartInfo{}, false, err
	}
	err = tmp.Close()
	tmp = nil
	if err != nil {
		return PartInfo{}, false, err
	}
	if err := os.Rename(tmpName, filepath.Join(dir, info.Digest)); err != nil {
		return PartInfo{}, false, err
	}
	renamed = true
	return info, true, nil
}

// GetFiles verifies the snapshot of want.Release as Get does and writes
// each of its parts into dir, as a file named by the part's name: the
// image directory `runsc restore --image-path` reads. dir must be a
// directory the caller made, empty. GetFiles returns the manifest.
//
// Its checks, their order and their errors are Get's. Only how a part's
// SHA-256 is checked differs: it is computed on the bytes as they are
// written to dir, in one pass through a 1 MiB buffer, so a part file that
// changes after its size is checked cannot slip through, and GetFiles
// holds no more than the buffer whatever the parts' sizes. Zero 4 KiB
// blocks are left as holes in dir. The files are created with mode 0600
// and not fsynced: they are a scratch copy for a restore about to happen,
// which a crash makes moot.
//
// On any error GetFiles removes the files it created, so dir holds the
// whole verified snapshot or nothing of it. It creates no file over one
// already in dir: a part whose name is taken there is an error wrapping
// fs.ErrExist. An empty dir is ErrInvalid, and so is one that is not a
// directory; a missing one is the file system's error. On success
// GetFiles marks the snapshot used, as Get does.
//
// GetFiles waits only for a Put, PutFiles, Delete or Quarantine of the
// same release, and they for the whole copy. ctx is checked between parts
// and between buffers.
func (s *Store) GetFiles(ctx context.Context, want Want, dir string) (Manifest, error) {
	if err := checkRelease(want.Release); err != nil {
		return Manifest{}, fmt.Errorf("get snapshot: %w: %v", ErrInvalid, err)
	}
	if dir == "" {
		return Manifest{}, fmt.Errorf("get snapshot: %w: empty directory name", ErrInvalid)
	}
	if fi, err := os.Stat(dir); err != nil {
		return Manifest{}, fmt.Errorf("get snapshot: %w", err)
	} else if !fi.IsDir() {
		return Manifest{}, fmt.Errorf("get snapshot: %w: %s is not a directory", ErrInvalid, dir)
	}
	unlock := s.locks.rlock(want.Release)
	defer unlock()
	m, err := s.readFiles(ctx, want, dir)
	if err != nil {
		return Manifest{}, fmt.Errorf("get snapshot %s: %w", short(want.Release), err)
	}
	s.markUsed(want.Release)
	return m, nil
}

// readFiles is GetFiles without the argument checks, the locking and the
// marking.
func (s *Store) readFiles(ctx context.Context, want Want, dir string) (_ Manifest, err error) {
	m, err := s.load(want)
	if err != nil {
		return Manifest{}, err
	}
	var created []string
	defer func() {
		if err != nil {
			for _, path := range created {
				os.Remove(path)
			}
		}
	}()
	buf := streamBufs.Get().(*streamBuf)
	defer streamBufs.Put(buf)
	from := s.path(want.Release)
	for _, p := range m.Parts {
		if err := ctx.Err(); err != nil {
			return Manifest{}, err
		}
		to := filepath.Join(dir, p.Name) // a part name is one path element, never "." or ".."
		made, err := copyPartOut(ctx, filepath.Join(from, p.Digest), p, to, buf)
		if made {
			created = append(created, to)
		}
		if err != nil {
			return Manifest{}, err
		}
	}
	return m, nil
}

// copyPartOut copies the part file at from, once openPart has checked it,
// to a new file at to: its data extents written, its zero blocks left as
// holes, and the SHA-256 computed on exactly the bytes written. It reports
// whether it created to; the caller removes it on error.
func copyPartOut(ctx context.Context, from string, p PartInfo, to string, buf *streamBuf) (created bool, err error) {
	f, err := openPart(from, p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("part %q: %w", p.Name, err)
	}
	defer func() {
		if cerr := out.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("part %q: %w", p.Name, cerr)
		}
	}()
	h := sha256.New()
	for off := int64(0); off < p.Size; {
		if err := ctx.Err(); err != nil {
			return true, err
		}
		b := buf.b[:min(int64(len(buf.b)), p.Size-off)]
		if _, err := io.ReadFull(f, b); err != nil {
			return true, shrank(p, err)
		}
		h.Write(b)
		if buf.exts, err = writeData(out, b, off, buf.exts); err != nil {
			return true, fmt.Errorf("part %q: %w", p.Name, err)
		}
		off += int64(len(b))
	}
	if err := out.Truncate(p.Size); err != nil { // a trailing run of zero blocks is a hole too
		return true, fmt.Errorf("part %q: %w", p.Name, err)
	}
	var sum [sha256.Size]byte
	return true, checkSum(p, h.Sum(sum[:0]))
}
