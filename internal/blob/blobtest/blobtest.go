// Package blobtest is the contract suite every blob.Store must pass. A
// backend's test calls Run with a constructor:
//
//	func TestStore(t *testing.T) {
//		blobtest.Run(t, func(t *testing.T) blob.Store { … })
//	}
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/frostdev/frost/internal/blob"
)

// Run runs the contract suite. newStore must return a new, empty Store that
// shares nothing with any other it returned, and release it in t.Cleanup. It
// is called from parallel subtests, so it must be safe for concurrent use.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"DigestMismatch", testDigestMismatch},
		{"DigestMismatchOfStoredBlob", testDigestMismatchOfStoredBlob},
		{"Limit", testLimit},
		{"InvalidDigest", testInvalidDigest},
		{"Idempotent", testIdempotent},
		{"ConcurrentSameContent", testConcurrentSameContent},
		{"ConcurrentDistinctContent", testConcurrentDistinctContent},
		{"Large", testLarge},
		{"ReaderError", testReaderError},
		{"CancelledContext", testCancelledContext},
		{"CancelMidPut", testCancelMidPut},
		{"ListStopsOnError", testListStopsOnError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

// Digest returns the SHA-256 of b in the form a Store uses.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// randomBytes returns n bytes that are the same for the same seed.
func randomBytes(seed uint64, n int) []byte {
	var key [32]byte
	key[0] = byte(seed)
	key[1] = byte(seed >> 8)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

func testRoundTrip(t *testing.T, s blob.Store) {
	ctx := t.Context()
	tests := []struct {
		name     string
		data     []byte
		withWant bool
	}{
		{"empty", nil, false},
		{"empty with digest", []byte{}, true},
		{"small", []byte("hello, frost"), false},
		{"small with digest", []byte("hello, frost!"), true},
		{"one MiB binary", randomBytes(1, 1<<20), false},
		{"one MiB binary with digest", randomBytes(2, 1<<20), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Digest(tt.data)
			want := ""
			if tt.withWant {
				want = d
			}
			info, err := s.Put(ctx, want, bytes.NewReader(tt.data), 0)
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			checkInfo(t, "Put", info, d, len(tt.data))

			info, err = s.Stat(ctx, d)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			checkInfo(t, "Stat", info, d, len(tt.data))

			if got := readAll(t, s, d); !bytes.Equal(got, tt.data) {
				t.Fatalf("Open read %d bytes that differ from the %d stored", len(got), len(tt.data))
			}
			if got := list(t, s); !got[d] {
				t.Fatalf("List does not include %s", d)
			}

			if err := s.Delete(ctx, d); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := s.Stat(ctx, d); !errors.Is(err, blob.ErrNotFound) {
				t.Fatalf("Stat after Delete = %v, want ErrNotFound", err)
			}
			if _, _, err := s.Open(ctx, d); !errors.Is(err, blob.ErrNotFound) {
				t.Fatalf("Open after Delete = %v, want ErrNotFound", err)
			}
			if err := s.Delete(ctx, d); err != nil {
				t.Fatalf("Delete of a missing blob = %v, want nil", err)
			}
			if got := list(t, s); got[d] {
				t.Fatalf("List still includes deleted %s", d)
			}
		})
	}
}

func testDigestMismatch(t *testing.T, s blob.Store) {
	ctx := t.Context()
	data, other := []byte("the bytes sent"), []byte("the bytes promised")
	_, err := s.Put(ctx, Digest(other), bytes.NewReader(data), 0)
	if !errors.Is(err, blob.ErrDigestMismatch) {
		t.Fatalf("Put with the wrong digest = %v, want ErrDigestMismatch", err)
	}
	checkAbsent(t, s, Digest(data))
	checkAbsent(t, s, Digest(other))
	checkEmpty(t, s)
}

// testDigestMismatchOfStoredBlob: a store that already holds want must still
// check the bytes it is given, not just trust the digest.
func testDigestMismatchOfStoredBlob(t *testing.T, s blob.Store) {
	ctx := t.Context()
	stored, wrong := []byte("stored first"), []byte("something else")
	d := put(t, s, stored)
	_, err := s.Put(ctx, d, bytes.NewReader(wrong), 0)
	if !errors.Is(err, blob.ErrDigestMismatch) {
		t.Fatalf("Put of other bytes under a stored digest = %v, want ErrDigestMismatch", err)
	}
	if got := readAll(t, s, d); !bytes.Equal(got, stored) {
		t.Fatalf("stored blob changed to %q", got)
	}
	checkAbsent(t, s, Digest(wrong))
}

func testLimit(t *testing.T, s blob.Store) {
	data := randomBytes(3, 4096)
	tests := []struct {
		name     string
		limit    int64
		withWant bool
		tooLarge bool
	}{
		{"no limit", 0, false, false},
		{"negative means no limit", -1, false, false},
		{"exactly the size", int64(len(data)), false, false},
		{"one byte over", int64(len(data)) - 1, false, true},
		{"far over", 1, false, true},
		{"one byte over with digest", int64(len(data)) - 1, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			d := Digest(data)
			want := ""
			if tt.withWant {
				want = d
			}
			info, err := s.Put(ctx, want, bytes.NewReader(data), tt.limit)
			if tt.tooLarge {
				if !errors.Is(err, blob.ErrTooLarge) {
					t.Fatalf("Put over the limit = %v, want ErrTooLarge", err)
				}
				checkAbsent(t, s, d)
				return
			}
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			checkInfo(t, "Put", info, d, len(data))
			if err := s.Delete(ctx, d); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		})
	}
}

