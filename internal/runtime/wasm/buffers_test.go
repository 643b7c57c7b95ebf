package wasm

import (
	"bytes"
	"testing"
	"time"
)

// TestBufferPool: buffers come back by size class, only up to the cap, are
// dropped once idle, and appendPreemptible recycles what it grows out of.
func TestBufferPool(t *testing.T) {
	now := time.Unix(0, 0)
	p := &bufferPool{limit: maxPooledBytes, idle: bufferIdleTrim, now: func() time.Time { return now }}

	b := p.get(3 << 20)
	if len(b) != 0 || cap(b) != 4<<20 {
		t.Fatalf("get(3 MiB): len %d cap %d, want 0 and 4 MiB", len(b), cap(b))
	}
	if small := p.get(1000); cap(small) != 1000 {
		t.Errorf("get(1000): cap %d: small buffers are not rounded", cap(small))
	}
	b = append(b, "data"...)
	p.put(b)
	if p.pooled() != 4<<20 {
		t.Fatalf("pooled %d after one put, want 4 MiB", p.pooled())
	}
	p.put(make([]byte, 0, 3<<20)) // not a power of two: not the pool's
	if p.pooled() != 4<<20 {
		t.Errorf("a foreign buffer was pooled: %d", p.pooled())
	}
	if again := p.get(4 << 20); cap(again) != 4<<20 || len(again) != 0 || &again[:1][0] != &b[0] {
		t.Errorf("get(4 MiB) after put: cap %d len %d, not the pooled buffer", cap(again), len(again))
	}
	if p.pooled() != 0 {
		t.Errorf("pooled %d after taking it back", p.pooled())
	}

	// The cap.
	for range maxPooledBytes/(32<<20) + 2 {
		p.put(make([]byte, 0, 32<<20))
	}
	if p.pooled() != maxPooledBytes {
		t.Errorf("pooled %d, want the cap %d", p.pooled(), maxPooledBytes)
	}

	// Idle buffers go; recent ones stay.
	now = now.Add(bufferIdleTrim / 2)
	p.trim() // none idle long enough yet
	if p.pooled() != maxPooledBytes {
		t.Errorf("an early trim dropped buffers: pooled %d", p.pooled())
	}
	p.release()
	p.put(make([]byte, 0, 2<<20))
	now = now.Add(bufferIdleTrim / 2)
	p.put(make([]byte, 0, 1<<20))
	now = now.Add(bufferIdleTrim/2 + time.Second)
	p.trim()
	if p.pooled() != 1<<20 { // the 2 MiB one is gone
		t.Errorf("after trim: pooled %d, want the 1 MiB put since", p.pooled())
	}
	p.release()
	if p.pooled() != 0 {
		t.Errorf("after release: pooled %d", p.pooled())
	}
}

// TestAppendPreemptibleRecycles: growing a response from nothing to 8 MiB
// leaves every outgrown pooled buffer in the pool, and the bytes are right.
func TestAppendPreemptibleRecycles(t *testing.T) {
	bigBuffers.release()
	t.Cleanup(bigBuffers.release)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	var body []byte
	for range 512 {
		body = appendPreemptible(body, chunk)
	}
	if len(body) != 8<<20 || !bytes.Equal(body[len(body)-len(chunk):], chunk) || !bytes.Equal(body[:len(chunk)], chunk) {
		t.Fatalf("body: %d bytes, wrong content", len(body))
	}
	// Outgrown: 64 KiB … 4 MiB.
	if got, want := bigBuffers.pooled(), int64(8<<20-64<<10); got != want {
		t.Errorf("pooled %d after growing to 8 MiB, want %d", got, want)
	}
}
