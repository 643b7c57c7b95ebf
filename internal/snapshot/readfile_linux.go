//go:build linux

package snapshot

import (
	"io"
	"io/fs"
	"syscall"
	"time"
)

// readRegular reads the whole regular file at path with plain system
// calls. An os.File registers with the network poller, three system calls
// wasted on a regular file: half of the ~13 µs an open, stat, read and
// close of a small file costs on the machines Frost's CI runs on, and a
// thaw reads four files. O_NONBLOCK keeps the open of a FIFO planted in the
// store from waiting for a writer: it is then refused as not regular.
//
// check vets the file's size before anything is allocated or read, and
// its error comes back as is; alloc returns the buffer, of exactly that
// size. A file that is not regular is errNotRegular; one that ends before
// its size, io.ErrUnexpectedEOF. The modification time comes back whenever
// the file could be stat'ed.
func readRegular(path string, check func(size int64) error, alloc func(size int64) []byte) ([]byte, time.Time, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, time.Time{}, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, time.Time{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	mtime := time.Unix(st.Mtim.Unix())
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, mtime, errNotRegular
	}
	if err := check(st.Size); err != nil {
		return nil, mtime, err
	}
	b := alloc(st.Size)
	for n := 0; n < len(b); {
		m, err := syscall.Read(fd, b[n:])
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return nil, mtime, &fs.PathError{Op: "read", Path: path, Err: err}
		case m == 0:
			return nil, mtime, io.ErrUnexpectedEOF
		}
		n += m
	}
	return b, mtime, nil
}
