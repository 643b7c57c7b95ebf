//go:build unix

package wasm

import "syscall"

// newRegion reserves size bytes of zeroed address space.
func newRegion(size uint64) *region {
	b, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return nil // Reallocate then refuses: the guest sees an allocation failure
	}
	return &region{mem: b}
}

// release returns b's pages to the operating system; they read as zero after.
func release(b []byte) {
	if len(b) > 0 {
		syscall.Madvise(b, syscall.MADV_DONTNEED)
	}
}

func unmap(r *region) { syscall.Munmap(r.mem) }

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14): fault the pages in
// writable now. Where it is unknown the call fails harmlessly and the pages
// fault in on first touch instead.
const madvPopulateWrite = 23

// populate makes b's pages resident in one system call.
func populate(b []byte) {
	if len(b) > 0 {
		syscall.Madvise(b, madvPopulateWrite)
	}
}
