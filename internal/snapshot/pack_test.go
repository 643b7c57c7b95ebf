package snapshot_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/frostdev/frost/internal/snapshot"
)

// packed returns the packed form of m and parts.
func packed(t testing.TB, m snapshot.Manifest, parts []snapshot.Part) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := snapshot.Pack(&buf, m, parts); err != nil {
		t.Fatalf("Pack: %v", err)
	}
	return buf.Bytes()
}

// checkUnpacked fails t unless m and parts are what was packed from
// manifest in and parts want.
func checkUnpacked(t testing.TB, m snapshot.Manifest, parts []snapshot.Part, in snapshot.Manifest, want []snapshot.Part) {
	t.Helper()
	want = sortedParts(want)
	equalParts(t, parts, want)
	if m.Format != snapshot.FormatVersion || m.App != in.App || m.Release != in.Release ||
		m.Runtime != in.Runtime || m.RuntimeVersion != in.RuntimeVersion || !reflect.DeepEqual(m.Meta, in.Meta) {
		t.Errorf("unpacked manifest %+v does not match packed %+v", m, in)
	}
	for i, p := range want {
		if info := m.Parts[i]; info.Name != p.Name || info.Digest != sha(p.Data) || info.Size != int64(len(p.Data)) {
			t.Errorf("manifest part %d = %+v, want %q, %d bytes, sha256 %s", i, info, p.Name, len(p.Data), sha(p.Data)[:12])
		}
	}
}

