package dir_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/frostdev/frost/internal/blob"
	"github.com/frostdev/frost/internal/blob/blobtest"
	"github.com/frostdev/frost/internal/blob/dir"
)

func TestStore(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return newStore(t, t.TempDir()) })
}

func newStore(t *testing.T, root string) *dir.Store {
	t.Helper()
	s, err := dir.New(root)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func put(t *testing.T, s *dir.Store, data []byte) string {
	t.Helper()
	info, err := s.Put(t.Context(), "", bytes.NewReader(data), 0)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	return info.Digest
}

func TestLayout(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	data := []byte("layout")
	d := put(t, s, data)

	want := filepath.Join(root, "sha256", d[:2], d)
	if got := s.Path(d); got != want {
		t.Fatalf("Path = %s, want %s", got, want)
	}
	got, err := os.ReadFile(want)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file at %s = %q, %v; want %q", want, got, err, data)
	}
	fi, err := os.Stat(want)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("blob file mode %v is readable by others", perm)
	}
	if p := s.Path("../etc/passwd"); p != "" {
		t.Errorf("Path of an invalid digest = %q, want \"\"", p)
	}
	checkNoTemp(t, root)
}

// TestOpenDetectsDamage alters a stored blob on disk and expects the reader
// to fail at EOF rather than hand out wrong bytes silently.
func TestOpenDetectsDamage(t *testing.T) {
	data := bytes.Repeat([]byte("frost snapshot page "), 1000)
	tests := []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"first byte flipped", func(b []byte) []byte { b[0] ^= 0x01; return b }},
		{"middle byte flipped", func(b []byte) []byte { b[len(b)/2] ^= 0x80; return b }},
		{"last byte flipped", func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-100] }},
		{"emptied", func(b []byte) []byte { return nil }},
		{"extended", func(b []byte) []byte { return append(b, 0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, t.TempDir())
			d := put(t, s, data)
			path := s.Path(d)
			if err := os.WriteFile(path, tt.damage(bytes.Clone(data)), 0o600); err != nil {
				t.Fatal(err)
			}

			rc, _, err := s.Open(t.Context(), d)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer rc.Close()
			_, err = io.ReadAll(rc)
			if !errors.Is(err, blob.ErrDigestMismatch) {
				t.Fatalf("reading a damaged blob = %v, want ErrDigestMismatch", err)
			}
			if _, err := rc.Read(make([]byte, 1)); !errors.Is(err, blob.ErrDigestMismatch) {
				t.Fatalf("Read after the mismatch = %v, want ErrDigestMismatch again", err)
			}

			// Storing the right bytes again with their digest is confirmed
			// against the caller's bytes, not the damaged file.
			if _, err := s.Put(t.Context(), d, bytes.NewReader([]byte("wrong")), 0); !errors.Is(err, blob.ErrDigestMismatch) {
				t.Fatalf("Put of wrong bytes = %v, want ErrDigestMismatch", err)
			}
		})
	}
}

func TestNewRemovesStaleTemporaryFiles(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	d := put(t, s, []byte("survives"))

	tmp := filepath.Join(root, "tmp")
	for _, name := range []string{"put-123", "put-456", "unexpected"} {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte("half a blob"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(tmp, "put-dir"), 0o700); err != nil {
		t.Fatal(err)
	}

	s = newStore(t, root)
	checkNoTemp(t, root)
	if _, err := s.Stat(t.Context(), d); err != nil {
		t.Fatalf("Stat of a blob stored before New: %v", err)
	}
}

// TestFailedPutsLeaveNoTemporaryFiles: every way a Put can fail cleans up.
func TestFailedPutsLeaveNoTemporaryFiles(t *testing.T) {
	data := []byte("some bytes that will not be stored")
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name  string
		ctx   context.Context
		want  string
		r     io.Reader
		limit int64
		err   error
	}{
		{"digest mismatch", t.Context(), blobtest.Digest([]byte("other")), bytes.NewReader(data), 0, blob.ErrDigestMismatch},
		{"too large", t.Context(), "", bytes.NewReader(data), 4, blob.ErrTooLarge},
		{"cancelled", cancelled, "", bytes.NewReader(data), 0, context.Canceled},
		{"reader fails", t.Context(), "", io.MultiReader(bytes.NewReader(data), failingReader{}), 0, errFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			s := newStore(t, root)
			if _, err := s.Put(tt.ctx, tt.want, tt.r, tt.limit); !errors.Is(err, tt.err) {
				t.Fatalf("Put = %v, want %v", err, tt.err)
			}
			checkNoTemp(t, root)
		})
	}
}

func TestListSkipsStrayFiles(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, root)
	d := put(t, s, []byte("real"))
	other := blobtest.Digest([]byte("misplaced"))
	stray := []string{
		filepath.Join(root, "sha256", "README"),
		filepath.Join(root, "sha256", d[:2], "notes.txt"),
		filepath.Join(root, "sha256", d[:2], strings.ToUpper(d)),
		filepath.Join(root, "sha256", d[:2], other), // wrong prefix directory
	}
	if other[:2] == d[:2] {
		t.Fatal("test needs digests with different prefixes")
	}
	for _, p := range stray {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := s.List(t.Context(), func(i blob.Info) error { got = append(got, i.Digest); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != d {
		t.Fatalf("List = %v, want only %s", got, d)
	}
}

func TestNewErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		root string
	}{
		{"empty root", ""},
		{"root is a file", file},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := dir.New(tt.root); err == nil {
				t.Fatalf("New(%q) succeeded", tt.root)
			}
		})
	}
}

var errFail = errors.New("connection reset")

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errFail }

func checkNoTemp(t *testing.T, root string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("temporary file left behind: %s", e.Name())
	}
}
