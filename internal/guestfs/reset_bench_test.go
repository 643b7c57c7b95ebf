package guestfs

import (
	"fmt"
	"testing"

	xsys "github.com/tetratelabs/wazero/experimental/sys"
)

// benchImage returns an FS holding an image of files under /app (1 KiB each)
// and an empty /tmp, reset to that image.
func benchImage(b *testing.B, files int) (*FS, *Image) {
	f := New(Options{CapBytes: 1 << 30, MaxInodes: files + 100})
	if errno := f.Mkdir("app", 0o755); errno != 0 {
		b.Fatal(errno)
	}
	f.Mkdir("tmp", 0o755)
	data := make([]byte, 1024)
	for i := range files {
		if err := f.WriteFile(fmt.Sprintf("app/%d", i), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	img := f.Snapshot()
	f.Reset(img)
	return f, img
}

var sizes = []int{10, 10_000}

// BenchmarkResetClean is the common case: a request that wrote nothing.
func BenchmarkResetClean(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("files=%d", n), func(b *testing.B) {
			f, img := benchImage(b, n)
			b.ReportAllocs()
			for b.Loop() {
				f.Reset(img)
			}
		})
	}
}

// BenchmarkResetDirty writes one small file (the host helper: open, write,
// sync, close) and resets. BenchmarkWriteSmallFile is the same write alone,
// the baseline to subtract. Neither should grow with the image.
func BenchmarkResetDirty(b *testing.B) {
	payload := make([]byte, 100)
	for _, n := range sizes {
		b.Run(fmt.Sprintf("new/files=%d", n), func(b *testing.B) {
			f, img := benchImage(b, n)
			b.ReportAllocs()
			for b.Loop() {
				f.WriteFile("tmp/req", payload, 0o644)
				f.Reset(img)
			}
		})
		b.Run(fmt.Sprintf("overwrite/files=%d", n), func(b *testing.B) {
			f, img := benchImage(b, n)
			b.ReportAllocs()
			for b.Loop() {
				h, _ := f.OpenFile("app/0", xsys.O_RDWR, 0)
				h.Pwrite(payload, 0)
				h.Close()
				f.Reset(img)
			}
		})
	}
}

func BenchmarkWriteSmallFile(b *testing.B) {
	payload := make([]byte, 100)
	f, _ := benchImage(b, 10)
	b.ReportAllocs()
	for b.Loop() {
		f.WriteFile("tmp/req", payload, 0o644)
	}
}

// BenchmarkSnapshot folds one changed file into a new image.
func BenchmarkSnapshot(b *testing.B) {
	payload := make([]byte, 100)
	for _, n := range sizes {
		b.Run(fmt.Sprintf("files=%d", n), func(b *testing.B) {
			f, _ := benchImage(b, n)
			b.ReportAllocs()
			for b.Loop() {
				f.WriteFile("tmp/req", payload, 0o644)
				f.Snapshot()
			}
		})
	}
}

// BenchmarkLargeFileCopyOnWrite writes 100 bytes into a 64 MiB file from the
// image and resets: the cost is one chunk, not the file.
func BenchmarkLargeFileCopyOnWrite(b *testing.B) {
	f := New(Options{CapBytes: 1 << 30})
	if err := f.WriteFile("db", make([]byte, 64<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	img := f.Snapshot()
	payload := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		h, _ := f.OpenFile("db", xsys.O_RDWR, 0)
		h.Pwrite(payload, 32<<20)
		h.Close()
		f.Reset(img)
	}
}