func TestPackRoundTrip(t *testing.T) {
	half := make([]byte, 3*4096+17)
	copy(half[4096:], randomBytes(5, 4096))
	tests := []struct {
		name  string
		parts []snapshot.Part
	}{
		{"wasm-like", sampleParts(1)},
		{"no parts", nil},
		{"one empty part", []snapshot.Part{{Name: "empty", Data: []byte{}}}},
		{"one byte", []snapshot.Part{{Name: "x", Data: []byte{7}}}},
		{"one zero byte", []snapshot.Part{{Name: "x", Data: []byte{0}}}},
		{"all zero, unaligned size", []snapshot.Part{{Name: "x", Data: make([]byte, 5*4096+3)}}},
		{"data in the last partial block only", []snapshot.Part{{Name: "x", Data: append(make([]byte, 8192), 1, 2, 3)}}},
		{"data in a middle block", []snapshot.Part{{Name: "x", Data: half}}},
		{"dense random, unaligned", []snapshot.Part{{Name: "x", Data: randomBytes(3, 1<<20+1)}}},
		{"same data twice", []snapshot.Part{{Name: "a", Data: randomBytes(4, 9000)}, {Name: "b", Data: randomBytes(4, 9000)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := manifestFor("app", releaseID("r"))
			b := packed(t, in, tt.parts)
			m, parts, err := snapshot.Unpack(bytes.NewReader(b), 64<<20)
			if err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			checkUnpacked(t, m, parts, in, tt.parts)
		})
	}
}

func TestPackKeepsCreated(t *testing.T) {
	in := manifestFor("app", releaseID("r"))
	in.Created = time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	m, _, err := snapshot.Unpack(bytes.NewReader(packed(t, in, sampleParts(1))), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Created.Equal(in.Created) {
		t.Errorf("Created = %v, want %v", m.Created, in.Created)
	}
}

func TestPackInvalid(t *testing.T) {
	m := manifestFor("", releaseID("r"))
	err := snapshot.Pack(io.Discard, m, nil)
	wantSentinel(t, err, snapshot.ErrInvalid)
	m = manifestFor("app", releaseID("r"))
	err = snapshot.Pack(io.Discard, m, []snapshot.Part{{Name: "A"}})
	wantSentinel(t, err, snapshot.ErrInvalid)
}

// TestPackMostlyEmpty packs a 256 MiB memory holding a few hundred KiB of
// data. (A 1 GiB one would prove the same at four times the test's memory.)
func TestPackMostlyEmpty(t *testing.T) {
	const size = 256 << 20
	mem := make([]byte, size)
	for i := range 64 { // 64 random blocks spread over the memory
		off := (i*4099 + 7) % (size / 4096) * 4096
		copy(mem[off:], randomBytes(uint64(i), 4096))
	}
	copy(mem[size-100:], strings.Repeat("the end ", 12))
	in := manifestFor("app", releaseID("r"))
	parts := []snapshot.Part{{Name: "memory", Data: mem}, {Name: "globals", Data: randomBytes(1, 64)}}
	b := packed(t, in, parts)
	if len(b) >= 1<<20 {
		t.Errorf("a 256 MiB memory with 256 KiB of data packs to %d bytes, want under 1 MiB", len(b))
	}
	m, got, err := snapshot.Unpack(bytes.NewReader(b), size+1<<20)
	if err != nil {
		t.Fatal(err)
	}
	checkUnpacked(t, m, got, in, parts)
}

func TestPackDense(t *testing.T) {
	data := randomBytes(1, 8<<20)
	in := manifestFor("app", releaseID("r"))
	b := packed(t, in, []snapshot.Part{{Name: "memory", Data: data}})
	if len(b) > len(data)+len(data)/100+4096 {
		t.Errorf("8 MiB of random data packs to %d bytes: more than 1%% overhead", len(b))
	}
	m, got, err := snapshot.Unpack(bytes.NewReader(b), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	checkUnpacked(t, m, got, in, []snapshot.Part{{Name: "memory", Data: data}})
}

// smallPack is a packed snapshot small enough to damage at every byte.
func smallPack(t testing.TB) (snapshot.Manifest, []snapshot.Part, []byte) {
	in := manifestFor("app", releaseID("r"))
	mem := make([]byte, 3*4096)
	copy(mem[4096:], randomBytes(1, 300))
	parts := []snapshot.Part{{Name: "memory", Data: mem}, {Name: "globals", Data: []byte("globals!")}, {Name: "empty", Data: []byte{}}}
	return in, parts, packed(t, in, parts)
}

// TestUnpackDamaged damages a packed stream at every byte and checks that
// Unpack never panics and never returns bytes other than those packed.
func TestUnpackDamaged(t *testing.T) {
	in, parts, good := smallPack(t)
	check := func(t *testing.T, b []byte, what string) {
		t.Helper()
		m, got, err := snapshot.Unpack(bytes.NewReader(b), 1<<20)
		if err != nil {
			if !errors.Is(err, snapshot.ErrCorrupt) && !errors.Is(err, snapshot.ErrIncompatible) {
				t.Fatalf("%s: error %v wraps neither ErrCorrupt nor ErrIncompatible", what, err)
			}
			return
		}
		// Some damage leaves the content intact (a zstd header bit that
		// changes nothing decoded). Then the result must be exact.
		checkUnpacked(t, m, got, in, parts)
	}
	t.Run("truncated", func(t *testing.T) {
		for n := range len(good) {
			m, _, err := snapshot.Unpack(bytes.NewReader(good[:n]), 1<<20)
			if err == nil {
				t.Fatalf("truncated to %d of %d bytes: Unpack succeeded with %+v", n, len(good), m)
			}
			wantSentinel(t, err, snapshot.ErrCorrupt)
		}
	})
	t.Run("every byte inverted", func(t *testing.T) {
		failed := 0
		for i := range good {
			b := bytes.Clone(good)
			b[i] ^= 0xff
			check(t, b, fmt.Sprintf("byte %d inverted", i))
			if _, _, err := snapshot.Unpack(bytes.NewReader(b), 1<<20); err != nil {
				failed++
			}
		}
		if failed < len(good)*9/10 {
			t.Errorf("only %d of %d inverted bytes were refused", failed, len(good))
		}
	})
	t.Run("every bit flipped", func(t *testing.T) {
		for i := range good {
			for bit := range 8 {
				b := bytes.Clone(good)
				b[i] ^= 1 << bit
				check(t, b, fmt.Sprintf("byte %d bit %d", i, bit))
			}
		}
	})
	t.Run("trailing garbage", func(t *testing.T) {
		for _, tail := range [][]byte{{0}, {'x'}, []byte("garbage after the end"), make([]byte, 100), good} {
			_, _, err := snapshot.Unpack(bytes.NewReader(append(bytes.Clone(good), tail...)), 1<<20)
			wantSentinel(t, err, snapshot.ErrCorrupt)
		}
	})
	t.Run("bad magic", func(t *testing.T) {
		b := bytes.Clone(good)
		copy(b, "NOTSNAPS")
		_, _, err := snapshot.Unpack(bytes.NewReader(b), 1<<20)
		wantSentinel(t, err, snapshot.ErrCorrupt)
		if !strings.Contains(err.Error(), "not a packed snapshot") {
			t.Errorf("error %q does not say it is not a packed snapshot", err)
		}
	})
	t.Run("other pack version", func(t *testing.T) {
		b := bytes.Clone(good)
		binary.BigEndian.PutUint32(b[8:], 2)
		_, _, err := snapshot.Unpack(bytes.NewReader(b), 1<<20)
		wantSentinel(t, err, snapshot.ErrIncompatible)
	})
}

func TestUnpackLimit(t *testing.T) {
	_, parts, good := smallPack(t)
	total := 0
	for _, p := range parts {
		total += len(p.Data)
	}
	if _, _, err := snapshot.Unpack(bytes.NewReader(good), int64(total)); err != nil {
		t.Fatalf("Unpack with a limit of exactly the parts' size: %v", err)
	}
	_, _, err := snapshot.Unpack(bytes.NewReader(good), int64(total-1))
	wantSentinel(t, err, snapshot.ErrCorrupt)
	if !strings.Contains(err.Error(), "too large") {
		t.Errorf("error %q does not say too large", err)
	}
	for _, limit := range []int64{0, -1} {
		_, _, err := snapshot.Unpack(bytes.NewReader(good), limit)
		wantSentinel(t, err, snapshot.ErrInvalid)
	}
}

func TestUnpackReadError(t *testing.T) {
	_, _, good := smallPack(t)
	broken := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(good[:len(good)/2]), &failingReader{broken})
	_, _, err := snapshot.Unpack(r, 1<<20)
	if !errors.Is(err, broken) {
		t.Fatalf("Unpack = %v, want the reader's error", err)
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			t.Errorf("a failing reader is not a corrupt stream, but the error wraps %q", s)
		}
	}
}

type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }

