package snapshot_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/frostdev/frost/internal/snapshot"
)

// TestGetCorrupt damages a stored snapshot in every way the format knows
// and checks that Get and GetFiles refuse it with the right sentinel and
// say what is wrong, before handing out any part (GetFiles leaving no file
// behind).
func TestGetCorrupt(t *testing.T) {
	for _, r := range readers {
		t.Run(r.name, func(t *testing.T) { testGetCorrupt(t, r) })
	}
}

func testGetCorrupt(t *testing.T, r reader) {
	// editManifest rewrites the stored manifest through a generic JSON map.
	editManifest := func(edit func(m map[string]any)) func(t *testing.T, dir string, m snapshot.Manifest) {
		return func(t *testing.T, dir string, m snapshot.Manifest) {
			path := filepath.Join(dir, m.Release, "manifest.json")
			var v map[string]any
			if err := json.Unmarshal(readFile(t, path), &v); err != nil {
				t.Fatal(err)
			}
			edit(v)
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, path, b)
		}
	}
	firstPart := func(v map[string]any) map[string]any {
		return v["parts"].([]any)[0].(map[string]any)
	}
	manifestPath := func(dir string, m snapshot.Manifest) string {
		return filepath.Join(dir, m.Release, "manifest.json")
	}
	partPath := func(dir string, m snapshot.Manifest, name string) string {
		for _, p := range m.Parts {
			if p.Name == name {
				return filepath.Join(dir, m.Release, p.Digest)
			}
		}
		panic("no part " + name)
	}
	other := releaseID("other")

	tests := []struct {
		name     string
		damage   func(t *testing.T, dir string, m snapshot.Manifest)
		want     func(w *snapshot.Want) // changes what Get asks for
		sentinel error
		says     string // the error names this
	}{
		{"manifest missing", func(t *testing.T, dir string, m snapshot.Manifest) {
			os.Remove(manifestPath(dir, m))
		}, nil, snapshot.ErrNotFound, "manifest.json"},
		{"whole snapshot missing", func(t *testing.T, dir string, m snapshot.Manifest) {
			os.RemoveAll(filepath.Join(dir, m.Release))
		}, nil, snapshot.ErrNotFound, "manifest.json"},
		{"manifest empty", func(t *testing.T, dir string, m snapshot.Manifest) {
			writeFile(t, manifestPath(dir, m), nil)
		}, nil, snapshot.ErrCorrupt, "not JSON"},
		{"manifest truncated", func(t *testing.T, dir string, m snapshot.Manifest) {
			b := readFile(t, manifestPath(dir, m))
			writeFile(t, manifestPath(dir, m), b[:len(b)/2])
		}, nil, snapshot.ErrCorrupt, "not JSON"},
		{"manifest truncated by one byte", func(t *testing.T, dir string, m snapshot.Manifest) {
			b := bytes.TrimSpace(readFile(t, manifestPath(dir, m)))
			writeFile(t, manifestPath(dir, m), b[:len(b)-1])
		}, nil, snapshot.ErrCorrupt, "not JSON"},
		{"manifest not JSON", func(t *testing.T, dir string, m snapshot.Manifest) {
			writeFile(t, manifestPath(dir, m), []byte("\x00\x01 binary junk"))
		}, nil, snapshot.ErrCorrupt, "not JSON"},
		{"manifest a JSON array", func(t *testing.T, dir string, m snapshot.Manifest) {
			writeFile(t, manifestPath(dir, m), []byte("[1,2]"))
		}, nil, snapshot.ErrCorrupt, "not JSON"},
		{"manifest with data after it", func(t *testing.T, dir string, m snapshot.Manifest) {
			b := readFile(t, manifestPath(dir, m))
			writeFile(t, manifestPath(dir, m), append(b, []byte(`{"format":1}`)...))
		}, nil, snapshot.ErrCorrupt, "manifest"},
		{"manifest over 1 MiB", func(t *testing.T, dir string, m snapshot.Manifest) {
			b := readFile(t, manifestPath(dir, m))
			writeFile(t, manifestPath(dir, m), append(b, bytes.Repeat([]byte(" "), 1<<20)...))
		}, nil, snapshot.ErrCorrupt, "more than the 1048576 allowed"},
		{"manifest is a directory", func(t *testing.T, dir string, m snapshot.Manifest) {
			os.Remove(manifestPath(dir, m))
			os.Mkdir(manifestPath(dir, m), 0o700)
		}, nil, snapshot.ErrCorrupt, "not a regular file"},
		{"format missing", editManifest(func(v map[string]any) { delete(v, "format") }),
			nil, snapshot.ErrCorrupt, "no format version"},
		{"unknown field", editManifest(func(v map[string]any) { v["surprise"] = true }),
			nil, snapshot.ErrCorrupt, "surprise"},
		{"release not hex", editManifest(func(v map[string]any) { v["release"] = "../../etc" }),
			nil, snapshot.ErrCorrupt, "release ID"},
		{"app empty", editManifest(func(v map[string]any) { v["app"] = "" }),
			nil, snapshot.ErrCorrupt, "app is empty"},
		{"created not a time", editManifest(func(v map[string]any) { v["created"] = "yesterday" }),
			nil, snapshot.ErrCorrupt, "manifest"},
		{"part digest not hex", editManifest(func(v map[string]any) { firstPart(v)["sha256"] = "../manifest.json" }),
			nil, snapshot.ErrCorrupt, "not 64 lower-case hex"},
		{"part name invalid", editManifest(func(v map[string]any) { firstPart(v)["name"] = "../x" }),
			nil, snapshot.ErrCorrupt, "part name"},
		{"part size negative", editManifest(func(v map[string]any) { firstPart(v)["size"] = -1 }),
			nil, snapshot.ErrCorrupt, "negative size"},
		{"part size huge", editManifest(func(v map[string]any) { firstPart(v)["size"] = int64(1) << 50 }),
			nil, snapshot.ErrCorrupt, "manifest says 1125899906842624"},
		{"parts not sorted", editManifest(func(v map[string]any) {
			p := v["parts"].([]any)
			p[0], p[1] = p[1], p[0]
		}), nil, snapshot.ErrCorrupt, "not sorted"},
		{"part listed twice", editManifest(func(v map[string]any) {
			p := v["parts"].([]any)
			v["parts"] = append([]any{p[0]}, p...)
		}), nil, snapshot.ErrCorrupt, "listed twice"},
		{"part listed with another digest", editManifest(func(v map[string]any) { firstPart(v)["sha256"] = other }),
			nil, snapshot.ErrCorrupt, "is missing"},
		{"part dropped from the manifest", editManifest(func(v map[string]any) {
			v["parts"] = v["parts"].([]any)[1:]
		}), nil, nil, ""}, // still a consistent snapshot, of fewer parts: see below

		{"part missing", func(t *testing.T, dir string, m snapshot.Manifest) {
			os.Remove(partPath(dir, m, "memory"))
		}, nil, snapshot.ErrCorrupt, `part "memory" (sha256 `},
		{"part truncated by one byte", func(t *testing.T, dir string, m snapshot.Manifest) {
			os.Truncate(partPath(dir, m, "memory"), 256<<10-1)
		}, nil, snapshot.ErrCorrupt, "is 262143 bytes, manifest says 262144"},
		{"part truncated to nothing", func(t *testing.T, dir string, m snapshot.Manifest) {
			os.Truncate(partPath(dir, m, "fs"), 0)
		}, nil, snapshot.ErrCorrupt, `part "fs"`},
		{"part extended by one byte", func(t *testing.T, dir string, m snapshot.Manifest) {
			f, err := os.OpenFile(partPath(dir, m, "globals"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte{0})
			f.Close()
		}, nil, snapshot.ErrCorrupt, "is 65 bytes, manifest says 64"},
		{"empty part extended", func(t *testing.T, dir string, m snapshot.Manifest) {
			writeFile(t, partPath(dir, m, "empty"), []byte("x"))
		}, nil, snapshot.ErrCorrupt, "is 1 bytes, manifest says 0"},
		{"part is a directory", func(t *testing.T, dir string, m snapshot.Manifest) {
			os.Remove(partPath(dir, m, "globals"))
			os.Mkdir(partPath(dir, m, "globals"), 0o700)
		}, nil, snapshot.ErrCorrupt, "not a regular file"},
		{"part swapped for one of the same size", func(t *testing.T, dir string, m snapshot.Manifest) {
			writeFile(t, partPath(dir, m, "globals"), randomBytes(99, 64))
		}, nil, snapshot.ErrCorrupt, `part "globals" has sha256`},

		{"other format version", editManifest(func(v map[string]any) { v["format"] = 2 }),
			nil, snapshot.ErrIncompatible, "format version 2, this build reads 1"},
		{"format version zero", editManifest(func(v map[string]any) { v["format"] = 0 }),
			nil, snapshot.ErrIncompatible, "format version 0"},
		{"other runtime", nil, func(w *snapshot.Want) { w.Runtime = "gvisor" },
			snapshot.ErrIncompatible, `runtime "wasm", want "gvisor"`},
		{"other runtime version", nil, func(w *snapshot.Want) { w.RuntimeVersion = "wasm/2 wazero v1.13.0" },
			snapshot.ErrIncompatible, `runtime version "wasm/1 wazero v1.12.0", want "wasm/2 wazero v1.13.0"`},
		{"other app", nil, func(w *snapshot.Want) { w.App = "other" },
			snapshot.ErrWrongRelease, `app "app", want "other"`},
		{"other release in the manifest", func(t *testing.T, dir string, m snapshot.Manifest) {
			// The snapshot of another release, copied to this release's place.
			os.Rename(filepath.Join(dir, m.Release), filepath.Join(dir, other))
		}, func(w *snapshot.Want) { w.Release = other }, snapshot.ErrWrongRelease, "release " + m8(releaseID("a")) + "…, want " + m8(other)},
		{"release not stored", nil, func(w *snapshot.Want) { w.Release = other }, snapshot.ErrNotFound, ""},
	}
	// Each case runs on a store that has not read the snapshot yet, and on
	// one that has (and so holds its parsed manifest: damage must still
	// be seen).
	for _, tt := range tests {
		for _, warm := range []bool{false, true} {
			name := tt.name
			if warm {
				name += "/after a good Get"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				s := open(t, dir, snapshot.Options{})
				m := put(t, s, manifestFor("app", releaseID("a")), sampleParts(1))
				if warm {
					if _, _, err := r.read(t, s, context.Background(), wantFor(m)); err != nil {
						t.Fatal(err)
					}
				}
				if tt.damage != nil {
					tt.damage(t, dir, m)
				}
				want := wantFor(m)
				if tt.want != nil {
					tt.want(&want)
				}
				gm, parts, err := r.read(t, s, context.Background(), want)
				if tt.sentinel == nil {
					// Dropping a part from the manifest leaves a smaller but
					// self-consistent snapshot; the runtime refuses it for
					// lack of a part it needs. Get must still verify the rest.
					if err != nil || len(parts) != len(m.Parts)-1 || len(gm.Parts) != len(parts) {
						t.Fatalf("Get = %d parts, %v", len(parts), err)
					}
					return
				}
				wantSentinel(t, err, tt.sentinel)
				if !strings.Contains(err.Error(), tt.says) {
					t.Errorf("error %q does not say %q", err, tt.says)
				}
				if parts != nil {
					t.Errorf("%s returned %d parts with its error", r.name, len(parts))
				}
				// Stat and Export see the same.
				if err := s.Export(context.Background(), want, &bytes.Buffer{}); err == nil {
					t.Errorf("Export of a snapshot Get refuses succeeded")
				}
			})
		}
	}
}

