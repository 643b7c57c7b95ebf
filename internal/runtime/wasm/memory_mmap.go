//go:build linux || darwin

package wasm

import "golang.org/x/sys/unix"

// newRegion reserves size bytes of zeroed address space.
func newRegion(size uint64) *region {
	b, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
	if err != nil {
		return nil // Reallocate then refuses: the guest sees an allocation failure
	}
	return &region{mem: b}
}

// release returns b's pages to the operating system; they read as zero after.
func release(b []byte) {
	if len(b) > 0 {
		unix.Madvise(b, unix.MADV_DONTNEED)
	}
}

func unmap(r *region) { unix.Munmap(r.mem) }

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14): fault the pages in
// writable now. Where it is unknown the call fails harmlessly and the pages
// fault in on first touch instead.
const madvPopulateWrite = 23

// populate makes b's pages resident in one system call.
func populate(b []byte) {
	if len(b) > 0 {
		unix.Madvise(b, madvPopulateWrite)
	}
}
