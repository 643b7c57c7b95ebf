package guestfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	xsys "github.com/tetratelabs/wazero/experimental/sys"
)

// encoder builds image bytes by hand, to test the decoder on input
// MarshalBinary would never write.
type encoder struct{ b []byte }

func newEncoder(count uint64) *encoder {
	e := &encoder{b: []byte(imageMagic + "\x01")}
	return e.u(count)
}

func (e *encoder) u(v uint64) *encoder { e.b = binary.AppendUvarint(e.b, v); return e }

func (e *encoder) raw(s string) *encoder { e.b = append(e.b, s...); return e }

// meta appends kind, perm and three zero times.
func (e *encoder) meta(kind byte, perm uint64) *encoder {
	e.b = append(e.b, kind)
	return e.u(perm).u(0).u(0).u(0)
}

func (e *encoder) root() *encoder { return e.meta(kindDir, 0o755) }

func (e *encoder) dir(parent uint64, name string) *encoder {
	return e.u(parent).u(uint64(len(name))).raw(name).meta(kindDir, 0o755)
}

func (e *encoder) file(parent uint64, name, data string) *encoder {
	return e.u(parent).u(uint64(len(name))).raw(name).meta(kindFile, 0o644).u(uint64(len(data))).raw(data)
}

func TestImageRoundTrip(t *testing.T) {
	f := newTestFS(t)
	populate(t, f, "b/", "b/z=zz", "b/a/", "b/a/x=", "a=1", "a.b=2", strings.Repeat("n", 255)+"=long")
	big := bytes.Repeat([]byte("0123456789abcdef"), chunkSize/8+3) // three chunks
	if err := f.WriteFile("b/big", big, 0o600); err != nil {
		t.Fatal(err)
	}
	h := open(t, f, "sparse", xsys.O_RDWR|xsys.O_CREAT)
	h.Truncate(3 * chunkSize)
	h.Pwrite([]byte("end"), 3*chunkSize-3)
	h.Close()
	f.Utimens("a", -1e18, 1e18)
	img := f.Snapshot()
	want := statDump(t, f)

	enc, err := img.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := UnmarshalImage(enc)
	if err != nil {
		t.Fatal(err)
	}
	if dec.Size() != img.Size() || dec.Inodes() != img.Inodes() {
		t.Errorf("decoded size %d inodes %d, want %d %d", dec.Size(), dec.Inodes(), img.Size(), img.Inodes())
	}
	again, _ := dec.MarshalBinary()
	if !bytes.Equal(enc, again) {
		t.Error("encoding is not stable across a round trip")
	}
	g := newTestFS(t)
	g.Reset(dec)
	// Inode numbers may differ after decoding; everything else must not.
	strip := func(s string) string {
		var out []string
		for line := range strings.Lines(s) {
			i := strings.Index(line, " ino=")
			j := strings.Index(line, " mode=")
			out = append(out, line[:i]+line[j:])
		}
		return strings.Join(out, "")
	}
	if got := statDump(t, g); strip(got) != strip(want) {
		t.Errorf("decoded tree:\n%s\nwant:\n%s", got, want)
	}
	// The decoder copied the bytes it kept.
	clear(enc)
	if b, _ := g.ReadFile("b/big"); !bytes.Equal(b, big) {
		t.Error("decoded image aliases its input")
	}

}

func TestImageDeterministic(t *testing.T) {
	// With a stopped clock, the same tree built in a different order, with
	// detours, encodes to the same bytes, every time.
	stopped := func() time.Time { return time.Unix(1700000000, 0) }
	build := func(specs ...string) []byte {
		f := New(Options{CapBytes: 1 << 20, Clock: stopped})
		populate(t, f, specs...)
		f.Unlink("tmp")
		b, _ := f.Snapshot().MarshalBinary()
		return b
	}
	names := make([]string, 0, 50)
	for i := range 50 {
		names = append(names, fmt.Sprintf("d/%02d=%d", i, i))
	}
	a := build(append([]string{"d/", "tmp=", "x=1"}, names...)...)
	slices.Reverse(names)
	b := build(append([]string{"x=1", "d/", "tmp=junk"}, names...)...)
	if !bytes.Equal(a, b) {
		t.Error("equal trees encode differently")
	}
	img, _ := UnmarshalImage(a)
	for range 5 {
		if again, _ := img.MarshalBinary(); !bytes.Equal(again, a) {
			t.Fatal("encoding the same image twice differs")
		}
	}
}

