package snapshot_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/frostdev/frost/internal/snapshot"
)

var update = flag.Bool("update", false, "rewrite the valid seeds in testdata/fuzz/")

// fuzzRelease is the release every fuzz seed is a snapshot of.
var fuzzRelease = releaseID("fuzz")

// fuzzParts are the parts of the fuzz seeds: small, with a hole, a partial
// last block and an empty part.
func fuzzParts() []snapshot.Part {
	mem := make([]byte, 3*4096+10)
	copy(mem, "memory starts here")
	copy(mem[2*4096:], randomBytes(1, 200))
	mem[len(mem)-1] = 0xee
	return []snapshot.Part{
		{Name: "memory", Data: mem},
		{Name: "globals", Data: []byte("\x01\x00\x00\x00\x00\x00\x00\x2a")},
		{Name: "empty", Data: []byte{}},
	}
}

// fuzzManifest is the manifest of the fuzz seeds, with a fixed Created so
// that the seeds are the same on every run.
func fuzzManifest() snapshot.Manifest {
	m := manifestFor("app", fuzzRelease)
	m.Created = newClock().Now()
	return m
}

func fuzzWant() snapshot.Want { return wantFor(fuzzManifest()) }

// packSeeds are valid packed snapshots, by name.
func packSeeds(t testing.TB) map[string][]byte {
	dense := []snapshot.Part{{Name: "fs", Data: randomBytes(2, 5000)}}
	return map[string][]byte{
		"valid-wasm":     packed(t, fuzzManifest(), fuzzParts()),
		"valid-no-parts": packed(t, fuzzManifest(), nil),
		"valid-dense":    packed(t, fuzzManifest(), dense),
	}
}

// manifestSeeds are valid manifest files for the parts of fuzzParts, as
// Put writes them, by name.
func manifestSeeds(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{}
	for name, parts := range map[string][]snapshot.Part{
		"valid-wasm":     fuzzParts(),
		"valid-no-parts": nil,
		"valid-one-part": fuzzParts()[:1],
	} {
		dir := t.TempDir()
		s := open(t, dir, snapshot.Options{})
		put(t, s, fuzzManifest(), parts)
		seeds[name] = readFile(t, filepath.Join(dir, fuzzRelease, "manifest.json"))
	}
	return seeds
}

// FuzzUnpack feeds Unpack arbitrary streams. It must never panic; it may
// only fail with ErrCorrupt or ErrIncompatible; and what it accepts must be
// consistent and pack back to the same snapshot.
func FuzzUnpack(f *testing.F) {
	for _, b := range packSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 1 << 20
		m, parts, err := snapshot.Unpack(bytes.NewReader(b), limit)
		if err != nil {
			if !errors.Is(err, snapshot.ErrCorrupt) && !errors.Is(err, snapshot.ErrIncompatible) {
				t.Fatalf("Unpack error %v wraps neither ErrCorrupt nor ErrIncompatible", err)
			}
			return
		}
		checkConsistent(t, m, parts)
		if m.Size() > limit {
			t.Fatalf("Unpack accepted %d bytes of parts, limit %d", m.Size(), limit)
		}
		var buf bytes.Buffer
		if err := snapshot.Pack(&buf, m, parts); err != nil {
			t.Fatalf("Pack of what Unpack accepted: %v", err)
		}
		m2, parts2, err := snapshot.Unpack(&buf, limit)
		if err != nil {
			t.Fatalf("Unpack of the re-packed snapshot: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-packed manifest differs:\n%+v\n%+v", m, m2)
		}
		equalParts(t, parts2, parts)
	})
}

