package wasm

import (
	"testing"
	"time"
)

// TestRegionPoolKeepsResidentWithinBudget: a region that grew stays
// resident in the pool while the pool's extra stays within residentBudget,
// is shrunk to residentKeep past it, and everything beyond residentKeep goes
// once the pool is idle.
func TestRegionPoolKeepsResidentWithinBudget(t *testing.T) {
	p := &regionPool{free: map[uint64][]*region{}}
	const size = 256 << 20
	grown := func() *region {
		r := p.get(size)
		if r == nil {
			t.Skip("no address space for a region")
		}
		r.high, r.resident = 64<<20, 64<<20
		return r
	}
	a, b, c := grown(), grown(), grown()
	p.put(a)
	p.put(b)
	if p.extra != 2*(64<<20-residentKeep) || a.resident != 64<<20 || b.resident != 64<<20 {
		t.Fatalf("two 64 MiB regions within budget: extra %d, resident %d and %d", p.extra, a.resident, b.resident)
	}
	p.put(c) // past the budget
	if c.resident != residentKeep || p.extra != 2*(64<<20-residentKeep) {
		t.Errorf("over budget: resident %d (want %d), extra %d", c.resident, residentKeep, p.extra)
	}
	// Taking one back takes its extra off the pool's count; it is cleared.
	if got := p.get(size); got != c || p.extra != 2*(64<<20-residentKeep) {
		t.Errorf("get: not the last region put, or extra %d changed", p.extra)
	}
	if got := p.get(size); got != b || got.high != 0 || got.resident != 64<<20 || p.extra != 64<<20-residentKeep {
		t.Errorf("get: high %d, resident %d, extra %d", got.high, got.resident, p.extra)
	}
	p.put(c)
	p.put(b)
	p.used = time.Now().Add(-regionIdleTrim)
	p.trim()
	for _, r := range []*region{a, b, c} {
		if r.resident > residentKeep {
			t.Errorf("after an idle trim a region keeps %d resident", r.resident)
		}
	}
	if p.extra != 0 {
		t.Errorf("after trim: extra %d", p.extra)
	}
}

// TestScrubZeroesAndKeepsLittle: after a freeze the pool keeps at most
// frozenKeep resident in total, every byte a guest wrote is zero, and what
// it keeps is kept (the next wake's instance finds its pages there).
func TestScrubZeroesAndKeepsLittle(t *testing.T) {
	p := &regionPool{free: map[uint64][]*region{}}
	const size, used = 8 << 20, 5 << 20
	var rs []*region
	for range 3 {
		r := p.get(size)
		if r == nil {
			t.Skip("no address space for a region")
		}
		for i := range used {
			r.mem[i] = 0xa5
		}
		r.high, r.resident = used, used
		rs = append(rs, r)
	}
	for _, r := range rs {
		p.put(r)
	}
	p.scrub()
	var kept, extra uint64
	for _, r := range rs {
		kept += r.resident
		extra += extraResident(r)
		if r.high != 0 {
			t.Errorf("high %d after scrub", r.high)
		}
		for i, b := range r.mem[:used] {
			if b != 0 {
				t.Fatalf("byte %d of a scrubbed region is %#x", i, b)
			}
		}
	}
	if kept == 0 || kept > frozenKeep {
		t.Errorf("the pool keeps %d bytes resident after a freeze; want some, at most %d", kept, frozenKeep)
	}
	if p.extra != extra {
		t.Errorf("extra %d after scrub, the regions keep %d", p.extra, extra)
	}
}
