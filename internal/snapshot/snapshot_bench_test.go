package snapshot_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/frostdev/frost/internal/snapshot"
)

// benchImage is a memory image for the packing benchmarks.
type benchImage struct {
	name string
	make func() []byte
}

var benchImages = []benchImage{
	// A mostly empty 1 GiB memory: zeros, with 1% of its 4 KiB blocks,
	// chosen at random, full of random data.
	{"sparse-1GiB-1pct", func() []byte { return sparseImage(1<<30, 0.01) }},
	// A dense 64 MiB memory of random data: the incompressible worst case.
	{"dense-64MiB", func() []byte { return randomBytes(64, 64<<20) }},
	// A dense 1 GiB memory as a busy heap looks: no zero blocks, every
	// 64-byte record an index, a pointer-like value and text.
	{"dense-1GiB-heap", func() []byte { return heapImage(1 << 30) }},
}

// heapImage fills size bytes with 64-byte records: a counter, a
// pointer-like value (an address within 16 MiB, 8-aligned) and 48 bytes of
// words from a small vocabulary, as objects on a heap are.
func heapImage(size int) []byte {
	words := []string{"frost ", "thaw ", "node ", "app ", "user-", "id=", "null ", "true ", "0x7f", "GET /", "200 ", "key:"}
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(3, 4))
	for off := 0; off+64 <= size; off += 64 {
		rec := b[off : off+64]
		n := uint64(off / 64)
		for i := range 8 {
			rec[i] = byte(n >> (8 * i))
		}
		p := uint64(0x7f0000000000) + uint64(r.IntN(1<<21))*8
		for i := range 8 {
			rec[8+i] = byte(p >> (8 * i))
		}
		t := rec[16:]
		for len(t) > 0 {
			t = t[copy(t, words[r.IntN(len(words))]):]
		}
	}
	return b
}

func sparseImage(size int, fill float64) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	blocks := size / 4096
	for range int(float64(blocks) * fill) {
		off := r.IntN(blocks) * 4096
		copy(b[off:off+4096], randomBytes(r.Uint64(), 4096))
	}
	return b
}

// image returns the named image, made once per process: a 1 GiB image takes
// a while to fill.
var image = sync.OnceValue(func() map[string][]byte {
	m := map[string][]byte{}
	for _, im := range benchImages {
		m[im.name] = im.make()
	}
	return m
})

// BenchmarkPack measures Pack (hashing, finding the data extents,
// compressing) of each image to io.Discard, in MB/s of image, and the
// packed size as "x-smaller". The baseline "zstd-whole" is zstd at the same
// level over the whole image, without skipping zero blocks or hashing.
func BenchmarkPack(b *testing.B) {
	m := manifestFor("app", releaseID("bench"))
	for _, im := range benchImages {
		b.Run(im.name, func(b *testing.B) {
			data := image()[im.name]
			parts := []snapshot.Part{{Name: "memory", Data: data}}
			n := packedLen(b, m, parts)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for b.Loop() {
				if err := snapshot.Pack(io.Discard, m, parts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(data))/float64(n), "x-smaller")
		})
		b.Run(im.name+"/zstd-whole", func(b *testing.B) {
			data := image()[im.name]
			var cw countWriter
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for b.Loop() {
				cw = 0
				zw, err := zstd.NewWriter(&cw, zstd.WithEncoderLevel(zstd.SpeedDefault))
				if err != nil {
					b.Fatal(err)
				}
				zw.Write(data)
				zw.Close()
			}
			b.ReportMetric(float64(len(data))/float64(cw), "x-smaller")
		})
	}
}

// BenchmarkUnpack measures Unpack (decompressing, placing the extents,
// verifying the SHA-256) of each packed image, in MB/s of image.
func BenchmarkUnpack(b *testing.B) {
	m := manifestFor("app", releaseID("bench"))
	for _, im := range benchImages {
		b.Run(im.name, func(b *testing.B) {
			data := image()[im.name]
			var buf bytes.Buffer
			if err := snapshot.Pack(&buf, m, []snapshot.Part{{Name: "memory", Data: data}}); err != nil {
				b.Fatal(err)
			}
			p := buf.Bytes()
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for b.Loop() {
				if _, _, err := snapshot.Unpack(bytes.NewReader(p), int64(len(data))); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(data))/float64(len(p)), "x-smaller")
		})
	}
}

