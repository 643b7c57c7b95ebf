package wasm

import (
	"sync"
	"time"

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
	in     *instance
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
	if size > m.r.resident {
		// Pages past resident are not: fault them in with one call rather
		// than one trap per page (page faults are very expensive on virtual
		// machines like the ones Frost's CI runs on).
		populate(m.r.mem[m.r.resident:size])
		m.r.resident = size
	}
	if size > m.r.high {
		// Growing is the host's work: a guest growing in a loop is asked
		// to yield like one calling the host in a loop.
		m.in.hostWork(copyWork(int(size - m.r.high)))
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
	in.linear = &linearMemory{in: in, r: regions.get(limit), limit: limit}
	return in.linear
}

// region is a reserved range of address space for one linear memory.
type region struct {
	mem      []byte // len == cap == the reserved size
	high     uint64 // bytes the guest may have touched (all beyond are zero)
	resident uint64 // bytes known to be resident (at least high)
	heap     bool   // allocated on the Go heap (no mmap on this platform)
}

// regionPool recycles regions by size.
//
// An idle region keeps residentKeep bytes resident, and more while the
// pool's total beyond that stays within residentBudget: a guest that grows
// to tens of MiB on every request (a memory bomb, or an honest app with a
// big working set) then reuses resident pages, which cost a clear, instead
// of faulting every page in again (0.2 s of kernel time for 64 MiB on the
// machines Frost's CI runs on, during which other requests wait for a
// core). The extra pages go back to the operating system once the pool has
// been idle for regionIdleTrim. When an app freezes, the pool is scrubbed:
// every pooled byte a guest touched is zeroed and at most frozenKeep stays
// resident, in total, for the next wake (see scrub).
type regionPool struct {
	mu      sync.Mutex
	free    map[uint64][]*region
	extra   uint64      // resident bytes beyond residentKeep in pooled regions
	used    time.Time   // last get or put
	trimmer *time.Timer // pending trim, nil when none
}

var regions = regionPool{free: map[uint64][]*region{}}

const (
	// maxPooledRegions caps idle regions kept per size.
	maxPooledRegions = 16
	// residentKeep is how much of an idle region always stays resident.
	residentKeep = 4 << 20
	// residentBudget caps the resident bytes beyond residentKeep that the
	// pool's regions keep between uses: two guests at a 64 MiB limit.
	residentBudget = 128 << 20
	// regionIdleTrim is how long the pool keeps that extra memory unused.
	regionIdleTrim = 10 * time.Second
	// frozenKeep is what the whole pool keeps resident after a freeze:
	// zeroed pages for the next instance, whichever app it is for. Two Go
	// guests' worth: a thaw then restores into pages that are already
	// there instead of faulting its memory in (a 384 KiB guest's thaw
	// took ~0.7 ms longer over HTTP when the pool was emptied at every
	// freeze, see BENCHMARKS.md).
	frozenKeep = 8 << 20
)

func (p *regionPool) get(size uint64) *region {
	size = (size + pageSize - 1) &^ (pageSize - 1)
	p.mu.Lock()
	if l := p.free[size]; len(l) > 0 {
		r := l[len(l)-1]
		p.free[size] = l[:len(l)-1]
		p.extra -= extraResident(r)
		p.used = time.Now()
		p.mu.Unlock()
		clearPreemptible(r.mem[:r.high])
		r.high = 0
		return r
	}
	p.mu.Unlock()
	return newRegion(size)
}

// extraResident is what r keeps resident beyond residentKeep.
func extraResident(r *region) uint64 {
	if r.heap || r.resident <= residentKeep {
		return 0
	}
	return r.resident - residentKeep
}

// shrink returns the pages of r past keep to the operating system.
func shrink(r *region, keep uint64) {
	if !r.heap && r.resident > keep {
		release(r.mem[keep:r.resident])
		r.resident = keep
		r.high = min(r.high, keep)
	}
}

// scrub runs when an app freezes. A frozen app holds no memory, and none of
// what its guests wrote may stay resident: every pooled byte a guest
// touched is zeroed, and pages beyond frozenKeep in total go back to the
// operating system. What is kept is the node's, not the app's: cleared
// pages that spare the next instance's page faults.
func (p *regionPool) scrub() {
	p.mu.Lock()
	defer p.mu.Unlock()
	budget := uint64(frozenKeep)
	p.extra = 0
	for _, l := range p.free {
		for _, r := range l {
			shrink(r, min(r.resident, budget)&^(pageSize-1))
			clear(r.mem[:r.high])
			r.high = 0
			if !r.heap {
				budget -= r.resident
			}
			p.extra += extraResident(r)
		}
	}
}

// shrinkAll shrinks every pooled region to keep bytes. p.mu is held.
func (p *regionPool) shrinkAll(keep uint64) {
	for _, l := range p.free {
		for _, r := range l {
			shrink(r, keep)
		}
	}
	p.extra = 0
}

// trim drops the pool's extra resident memory once it has been idle for
// regionIdleTrim.
func (p *regionPool) trim() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.trimmer = nil
	if p.extra == 0 {
		return
	}
	if wait := regionIdleTrim - time.Since(p.used); wait > 0 {
		p.trimmer = time.AfterFunc(wait, p.trim)
		return
	}
	p.shrinkAll(residentKeep)
}

func (p *regionPool) put(r *region) {
	size := uint64(len(r.mem))
	p.mu.Lock()
	if len(p.free[size]) >= maxPooledRegions {
		p.mu.Unlock()
		unmap(r)
		return
	}
	if p.extra+extraResident(r) > residentBudget {
		// Over budget: shrink it, outside the lock (returning tens of MiB
		// to the operating system takes milliseconds).
		p.mu.Unlock()
		shrink(r, residentKeep)
		p.mu.Lock()
	}
	p.extra += extraResident(r)
	p.used = time.Now()
	if p.extra > 0 && p.trimmer == nil {
		p.trimmer = time.AfterFunc(regionIdleTrim, p.trim)
	}
	p.free[size] = append(p.free[size], r)
	p.mu.Unlock()
}
