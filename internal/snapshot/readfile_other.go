//go:build !linux

package snapshot

import (
	"io"
	"os"
	"time"
)

// readRegular reads the whole regular file at path: see readfile_linux.go.
func readRegular(path string, check func(size int64) error, alloc func(size int64) []byte) ([]byte, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fi.ModTime(), errNotRegular
	}
	if err := check(fi.Size()); err != nil {
		return nil, fi.ModTime(), err
	}
	b := alloc(fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fi.ModTime(), err
	}
	return b, fi.ModTime(), nil
}