func TestUnmarshalImageHandBuilt(t *testing.T) {
	valid := newEncoder(5).root().dir(0, "d").file(1, "a", "x").file(1, "b", "").file(0, "e", "yy").b
	img, err := UnmarshalImage(valid)
	if err != nil {
		t.Fatal(err)
	}
	f := newTestFS(t)
	f.Reset(img)
	if got := dump(t, f); got != "d/ d/a=x d/b= e=yy" {
		t.Errorf("tree %q", got)
	}

	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"bad magic", append([]byte("FGFX"), valid[4:]...)},
		{"bad version", append([]byte("FGFS\x02"), valid[5:]...)},
		{"no entries", newEncoder(0).b},
		{"count beyond input", newEncoder(1000).root().b},
		{"huge count", newEncoder(1 << 62).root().b},
		{"long varint", append([]byte("FGFS\x01\x81\x00"), newEncoder(1).root().b[6:]...)},
		{"varint overflow", []byte("FGFS\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")},
		{"trailing byte", append(append([]byte{}, valid...), 0)},
		{"root is a file", newEncoder(1).meta(kindFile, 0).u(0).b},
		{"unknown kind", newEncoder(1).meta(7, 0).b},
		{"bad perm", newEncoder(1).meta(kindDir, 0o1000).b},
		{"empty name", newEncoder(2).root().file(0, "", "").b},
		{"dot name", newEncoder(2).root().dir(0, ".").b},
		{"dotdot name", newEncoder(2).root().dir(0, "..").b},
		{"slash in name", newEncoder(2).root().file(0, "a/b", "").b},
		{"NUL in name", newEncoder(2).root().file(0, "a\x00", "").b},
		{"long name", newEncoder(2).root().file(0, strings.Repeat("n", 256), "").b},
		{"name past end", newEncoder(2).root().u(0).u(50).raw("abc").b},
		{"parent is a file", newEncoder(3).root().file(0, "a", "").file(1, "b", "").b},
		{"parent not yet seen", newEncoder(2).root().file(1, "a", "").b},
		{"parent closed", newEncoder(4).root().dir(0, "a").dir(0, "b").file(1, "c", "").b},
		{"duplicate name", newEncoder(3).root().file(0, "a", "").file(0, "a", "").b},
		{"names out of order", newEncoder(3).root().file(0, "b", "").file(0, "a", "").b},
		{"dir and file same name", newEncoder(3).root().dir(0, "a").file(0, "a", "").b},
		{"data past end", newEncoder(2).root().u(0).u(1).raw("a").meta(kindFile, 0).u(100).raw("short").b},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := UnmarshalImage(tc.b)
			if !errors.Is(err, ErrCorruptImage) || img != nil {
				t.Errorf("got %v, %v; want ErrCorruptImage", img, err)
			}
		})
	}

	// Every proper prefix of a valid image is corrupt.
	for i := range valid {
		if _, err := UnmarshalImage(valid[:i]); !errors.Is(err, ErrCorruptImage) {
			t.Errorf("prefix of %d bytes: %v", i, err)
		}
	}
}

func TestUnmarshalImageBoundsAllocation(t *testing.T) {
	// Claims of huge sizes and counts are refused before allocating.
	for _, b := range [][]byte{
		newEncoder(1 << 40).root().b,
		newEncoder(2).root().u(0).u(1).raw("a").meta(kindFile, 0).u(1 << 50).b,
		newEncoder(2).root().u(0).u(1 << 50).b,
	} {
		allocs := testing.AllocsPerRun(10, func() { UnmarshalImage(b) })
		if allocs > 20 {
			t.Errorf("%d allocations for a %d-byte hostile input", int(allocs), len(b))
		}
	}
}

// seedImages returns encodings of a few trees for the fuzzer.
func seedImages(t testing.TB) [][]byte {
	var out [][]byte
	f := New(Options{CapBytes: 1 << 20, Clock: newFakeClock().Now})
	add := func() {
		b, err := f.Snapshot().MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	add()
	populate(t, f, "a=hello", "d/", "d/e/", "d/e/f=x", "d/g=")
	add()
	f.Chmod("a", 0o777)
	f.Utimens("d", -1, 1<<62)
	f.WriteFile("d/e/f", bytes.Repeat([]byte{0xfe}, 300), 0)
	add()
	return out
}

func FuzzUnmarshalImage(f *testing.F) {
	for _, b := range seedImages(f) {
		f.Add(b)
	}
	f.Add(newEncoder(3).root().dir(0, "a").file(1, "b", "c").b)
	f.Add([]byte("FGFS\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := UnmarshalImage(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptImage) || img != nil {
				t.Fatalf("error %v does not wrap ErrCorruptImage", err)
			}
			return
		}
		// Exactly one encoding per image.
		out, err := img.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs (%v):\n in %x\nout %x", err, b, out)
		}
		// The image loads into an FS whose bookkeeping agrees with it.
		fsys := New(Options{CapBytes: 1 << 30, MaxInodes: 1 << 20})
		fsys.Reset(img)
		checkInvariants(t, fsys)
		if fsys.Used() != img.Size() {
			t.Fatalf("Used %d, image size %d", fsys.Used(), img.Size())
		}
		// And survives a change and a Snapshot.
		fsys.WriteFile("/fuzz-probe", []byte("x"), 0o644)
		snap, _ := fsys.Snapshot().MarshalBinary()
		if _, err := UnmarshalImage(snap); err != nil {
			t.Fatalf("snapshot of a decoded image does not decode: %v", err)
		}
	})
}