// handPack builds a packed stream from a manifest and raw part records, to
// make streams Pack never writes.
func handPack(t *testing.T, m snapshot.Manifest, body func(w io.Writer)) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("FROSTSNP\x00\x00\x00\x01")
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(binary.AppendUvarint(nil, uint64(len(mb))))
	zw.Write(mb)
	body(zw)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestUnpackMalformedExtents feeds Unpack one-part streams whose extent
// records break each rule.
func TestUnpackMalformedExtents(t *testing.T) {
	const size = 4 * 4096
	data := make([]byte, size)
	copy(data[4096:], randomBytes(1, 2*4096))
	m := manifestFor("app", releaseID("r"))
	m.Format = snapshot.FormatVersion
	m.Created = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m.Parts = []snapshot.PartInfo{{Name: "memory", Digest: sha(data), Size: size}}

	type ext struct{ off, n uint64 }
	records := func(count uint64, exts ...ext) func(w io.Writer) {
		return func(w io.Writer) {
			w.Write(binary.AppendUvarint(nil, count))
			for _, e := range exts {
				w.Write(binary.AppendUvarint(nil, e.off))
				w.Write(binary.AppendUvarint(nil, e.n))
				b := make([]byte, min(e.n, 64<<10))
				if e.off < size {
					copy(b, data[e.off:])
				}
				w.Write(b)
			}
		}
	}
	tests := []struct {
		name string
		body func(w io.Writer)
		says string // "" means the stream is valid
	}{
		{"canonical", records(1, ext{4096, 8192}), ""},
		{"split in two adjacent extents", records(2, ext{4096, 4096}, ext{8192, 4096}), ""},
		{"with an explicit zero block", records(1, ext{0, 3 * 4096}), ""},
		{"unaligned offset", records(1, ext{4095, 8193}), "does not start on a 4 KiB boundary"},
		{"out of order", records(2, ext{8192, 4096}, ext{4096, 4096}), "starts before the previous extent ends"},
		{"overlapping", records(2, ext{4096, 8192}, ext{8192, 4096}), "starts before the previous extent ends"},
		{"empty extent", records(2, ext{4096, 0}, ext{4096, 8192}), "is empty"},
		{"beyond the part", records(1, ext{4096, 4 * 4096}), "ends beyond the part"},
		{"offset beyond the part", records(1, ext{1 << 40, 4096}), "ends beyond the part"},
		{"huge length", records(1, ext{4096, 1<<64 - 4096}), "ends beyond the part"},
		{"partial block mid-part", records(1, ext{4096, 100}), "not whole 4 KiB blocks"},
		{"more extents than blocks", records(5), "room for at most 4"},
		{"absurd extent count", records(1 << 62), "room for at most 4"},
		{"fewer extents than data", records(1, ext{4096, 4096}), `part "memory" has sha256`},
		{"extent count missing", func(io.Writer) {}, "truncated"},
		{"extent data cut short", func(w io.Writer) {
			w.Write([]byte{1})
			w.Write(binary.AppendUvarint(nil, 4096))
			w.Write(binary.AppendUvarint(nil, 8192))
			w.Write(data[4096 : 4096+100])
		}, "truncated"},
		{"a varint too long", func(w io.Writer) { w.Write(bytes.Repeat([]byte{0xff}, 11)) }, "extent count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := handPack(t, m, tt.body)
			_, parts, err := snapshot.Unpack(bytes.NewReader(b), 1<<20)
			if tt.says == "" {
				if err != nil {
					t.Fatalf("Unpack: %v", err)
				}
				if !bytes.Equal(parts[0].Data, data) {
					t.Fatal("unpacked data differs")
				}
				return
			}
			wantSentinel(t, err, snapshot.ErrCorrupt)
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error %q does not say %q", err, tt.says)
			}
		})
	}
	t.Run("manifest length over 1 MiB", func(t *testing.T) {
		var buf bytes.Buffer
		buf.WriteString("FROSTSNP\x00\x00\x00\x01")
		zw, _ := zstd.NewWriter(&buf)
		zw.Write(binary.AppendUvarint(nil, 1<<40))
		zw.Close()
		_, _, err := snapshot.Unpack(&buf, 1<<20)
		wantSentinel(t, err, snapshot.ErrCorrupt)
	})
	t.Run("manifest of another format", func(t *testing.T) {
		m2 := m
		m2.Format = 2
		_, _, err := snapshot.Unpack(bytes.NewReader(handPack(t, m2, records(1, ext{4096, 8192}))), 1<<20)
		wantSentinel(t, err, snapshot.ErrIncompatible)
	})
}