// FuzzManifest puts arbitrary bytes in a stored snapshot's manifest.json
// and calls Get and Stat. They must never panic; Get must fail with exactly
// one of the four verification sentinels or return parts that match what
// the manifest says.
func FuzzManifest(f *testing.F) {
	for _, b := range manifestSeeds(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`{"format":1,"parts":[{"name":"memory","sha256":"` + strings.Repeat("0", 64) + `","size":1e18}]}`))

	dir := f.TempDir()
	s, err := snapshot.Open(dir, snapshot.Options{})
	if err != nil {
		f.Fatal(err)
	}
	// The part files the seeds list, as Put would leave them. Written after
	// Open, which would remove them for want of a manifest.
	for _, p := range fuzzParts() {
		writeFile(f, filepath.Join(dir, fuzzRelease, sha(p.Data)), p.Data)
	}
	want := fuzzWant()
	ctx := context.Background()
	manifestPath := filepath.Join(dir, fuzzRelease, "manifest.json")

	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(manifestPath, b, 0o600); err != nil {
			t.Fatal(err)
		}
		sm, _, _, serr := s.Stat(fuzzRelease)
		m, parts, err := s.Get(ctx, want)
		if err != nil {
			n := 0
			for _, s := range sentinels[:4] {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("Get error %v wraps %d of the four sentinels, want exactly one", err, n)
			}
			return
		}
		checkConsistent(t, m, parts)
		if m.App != want.App || m.Release != want.Release || m.Runtime != want.Runtime || m.RuntimeVersion != want.RuntimeVersion {
			t.Fatalf("Get returned a manifest that is not the one wanted: %+v", m)
		}
		if serr != nil || !reflect.DeepEqual(sm, m) {
			t.Fatalf("Get accepted the manifest but Stat says %+v, %v", sm, serr)
		}
	})
}

// checkConsistent fails t unless parts are exactly what m lists.
func checkConsistent(t *testing.T, m snapshot.Manifest, parts []snapshot.Part) {
	t.Helper()
	if len(parts) != len(m.Parts) {
		t.Fatalf("%d parts for a manifest of %d", len(parts), len(m.Parts))
	}
	for i, p := range m.Parts {
		if parts[i].Name != p.Name || int64(len(parts[i].Data)) != p.Size || sha(parts[i].Data) != p.Digest {
			t.Fatalf("part %d (%q, %d bytes) does not match manifest entry %+v", i, parts[i].Name, len(parts[i].Data), p)
		}
	}
}

// TestFuzzSeeds checks that the valid seeds kept under testdata/fuzz/, made
// by an earlier build, are still accepted: packed snapshots and manifests
// written before keep being readable while FormatVersion stays 1. With
// -update it rewrites them from this build.
func TestFuzzSeeds(t *testing.T) {
	for target, seeds := range map[string]map[string][]byte{
		"FuzzUnpack":   packSeeds(t),
		"FuzzManifest": manifestSeeds(t),
	} {
		dir := filepath.Join("testdata", "fuzz", target)
		if *update {
			for name, b := range seeds {
				writeFile(t, filepath.Join(dir, name), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)))
			}
		}
		for name := range seeds {
			t.Run(target+"/"+name, func(t *testing.T) {
				b := readSeed(t, filepath.Join(dir, name))
				switch target {
				case "FuzzUnpack":
					m, parts, err := snapshot.Unpack(bytes.NewReader(b), 1<<20)
					if err != nil {
						t.Fatalf("a packed snapshot from an earlier build no longer unpacks: %v", err)
					}
					checkConsistent(t, m, parts)
				case "FuzzManifest":
					sdir := t.TempDir()
					s := open(t, sdir, snapshot.Options{})
					for _, p := range fuzzParts() {
						writeFile(t, filepath.Join(sdir, fuzzRelease, sha(p.Data)), p.Data)
					}
					writeFile(t, filepath.Join(sdir, fuzzRelease, "manifest.json"), b)
					get(t, s, fuzzWant())
				}
			})
		}
	}
}

// readSeed reads a corpus file in the "go test fuzz v1" format holding
// one []byte.
func readSeed(t *testing.T, path string) []byte {
	t.Helper()
	text := string(readFile(t, path))
	body, ok := strings.CutPrefix(text, "go test fuzz v1\n[]byte(")
	body, ok2 := strings.CutSuffix(body, ")\n")
	if !ok || !ok2 {
		t.Fatalf("%s is not a go test fuzz v1 file of one []byte (run go test -update to rewrite it)", path)
	}
	s, err := strconv.Unquote(body)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}
