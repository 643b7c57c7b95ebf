package snapshot

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// blockSize is the unit of sparseness: a 4 KiB block of zeros is a hole on
// disk and is left out of a packed part.
const blockSize = 4096

// tmpPrefix starts the name of every temporary file; Open removes them.
const tmpPrefix = ".tmp-"

var zeroBlock [blockSize]byte

// extent is a run of data, [off, off+n), in a part.
type extent struct{ off, n int64 }

// dataExtents returns the runs of b that are not all-zero 4 KiB blocks,
// merged where adjacent, in order. Every extent starts on a block boundary
// and is a whole number of blocks long, except that the last may end at
// len(b) mid-block.
func dataExtents(b []byte) []extent { return appendDataExtents(nil, b) }

// appendDataExtents appends the extents dataExtents returns to dst, so
// that a caller going through a file buffer by buffer reuses one slice.
func appendDataExtents(dst []extent, b []byte) []extent {
	first := len(dst)
	for off := 0; off < len(b); off += blockSize {
		end := min(off+blockSize, len(b))
		if bytes.Equal(b[off:end], zeroBlock[:end-off]) {
			continue
		}
		if k := len(dst) - 1; k >= first && dst[k].off+dst[k].n == int64(off) {
			dst[k].n += int64(end - off)
		} else {
			dst = append(dst, extent{int64(off), int64(end - off)})
		}
	}
	return dst
}

// writeData writes the data extents of b to f at base plus their offset in
// b, and nothing of its zero blocks: in a file extended with Truncate they
// stay holes. base must be a multiple of blockSize for the holes to be
// whole file system blocks. exts is scratch space, returned for reuse.
func writeData(f *os.File, b []byte, base int64, exts []extent) ([]extent, error) {
	exts = appendDataExtents(exts[:0], b)
	for _, e := range exts {
		if _, err := f.WriteAt(b[e.off:e.off+e.n], base+e.off); err != nil {
			return exts, err
		}
	}
	return exts, nil
}

// writeFileAtomic writes data to dir/name through a temporary file in dir:
// truncate to size (so zero blocks stay holes), write the data extents,
// fsync, close, rename. The caller fsyncs dir after the last rename.
func writeFileAtomic(dir, name string, data []byte, sparse bool) (err error) {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if sparse {
		if err := f.Truncate(int64(len(data))); err != nil {
			return err
		}
		if _, err := writeData(f, data, 0, nil); err != nil {
			return err
		}
	} else if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	err = f.Close()
	f = nil
	if err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// syncDir makes the entries of dir (renames, creations) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// dirUsage returns the bytes the files in dir occupy on disk.
func dirUsage(dir string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return 0, err
		}
		n += diskUsage(fi)
	}
	return n, nil
}