func testInvalidDigest(t *testing.T, s blob.Store) {
	good := Digest([]byte("x"))
	tests := []struct {
		name   string
		digest string
	}{
		{"empty", ""},
		{"upper case", strings.ToUpper(good)},
		{"short", good[:63]},
		{"long", good + "0"},
		{"not hex", strings.Repeat("z", 64)},
		{"path traversal", "../x"},
		{"path traversal padded to 64", "../../" + good[6:]},
		{"absolute path", "/" + good[1:]},
		{"slash inside", good[:2] + "/" + good[3:]},
		{"algorithm prefix", "sha256:" + good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if _, err := s.Stat(ctx, tt.digest); !errors.Is(err, blob.ErrInvalidDigest) {
				t.Errorf("Stat = %v, want ErrInvalidDigest", err)
			}
			if rc, _, err := s.Open(ctx, tt.digest); !errors.Is(err, blob.ErrInvalidDigest) {
				if err == nil {
					rc.Close()
				}
				t.Errorf("Open = %v, want ErrInvalidDigest", err)
			}
			if err := s.Delete(ctx, tt.digest); !errors.Is(err, blob.ErrInvalidDigest) {
				t.Errorf("Delete = %v, want ErrInvalidDigest", err)
			}
			if tt.digest == "" {
				return // Put takes "" to mean "no expected digest".
			}
			if _, err := s.Put(ctx, tt.digest, strings.NewReader("x"), 0); !errors.Is(err, blob.ErrInvalidDigest) {
				t.Errorf("Put = %v, want ErrInvalidDigest", err)
			}
		})
	}
	checkEmpty(t, s)
}

func testIdempotent(t *testing.T, s blob.Store) {
	ctx := t.Context()
	data := []byte("stored twice")
	d := Digest(data)
	for i, want := range []string{"", "", d, d} {
		info, err := s.Put(ctx, want, bytes.NewReader(data), 0)
		if err != nil {
			t.Fatalf("Put #%d: %v", i+1, err)
		}
		checkInfo(t, fmt.Sprintf("Put #%d", i+1), info, d, len(data))
	}
	if got := list(t, s); len(got) != 1 {
		t.Fatalf("List has %d blobs after storing one four times, want 1", len(got))
	}
	if got := readAll(t, s, d); !bytes.Equal(got, data) {
		t.Fatalf("read %q, want %q", got, data)
	}
}

func testConcurrentSameContent(t *testing.T, s blob.Store) {
	ctx := t.Context()
	data := randomBytes(4, 256<<10)
	d := Digest(data)
	const n = 24
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			want := ""
			if i%2 == 0 {
				want = d
			}
			info, err := s.Put(ctx, want, bytes.NewReader(data), 0)
			if err == nil && (info.Digest != d || info.Size != int64(len(data))) {
				err = fmt.Errorf("Info = %+v", info)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Put #%d: %v", i, err)
		}
	}
	if got := readAll(t, s, d); !bytes.Equal(got, data) {
		t.Fatal("concurrently stored blob reads back different bytes")
	}
	if got := list(t, s); len(got) != 1 {
		t.Fatalf("List has %d blobs, want 1", len(got))
	}
}

func testConcurrentDistinctContent(t *testing.T, s blob.Store) {
	ctx := t.Context()
	const n = 32
	var wg sync.WaitGroup
	errs := make([]error, n)
	want := make(map[string]bool)
	for i := range n {
		data := randomBytes(uint64(100+i), 1000+i)
		want[Digest(data)] = true
		wg.Go(func() {
			_, errs[i] = s.Put(ctx, "", bytes.NewReader(data), 0)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Put #%d: %v", i, err)
		}
	}
	got := list(t, s)
	for d := range want {
		if !got[d] {
			t.Errorf("List misses %s", d)
		}
	}
	if len(got) != n {
		t.Errorf("List has %d blobs, want %d", len(got), n)
	}
}

// testLarge streams 32 MiB in and out without holding it in memory.
func testLarge(t *testing.T, s blob.Store) {
	ctx := t.Context()
	const size = 32 << 20
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{5}), size), h)
	info, err := s.Put(ctx, "", src, size)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	d := hex.EncodeToString(h.Sum(nil))
	checkInfo(t, "Put", info, d, size)

	rc, info, err := s.Open(ctx, d)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer rc.Close()
	checkInfo(t, "Open", info, d, size)
	h.Reset()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if n != size || hex.EncodeToString(h.Sum(nil)) != d {
		t.Fatalf("read %d bytes hashing to %x, want %d bytes hashing to %s", n, h.Sum(nil), size, d)
	}
}