func m8(release string) string { return release[:12] }

// TestGetDetectsFlippedBits flips one bit at a sample of positions of every
// part, including the first and last byte, and checks Get and GetFiles
// refuse each.
func TestGetDetectsFlippedBits(t *testing.T) {
	for _, r := range readers {
		t.Run(r.name, func(t *testing.T) { testGetDetectsFlippedBits(t, r) })
	}
}

func testGetDetectsFlippedBits(t *testing.T, r reader) {
	dir := t.TempDir()
	s := open(t, dir, snapshot.Options{})
	m := put(t, s, manifestFor("app", releaseID("a")), sampleParts(1))
	flips := 0
	for _, p := range m.Parts {
		if p.Size == 0 {
			continue // no bit to flip
		}
		path := filepath.Join(dir, m.Release, p.Digest)
		orig := readFile(t, path)
		n := int(p.Size)
		positions := []int{0, 1, n / 3, n / 2, n - 2, n - 1}
		for _, b := range []int{4095, 4096, 8191, 100 << 10, 200 << 10} { // block edges, data and holes
			if b < n {
				positions = append(positions, b)
			}
		}
		for i, pos := range positions {
			bit := byte(1) << (i % 8)
			t.Run(fmt.Sprintf("%s/byte %d bit %d", p.Name, pos, i%8), func(t *testing.T) {
				damaged := bytes.Clone(orig)
				damaged[pos] ^= bit
				writeFile(t, path, damaged)
				defer writeFile(t, path, orig)
				_, parts, err := r.read(t, s, context.Background(), wantFor(m))
				wantSentinel(t, err, snapshot.ErrCorrupt)
				if !strings.Contains(err.Error(), fmt.Sprintf("part %q has sha256", p.Name)) {
					t.Errorf("error %q does not name the part and its digest", err)
				}
				if parts != nil {
					t.Errorf("%s returned parts with its error", r.name)
				}
			})
			flips++
		}
	}
	if flips < 20 {
		t.Fatalf("only %d flips tried", flips)
	}
	if _, _, err := r.read(t, s, context.Background(), wantFor(m)); err != nil { // intact again
		t.Fatal(err)
	}
}