func TestExportImport(t *testing.T) {
	clk := newClock()
	src := open(t, t.TempDir(), snapshot.Options{Now: clk.Now})
	parts := sampleParts(1)
	m := put(t, src, manifestFor("app", releaseID("r")), parts)

	var buf bytes.Buffer
	if err := src.Export(context.Background(), wantFor(m), &buf); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	dst := open(t, t.TempDir(), snapshot.Options{Now: clk.Now})
	got, _, err := dst.Import(context.Background(), &buf, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("Import returned %+v, want the exported manifest %+v (Created kept)", got, m)
	}
	gm, gparts := get(t, dst, wantFor(m))
	if !reflect.DeepEqual(gm, m) {
		t.Errorf("imported manifest %+v, want %+v", gm, m)
	}
	equalParts(t, gparts, sortedParts(parts))

	t.Run("wrong want", func(t *testing.T) {
		w := wantFor(m)
		w.App = "other"
		wantSentinel(t, src.Export(context.Background(), w, io.Discard), snapshot.ErrWrongRelease)
	})
	t.Run("import refuses a corrupt stream and stores nothing", func(t *testing.T) {
		var buf bytes.Buffer
		src.Export(context.Background(), wantFor(m), &buf)
		b := buf.Bytes()
		b = b[:len(b)-1]
		dst := open(t, t.TempDir(), snapshot.Options{})
		_, _, err := dst.Import(context.Background(), bytes.NewReader(b), 1<<20)
		wantSentinel(t, err, snapshot.ErrCorrupt)
		if list, _ := dst.List(); len(list) != 0 {
			t.Errorf("a refused Import stored %v", list)
		}
	})
	t.Run("import over the limit", func(t *testing.T) {
		var buf bytes.Buffer
		src.Export(context.Background(), wantFor(m), &buf)
		dst := open(t, t.TempDir(), snapshot.Options{})
		_, _, err := dst.Import(context.Background(), &buf, 1000)
		wantSentinel(t, err, snapshot.ErrCorrupt)
	})
}