func testReaderError(t *testing.T, s blob.Store) {
	boom := errors.New("client went away")
	r := io.MultiReader(bytes.NewReader(randomBytes(6, 64<<10)), errReader{boom})
	if _, err := s.Put(t.Context(), "", r, 0); !errors.Is(err, boom) {
		t.Fatalf("Put = %v, want the reader's error", err)
	}
	checkEmpty(t, s)
}

func testCancelledContext(t *testing.T, s blob.Store) {
	d := put(t, s, []byte("already here"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	fresh := []byte("never stored")
	tests := []struct {
		name string
		call func() error
	}{
		{"Put", func() error { _, err := s.Put(ctx, "", bytes.NewReader(fresh), 0); return err }},
		{"Stat", func() error { _, err := s.Stat(ctx, d); return err }},
		{"Open", func() error {
			rc, _, err := s.Open(ctx, d)
			if err == nil {
				rc.Close()
			}
			return err
		}},
		{"Delete", func() error { return s.Delete(ctx, d) }},
		{"List", func() error { return s.List(ctx, func(blob.Info) error { return nil }) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, context.Canceled) {
				t.Fatalf("%s with a cancelled context = %v, want context.Canceled", tt.name, err)
			}
		})
	}
	checkAbsent(t, s, Digest(fresh))
}

// testCancelMidPut cancels the context after the first MiB of a Put.
func testCancelMidPut(t *testing.T, s blob.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const size, cancelAt = 16 << 20, 1 << 20
	h := sha256.New()
	r := &cancelingReader{
		r:      io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{7}), size), h),
		after:  cancelAt,
		cancel: cancel,
	}
	_, err := s.Put(ctx, "", r, 0)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put cancelled midway = %v, want context.Canceled", err)
	}
	if r.n >= size {
		t.Errorf("Put read all %d bytes after the context was cancelled at %d", r.n, cancelAt)
	}
	checkEmpty(t, s)
}

func testListStopsOnError(t *testing.T, s blob.Store) {
	for i := range 3 {
		put(t, s, []byte{byte(i)})
	}
	stop := errors.New("stop")
	calls := 0
	err := s.List(t.Context(), func(blob.Info) error { calls++; return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("List = %v, want fn's error", err)
	}
	if calls != 1 {
		t.Fatalf("List called fn %d times after it failed, want 1", calls)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// cancelingReader calls cancel once more than after bytes were read, and
// keeps supplying bytes so a Store that ignores ctx is caught rather than hung.
type cancelingReader struct {
	r      io.Reader
	after  int
	cancel context.CancelFunc
	n      int
}

func (c *cancelingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if c.n > c.after {
		c.cancel()
	}
	return n, err
}

func put(t *testing.T, s blob.Store, data []byte) string {
	t.Helper()
	info, err := s.Put(t.Context(), "", bytes.NewReader(data), 0)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	return info.Digest
}

func readAll(t *testing.T, s blob.Store, d string) []byte {
	t.Helper()
	rc, info, err := s.Open(t.Context(), d)
	if err != nil {
		t.Fatalf("Open(%s): %v", d, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", d, err)
	}
	checkInfo(t, "Open", info, d, len(b))
	return b
}

func list(t *testing.T, s blob.Store) map[string]bool {
	t.Helper()
	got := make(map[string]bool)
	err := s.List(t.Context(), func(info blob.Info) error {
		if got[info.Digest] {
			return fmt.Errorf("List reported %s twice", info.Digest)
		}
		if err := blob.ValidateDigest(info.Digest); err != nil {
			return fmt.Errorf("List reported %v", err)
		}
		got[info.Digest] = true
		return nil
	})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return got
}

func checkInfo[N int | int64](t *testing.T, op string, info blob.Info, digest string, size N) {
	t.Helper()
	if info.Digest != digest || info.Size != int64(size) {
		t.Fatalf("%s Info = {Digest: %s, Size: %d}, want {Digest: %s, Size: %d}", op, info.Digest, info.Size, digest, size)
	}
	if info.ModTime.IsZero() {
		t.Fatalf("%s Info has a zero ModTime", op)
	}
}

func checkAbsent(t *testing.T, s blob.Store, d string) {
	t.Helper()
	if _, err := s.Stat(t.Context(), d); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat(%s) = %v, want ErrNotFound: a failed Put stored something", d, err)
	}
}

func checkEmpty(t *testing.T, s blob.Store) {
	t.Helper()
	if got := list(t, s); len(got) != 0 {
		t.Fatalf("List has %d blobs, want none: a failed Put stored something", len(got))
	}
}