func packedLen(b *testing.B, m snapshot.Manifest, parts []snapshot.Part) int64 {
	var cw countWriter
	if err := snapshot.Pack(&cw, m, parts); err != nil {
		b.Fatal(err)
	}
	return int64(cw)
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

// BenchmarkGet measures Get on the thaw path: a wasm snapshot of a memory,
// small globals and a small file system, read from the page cache and
// verified. The baseline "readfile+sha256" is the least any verified read
// costs: os.ReadFile and sha256.Sum256 of the memory part alone.
func BenchmarkGet(b *testing.B) {
	for _, c := range []struct {
		name string
		size int
	}{{"memory-64KiB", 64 << 10}, {"memory-2.5MiB", 5 << 19}} {
		dir := b.TempDir()
		s := open(b, dir, snapshot.Options{})
		mem := make([]byte, c.size)
		copy(mem, randomBytes(1, c.size/4)) // a heap's worth of data, the rest zero
		parts := []snapshot.Part{
			{Name: "memory", Data: mem},
			{Name: "globals", Data: randomBytes(2, 64)},
			{Name: "fs", Data: randomBytes(3, 2048)},
		}
		m := put(b, s, manifestFor("app", releaseID("bench")), parts)
		want := wantFor(m)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(m.Size())
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.Get(context.Background(), want); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/readfile+sha256", func(b *testing.B) {
			var path string
			for _, p := range m.Parts {
				if p.Name == "memory" {
					path = filepath.Join(dir, m.Release, p.Digest)
				}
			}
			b.SetBytes(int64(c.size))
			b.ReportAllocs()
			for b.Loop() {
				data, err := os.ReadFile(path)
				if err != nil {
					b.Fatal(err)
				}
				sha256.Sum256(data)
			}
		})
	}
}

// benchMemory is a 64 MiB memory image with 16 MiB of data in random 4
// KiB blocks, made once per process.
var benchMemory = sync.OnceValue(func() []byte {
	return sparseImage(64<<20, 0.29) // blocks are drawn with repeats: about 16 MiB of data
})

// writeBenchMemory writes benchMemory to a file, densely (its zeros
// written out, as a checkpoint's would be), and returns its path.
func writeBenchMemory(b *testing.B) string {
	path := filepath.Join(b.TempDir(), "pages.img")
	if err := os.WriteFile(path, benchMemory(), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkGetFiles measures GetFiles on the gVisor restore path: a 64
// MiB memory image with 16 MiB of data, in random 4 KiB blocks, verified
// and written sparsely into an empty directory, in MB/s of image. "Get"
// is the same snapshot through Get, into memory; the baseline
// "read+sha256" is the least any verified read costs: the stored part
// read through a 1 MiB buffer and hashed, nothing written.
func BenchmarkGetFiles(b *testing.B) {
	path, data := writeBenchMemory(b), benchMemory()
	dir := b.TempDir()
	s := open(b, dir, snapshot.Options{})
	m, err := s.PutFiles(context.Background(), manifestFor("app", releaseID("bench")), map[string]string{"pages.img": path})
	if err != nil {
		b.Fatal(err)
	}
	want := wantFor(m)
	b.Logf("image: %d bytes, %d in non-zero 4 KiB blocks", len(data), nonZeroBytes(data))

	b.Run("GetFiles", func(b *testing.B) {
		outs := b.TempDir()
		b.SetBytes(m.Size())
		b.ReportAllocs()
		for b.Loop() {
			out, err := os.MkdirTemp(outs, "image")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.GetFiles(context.Background(), want, out); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.RemoveAll(out)
			b.StartTimer()
		}
	})
	b.Run("Get", func(b *testing.B) {
		b.SetBytes(m.Size())
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := s.Get(context.Background(), want); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read+sha256", func(b *testing.B) {
		part := filepath.Join(dir, m.Release, m.Parts[0].Digest)
		buf := make([]byte, 1<<20)
		b.SetBytes(m.Size())
		b.ReportAllocs()
		for b.Loop() {
			f, err := os.Open(part)
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			for {
				n, err := f.Read(buf)
				h.Write(buf[:n])
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			f.Close()
			h.Sum(nil)
		}
	})
}

// BenchmarkPutFiles measures PutFiles on the gVisor checkpoint path: the
// image of BenchmarkGetFiles, a dense file, hashed and written sparsely
// into the store and fsynced, in MB/s of image. Each iteration deletes
// the snapshot first (untimed), so every part is written afresh.
func BenchmarkPutFiles(b *testing.B) {
	path := writeBenchMemory(b)
	s := open(b, b.TempDir(), snapshot.Options{})
	m := manifestFor("app", releaseID("bench"))
	files := map[string]string{"pages.img": path}
	b.SetBytes(64 << 20)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if err := s.Delete(m.Release); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := s.PutFiles(context.Background(), m, files); err != nil {
			b.Fatal(err)
		}
	}
}

// nonZeroBytes returns the bytes of b in 4 KiB blocks that are not all
// zero.
func nonZeroBytes(b []byte) int {
	var zero [4096]byte
	n := 0
	for off := 0; off < len(b); off += len(zero) {
		block := b[off:min(off+len(zero), len(b))]
		if !bytes.Equal(block, zero[:len(block)]) {
			n += len(block)
		}
	}
	return n
}
