package wasm

import (
	"math/bits"
	"slices"
	"sync"
	"time"
)

// Buffers for guest-sized data.
//
// A guest that writes a response of many MiB, once per request, makes the
// host allocate buffers of 1, 2, 4 … 32 MiB for every request. Fresh large
// allocations are the most expensive thing a Go program does on a virtual
// machine: the runtime takes them from the operating system (and hands
// them back when the heap shrinks), every page faults in on first touch
// (about 12 µs each on the machines Frost's CI runs on, so 0.2 s for
// 64 MiB), and the runtime grows its heap on the system stack, where no
// goroutine can be preempted, so every garbage collection's stop-the-world
// waits for it. A flood of such responses made a well-behaved neighbour's
// p99 160× slower. bigBuffers keeps those buffers, already resident, for
// the next response, up to maxPooledBytes; buffers unused for
// bufferIdleTrim are dropped, so a burst does not pin memory for good.
//
// imageBuffers keeps, the same way, the buffers a thaw reads a snapshot's
// memory into (Runtime.PartBuffer): a program's base state lives in one
// while it is awake, and it comes back, zeroed, when the last instance
// made from it is gone after a freeze (snapshot.drop). Up to frozenKeep of
// them stay for good: that much memory spares the next thaw, of whichever
// app, the page faults of a fresh buffer.

const (
	// minPooledBuffer is the smallest buffer worth pooling: below it the
	// runtime's own size classes recycle memory well.
	minPooledBuffer = 64 << 10
	// maxPooledBytes caps the bytes of idle pooled buffers: enough for two
	// responses at the default 32 MiB limit growing at once (each leaves
	// 64 MiB of buffers behind). With half of it, a well-behaved app beside
	// two clients flooding 32 MiB responses had a p99 2.7× worse.
	maxPooledBytes = 128 << 20
	// bufferIdleTrim is how long an idle pooled buffer is kept.
	bufferIdleTrim = 10 * time.Second
)

// bufferPool recycles large byte buffers by power-of-two capacity.
type bufferPool struct {
	limit int64         // the capacity the pool keeps at most
	idle  time.Duration // how long an unused buffer is kept; 0: for good

	mu      sync.Mutex
	free    [64][]pooledBuffer // by log2(cap)
	bytes   int64              // capacity of the buffers in free
	trimmer *time.Timer        // pending trim, nil when none
	now     func() time.Time
}

type pooledBuffer struct {
	b    []byte
	idle time.Time
}

var (
	bigBuffers   = bufferPool{limit: maxPooledBytes, idle: bufferIdleTrim, now: time.Now}
	imageBuffers = bufferPool{limit: frozenKeep, now: time.Now}
)

// get returns an empty buffer of capacity at least n: a pooled one if
// there is one, otherwise a new one whose capacity is a power of two.
func (p *bufferPool) get(n int) []byte {
	if n < minPooledBuffer {
		return make([]byte, 0, n)
	}
	class := bits.Len(uint(n - 1))
	p.mu.Lock()
	for c := class; c < len(p.free) && c <= class+1; c++ {
		if l := p.free[c]; len(l) > 0 {
			b := l[len(l)-1].b
			l[len(l)-1] = pooledBuffer{}
			p.free[c] = l[:len(l)-1]
			p.bytes -= int64(cap(b))
			p.mu.Unlock()
			return b[:0]
		}
	}
	p.mu.Unlock()
	return make([]byte, 0, 1<<class)
}

// put gives b back for reuse. b must not be used after; buffers the pool
// did not make are ignored.
func (p *bufferPool) put(b []byte) {
	c := cap(b)
	if c < minPooledBuffer || c&(c-1) != 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bytes+int64(c) > p.limit {
		return
	}
	class := bits.Len(uint(c - 1))
	p.free[class] = append(p.free[class], pooledBuffer{b: b[:0], idle: p.now()})
	p.bytes += int64(c)
	if p.trimmer == nil && p.idle > 0 {
		p.trimmer = time.AfterFunc(p.idle, p.trim)
	}
}

// trim drops the buffers idle for p.idle, and comes back later while any
// remain.
func (p *bufferPool) trim() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cutoff := p.now().Add(-p.idle)
	for c, l := range p.free {
		p.free[c] = slices.DeleteFunc(l, func(pb pooledBuffer) bool {
			if pb.idle.After(cutoff) {
				return false
			}
			p.bytes -= int64(cap(pb.b))
			return true
		})
	}
	p.trimmer = nil
	if p.bytes > 0 {
		p.trimmer = time.AfterFunc(p.idle, p.trim)
	}
}

// release drops every pooled buffer (a node freezing its apps returns
// their memory).
func (p *bufferPool) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.free[:])
	p.bytes = 0
}

// pooled reports the capacity of the idle pooled buffers.
func (p *bufferPool) pooled() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes
}
