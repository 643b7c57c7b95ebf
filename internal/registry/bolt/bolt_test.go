package bolt_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/registry/bolt"
	"github.com/frostdev/frost/internal/registry/registrytest"
)

func TestStore(t *testing.T) {
	registrytest.RunWith(t,
		func(t *testing.T) registry.Store {
			return open(t, filepath.Join(t.TempDir(), "registry.db"))
		},
		registrytest.Options{
			Reopen: func(t *testing.T, s registry.Store) registry.Store {
				path := s.(*bolt.Store).Path()
				if err := s.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				return open(t, path)
			},
		})
}

// open opens path and closes it when the test ends.
func open(t *testing.T, path string) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(path, bolt.Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "nested", "registry.db")
	open(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode = %v, want 0600", perm)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("directory mode = %v, want no access for others", perm)
	}
}

// TestSecondOpenFails: a second server on the same data directory gets a
// prompt, clear error instead of hanging, and the first keeps working.
func TestSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	first := open(t, path)

	start := time.Now()
	second, err := bolt.Open(path, bolt.Options{LockTimeout: 200 * time.Millisecond})
	if err == nil {
		second.Close()
		t.Fatal("second Open of a file in use succeeded")
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("second Open took %v to fail", waited)
	}
	if !errors.Is(err, bolt.ErrLocked) {
		t.Errorf("second Open = %v, want ErrLocked", err)
	}
	t.Log(err)
	msg := err.Error()
	for _, want := range []string{path, "another frost server", "pid " + strconv.Itoa(os.Getpid())} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}

	if _, err := first.UpdateApp(t.Context(), "web", true, func(*registry.App) error { return nil }); err != nil {
		t.Fatalf("first store after a failed second Open: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".pid"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file left after Close: %v", err)
	}
	// Once the first is closed, the file opens again.
	s := open(t, path)
	if _, err := s.GetApp(t.Context(), "web"); err != nil {
		t.Fatalf("GetApp after reopen: %v", err)
	}
}

func TestCloseTwice(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "registry.db"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
}

// TestOpenCorrupt: a damaged or foreign file is reported as ErrCorrupt with
// advice, never opened as if empty and never a panic.
func TestOpenCorrupt(t *testing.T) {
	valid := validFile(t)
	tests := []struct {
		name    string
		content func() []byte
	}{
		{"text file", func() []byte { return []byte("this is not a database\n") }},
		{"garbage", func() []byte { return bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 4096) }},
		{"zeros", func() []byte { return make([]byte, 64<<10) }},
		{"truncated to 100 bytes", func() []byte { return valid[:100] }},
		{"both meta pages damaged", func() []byte {
			b := bytes.Clone(valid)
			page := os.Getpagesize()
			for _, off := range []int{32, page + 32} { // inside each meta page, past the page header
				b[off] ^= 0xff
			}
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "registry.db")
			if err := os.WriteFile(path, tt.content(), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := bolt.Open(path, bolt.Options{LockTimeout: 100 * time.Millisecond})
			if err == nil {
				s.Close()
				t.Fatal("Open of a corrupt file succeeded")
			}
			t.Log(err)
			if !errors.Is(err, bolt.ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "backup") {
				t.Errorf("error %q does not name the file and what to do", err)
			}
		})
	}
}

// TestOpenNewerSchema: a file written by a newer frost is refused, not misread.
func TestOpenNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	s := open(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte("99")) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if s, err := bolt.Open(path, bolt.Options{}); err == nil {
		s.Close()
		t.Fatal("Open of a newer schema succeeded")
	} else if !strings.Contains(err.Error(), "upgrade frost") {
		t.Fatalf("Open = %v, want advice to upgrade", err)
	}
}

func TestInvalidArguments(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "registry.db"))
	if _, err := bolt.Open(filepath.Join(t.TempDir(), "x.db"), bolt.Options{LockTimeout: -time.Second}); err == nil {
		t.Error("Open with a negative LockTimeout succeeded")
	}
	if _, err := s.UpdateApp(t.Context(), "", true, func(*registry.App) error { return nil }); err == nil {
		t.Error("UpdateApp with an empty name succeeded")
	}
	if _, err := s.UpdateApp(t.Context(), "app", true, func(*registry.App) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRelease(t.Context(), registry.Release{App: "app", Version: 1}); err == nil {
		t.Error("PutRelease with an empty ID succeeded")
	}
}

// validFile returns the bytes of a registry file holding one app.
func validFile(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "registry.db")
	s := open(t, path)
	if _, err := s.UpdateApp(t.Context(), "web", true, func(*registry.App) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
