package wasm

import (
	"sync"

	"github.com/tetratelabs/wazero/experimental"
)

// linearMemory backs one instance's Wasm memory and enforces the app's
// memory limit. wazero's own limit is per runtime and refuses a grow before
// asking the allocator, so the host could not tell a guest that trapped
// because it ran out of memory from one that trapped for another reason;
// here a refused grow is recorded.
//
// The memory lives in a region reserved up front for the whole limit
// (address space only: pages become resident when the guest touches them),
// so growing never copies, and regions are recycled between instances: a CGI
// request, which instantiates afresh every time, reuses pages that are
// already resident instead of faulting new ones in, and clears only what the
// previous guest used.
type linearMemory struct {
	r      *region
	buf    []byte
	limit  uint64
	denied bool // a grow past the limit was refused
}

var _ experimental.LinearMemory = (*linearMemory)(nil)

// Reallocate implements experimental.LinearMemory. It is called on the
// guest's goroutine (instantiation and memory.grow).
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.limit || m.r == nil {
		m.denied = true
		return nil
	}
	m.buf = m.r.mem[:size]
	if size > m.r.high {
		// Pages past high are not resident: fault them in with one call
		// rather than one trap per page (page faults are very expensive on
		// virtual machines like the ones Frost's CI runs on).
		populate(m.r.mem[m.r.high:size])
		m.r.high = size
	}
	return m.buf
}

// Free implements experimental.LinearMemory: the region goes back to the pool.
func (m *linearMemory) Free() {
	if m.r != nil {
		regions.put(m.r)
		m.r, m.buf = nil, nil
	}
}

// Allocate implements experimental.MemoryAllocator for the instance.
func (in *instance) Allocate(capacity, max uint64) experimental.LinearMemory {
	limit := uint64(in.p.spec.Release.Limits.MemoryBytes)
	if limit == 0 || limit > max {
		limit = max
	}
	in.linear = &linearMemory{r: regions.get(limit), limit: limit}
	return in.linear
}

// region is a reserved range of address space for one linear memory.
type region struct {
	mem  []byte // len == cap == the reserved size
	high uint64 // bytes the guest may have touched (all beyond are zero)
	heap bool   // allocated on the Go heap (no mmap on this platform)
}

// regionPool recycles regions by size.
type regionPool struct {
	mu   sync.Mutex
	free map[uint64][]*region
}

var regions = regionPool{free: map[uint64][]*region{}}

const (
	// maxPooledRegions caps idle regions kept per size.
	maxPooledRegions = 16
	// residentKeep is how much of an idle region stays resident; the rest is
	// returned to the operating system, so a guest that grew to its limit
	// does not pin that memory once it is gone.
	residentKeep = 4 << 20
)

func (p *regionPool) get(size uint64) *region {
	size = (size + pageSize - 1) &^ (pageSize - 1)
	p.mu.Lock()
	if l := p.free[size]; len(l) > 0 {
		r := l[len(l)-1]
		p.free[size] = l[:len(l)-1]
		p.mu.Unlock()
		clearPreemptible(r.mem[:r.high])
		r.high = 0
		return r
	}
	p.mu.Unlock()
	return newRegion(size)
}

// releaseIdle returns every pooled region's pages to the operating system
// (a frozen app's memory must not stay resident in the pool).
func (p *regionPool) releaseIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.free {
		for _, r := range l {
			if !r.heap {
				release(r.mem[:r.high])
				r.high = 0
			}
		}
	}
}

func (p *regionPool) put(r *region) {
	if r.high > residentKeep && !r.heap {
		release(r.mem[residentKeep:r.high])
		r.high = residentKeep
	}
	size := uint64(len(r.mem))
	p.mu.Lock()
	if len(p.free[size]) < maxPooledRegions {
		p.free[size] = append(p.free[size], r)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	unmap(r)
}
