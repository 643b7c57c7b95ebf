//go:build unix && race

package rawio

import "syscall"

// Under the race detector the calls are package syscall's, which tell
// the detector that what one goroutine wrote to a socket happened
// before what another reads from it; raw calls would not, and it would
// report races between goroutines that talk through loopback. The rest
// of the package (the poller, partial writes, errors) is the same.

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return max(n, 0), errno(err)
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return max(n, 0), errno(err)
}

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return err.(syscall.Errno)
}
