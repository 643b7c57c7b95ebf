package wasm

import (
	"github.com/tetratelabs/wazero/experimental"
)

// linearMemory backs one instance's Wasm memory and enforces the app's
// memory limit. wazero's own limit is per runtime and refuses a grow before
// asking the allocator, so the host could not tell a guest that trapped
// because it ran out of memory from one that trapped for another reason;
// here a refused grow is recorded.
type linearMemory struct {
	buf    []byte
	limit  uint64
	denied bool // a grow past the limit was refused
}

var _ experimental.LinearMemory = (*linearMemory)(nil)

// Reallocate implements experimental.LinearMemory. It is called on the
// guest's goroutine (instantiation and memory.grow).
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.limit {
		m.denied = true
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	c := min(max(size, 2*uint64(cap(m.buf))), m.limit)
	nb := make([]byte, size, c)
	copy(nb, m.buf)
	m.buf = nb
	return nb
}

// Free implements experimental.LinearMemory.
func (m *linearMemory) Free() { m.buf = nil }

// Allocate implements experimental.MemoryAllocator for the instance.
func (in *instance) Allocate(capacity, max uint64) experimental.LinearMemory {
	limit := uint64(in.p.spec.Release.Limits.MemoryBytes)
	if limit == 0 || limit > max {
		limit = max
	}
	in.linear = &linearMemory{buf: make([]byte, 0, min(capacity, limit)), limit: limit}
	return in.linear
}
