package snapshot_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/snapshot"
)

const (
	testRuntime        = "wasm"
	testRuntimeVersion = "wasm/1 wazero v1.12.0"
)

// sentinels are the errors a verification failure wraps exactly one of.
var sentinels = []error{snapshot.ErrNotFound, snapshot.ErrCorrupt, snapshot.ErrIncompatible, snapshot.ErrWrongRelease, snapshot.ErrInvalid}

// wantSentinel fails t unless err wraps want and no other sentinel.
func wantSentinel(t testing.TB, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want one wrapping %q", err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Fatalf("error = %v wraps both %q and %q", err, want, s)
		}
	}
}

// releaseID returns a release ID derived from name.
func releaseID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// manifestFor is what a caller of Put fills in.
func manifestFor(app, release string) snapshot.Manifest {
	return snapshot.Manifest{
		Runtime:        testRuntime,
		RuntimeVersion: testRuntimeVersion,
		App:            app,
		Release:        release,
		Meta:           map[string]string{"memory_pages": "4"},
	}
}

func wantFor(m snapshot.Manifest) snapshot.Want {
	return snapshot.Want{App: m.App, Release: m.Release, Runtime: m.Runtime, RuntimeVersion: m.RuntimeVersion}
}

// randomBytes returns n bytes from a generator seeded with seed.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// sampleParts is a wasm-like snapshot: a 256 KiB memory that is mostly
// zero (data in the first, a middle and the last block), a small globals
// part, a file system image whose size is not a multiple of 4 KiB, and an
// empty part. They are given out of name order on purpose.
func sampleParts(seed uint64) []snapshot.Part {
	mem := make([]byte, 256<<10)
	copy(mem, randomBytes(seed, 4096))
	copy(mem[100<<10:], randomBytes(seed+1, 5000))
	copy(mem[len(mem)-100:], randomBytes(seed+2, 100))
	return []snapshot.Part{
		{Name: "memory", Data: mem},
		{Name: "globals", Data: randomBytes(seed+3, 64)},
		{Name: "fs", Data: randomBytes(seed+4, 10<<10+123)},
		{Name: "empty", Data: []byte{}},
	}
}

// sortedParts returns parts sorted by name, as Get returns them.
func sortedParts(parts []snapshot.Part) []snapshot.Part {
	out := slices.Clone(parts)
	slices.SortFunc(out, func(a, b snapshot.Part) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// equalParts fails t unless got and want hold the same names and bytes in
// the same order.
func equalParts(t testing.TB, got, want []snapshot.Part) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d parts, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Name != want[i].Name {
			t.Fatalf("part %d is %q, want %q", i, got[i].Name, want[i].Name)
		}
		if !bytes.Equal(got[i].Data, want[i].Data) {
			t.Fatalf("part %q: data differs (%d bytes, want %d)", got[i].Name, len(got[i].Data), len(want[i].Data))
		}
	}
}

// clock is a settable time source for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func open(t testing.TB, dir string, opts snapshot.Options) *snapshot.Store {
	t.Helper()
	s, err := snapshot.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func put(t testing.TB, s *snapshot.Store, m snapshot.Manifest, parts []snapshot.Part) snapshot.Manifest {
	t.Helper()
	got, err := s.Put(context.Background(), m, parts)
	if err != nil {
		t.Fatalf("Put(%s): %v", m.Release[:8], err)
	}
	return got
}

func get(t testing.TB, s *snapshot.Store, want snapshot.Want) (snapshot.Manifest, []snapshot.Part) {
	t.Helper()
	m, parts, err := s.Get(context.Background(), want)
	if err != nil {
		t.Fatalf("Get(%s): %v", want.Release[:8], err)
	}
	return m, parts
}

// dirNames returns the sorted names in dir.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// partFiles returns the names a snapshot directory should hold for m.
func partFiles(m snapshot.Manifest) []string {
	names := []string{"manifest.json"}
	for _, p := range m.Parts {
		if !slices.Contains(names, p.Digest) {
			names = append(names, p.Digest)
		}
	}
	slices.Sort(names)
	return names
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reader is one way to take a verified snapshot out of a store.
type reader struct {
	name string
	// read returns the manifest and the parts in manifest order, or an
	// error and no parts.
	read func(t testing.TB, s *snapshot.Store, ctx context.Context, want snapshot.Want) (snapshot.Manifest, []snapshot.Part, error)
}

// readers are Get and GetFiles: every verification case runs against both.
var readers = []reader{
	{"Get", func(_ testing.TB, s *snapshot.Store, ctx context.Context, want snapshot.Want) (snapshot.Manifest, []snapshot.Part, error) {
		return s.Get(ctx, want)
	}},
	{"GetFiles", getFiles},
}

// getFiles runs GetFiles into a new empty directory and reads back what
// it wrote there. It fails t if GetFiles leaves anything there with an
// error, or anything but the parts without one.
func getFiles(t testing.TB, s *snapshot.Store, ctx context.Context, want snapshot.Want) (snapshot.Manifest, []snapshot.Part, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	m, err := s.GetFiles(ctx, want, out)
	names := dirNames(t, out)
	if err != nil {
		if len(names) != 0 {
			t.Errorf("GetFiles failed (%v) and left %v in the directory", err, names)
		}
		return m, nil, err
	}
	var want2 []string
	parts := make([]snapshot.Part, len(m.Parts))
	for i, p := range m.Parts {
		want2 = append(want2, p.Name)
		parts[i] = snapshot.Part{Name: p.Name, Data: readFile(t, filepath.Join(out, p.Name))}
	}
	if !slices.Equal(names, want2) {
		t.Errorf("GetFiles wrote %v, want the part names %v", names, want2)
	}
	return m, parts, nil
}
