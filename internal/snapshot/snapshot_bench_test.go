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
