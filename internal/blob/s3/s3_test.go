package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/frostdev/frost/internal/blob"
	"github.com/frostdev/frost/internal/blob/blobtest"
	"github.com/frostdev/frost/internal/blob/s3"
	"github.com/frostdev/frost/internal/tests3"
)

// TestStore runs the contract suite against a real versitygw, every store
// under its own prefix of one bucket.
func TestStore(t *testing.T) {
	srv := tests3.Start(t)
	var n atomic.Int64
	blobtest.Run(t, func(t *testing.T) blob.Store {
		return newStore(t, srv, fmt.Sprintf("suite/%d", n.Add(1)), nil)
	})
}

func newStore(t *testing.T, srv tests3.Server, prefix string, edit func(*s3.Options)) *s3.Store {
	t.Helper()
	opts := s3.Options{
		Endpoint:  srv.Endpoint,
		Bucket:    srv.Bucket,
		Prefix:    prefix,
		Region:    srv.Region,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
	}
	if edit != nil {
		edit(&opts)
	}
	s, err := s3.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	return s
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

func put(t *testing.T, s blob.Store, want string, data []byte) blob.Info {
	t.Helper()
	info, err := s.Put(t.Context(), want, bytes.NewReader(data), 0)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if d := blobtest.Digest(data); info.Digest != d || info.Size != int64(len(data)) {
		t.Fatalf("Put Info = %+v, want digest %s, size %d", info, d, len(data))
	}
	return info
}

func readAll(t *testing.T, s blob.Store, d string) ([]byte, error) {
	t.Helper()
	rc, _, err := s.Open(t.Context(), d)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// keys lists every object and incomplete upload in the bucket.
func keys(t *testing.T, srv tests3.Server) (objects, uploads []string) {
	t.Helper()
	c := srv.Client(t)
	for oi := range c.ListObjectsIter(t.Context(), srv.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if oi.Err != nil {
			t.Fatalf("list objects: %v", oi.Err)
		}
		objects = append(objects, oi.Key)
	}
	for u := range c.ListIncompleteUploads(t.Context(), srv.Bucket, "", true) {
		if u.Err != nil {
			t.Fatalf("list uploads: %v", u.Err)
		}
		uploads = append(uploads, u.Key)
	}
	return objects, uploads
}

// TestLayout: blobs are sha256/<digest> under the prefix, and nothing else
// is left in the bucket by successful or failed Puts, small or multipart.
func TestLayout(t *testing.T) {
	small, large := []byte("layout"), randomBytes(1, 6<<20)
	tests := []struct {
		name, prefix, want string
	}{
		{"bucket root", "", ""},
		{"prefix without slash", "a/b", "a/b/"},
		{"prefix with slash", "c/", "c/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tests3.Start(t)
			s := newStore(t, srv, tt.prefix, func(o *s3.Options) { o.PartSize = s3.MinPartSize })
			put(t, s, "", small)
			put(t, s, "", large) // two parts, through tmp/
			ctx := t.Context()
			if _, err := s.Put(ctx, blobtest.Digest([]byte("other")), bytes.NewReader(large), 0); !errors.Is(err, blob.ErrDigestMismatch) {
				t.Fatalf("Put with a wrong digest = %v, want ErrDigestMismatch", err)
			}
			if _, err := s.Put(ctx, "", bytes.NewReader(large), int64(len(large)-1)); !errors.Is(err, blob.ErrTooLarge) {
				t.Fatalf("Put over the limit = %v, want ErrTooLarge", err)
			}
			objects, uploads := keys(t, srv)
			want := []string{tt.want + "sha256/" + blobtest.Digest(small), tt.want + "sha256/" + blobtest.Digest(large)}
			if strings.Compare(want[0], want[1]) > 0 {
				want[0], want[1] = want[1], want[0]
			}
			if fmt.Sprint(objects) != fmt.Sprint(want) {
				t.Errorf("objects %q, want %q", objects, want)
			}
			if len(uploads) != 0 {
				t.Errorf("incomplete uploads left: %q", uploads)
			}
		})
	}
}

// TestMultipart: blobs larger than a part round-trip with and without the
// digest given, and a wrong digest or the limit fails in a later part.
func TestMultipart(t *testing.T) {
	srv := tests3.Start(t)
	s := newStore(t, srv, "", nil) // 16 MiB parts
	data := randomBytes(2, 20<<20)
	d := blobtest.Digest(data)
	ctx := t.Context()

	if _, err := s.Put(ctx, blobtest.Digest(data[1:]), bytes.NewReader(data), 0); !errors.Is(err, blob.ErrDigestMismatch) {
		t.Fatalf("Put with a wrong digest = %v, want ErrDigestMismatch", err)
	}
	if _, err := s.Put(ctx, d, bytes.NewReader(data), 18<<20); !errors.Is(err, blob.ErrTooLarge) {
		t.Fatalf("Put over the limit = %v, want ErrTooLarge", err)
	}
	if _, err := s.Stat(ctx, d); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat after failed Puts = %v, want ErrNotFound", err)
	}

	for _, want := range []string{d, "", d} { // straight to its key, then stored already twice
		put(t, s, want, data)
		got, err := readAll(t, s, d)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, %v; want the %d stored", len(got), err, len(data))
		}
	}
	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	put(t, s, "", data) // through tmp/
	if got, err := readAll(t, s, d); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v; want the %d stored", len(got), err, len(data))
	}
	objects, uploads := keys(t, srv)
	if len(objects) != 1 || len(uploads) != 0 {
		t.Fatalf("bucket holds objects %q and uploads %q, want only sha256/%s", objects, uploads, d)
	}
}

// failingReader returns its bytes up to n, then fails.
type failingReader struct {
	r io.Reader
	n int64
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("reader broke")
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}

// TestResume: a large Put that fails part way leaves its upload, and the
// next Put of the same digest sends only the parts it lacks; a Put whose
// bytes differ in a kept part's place sends that part again; a Put whose
// bytes are wrong leaves nothing behind.
func TestResume(t *testing.T) {
	srv := tests3.Start(t)
	s := newStore(t, srv, "", func(o *s3.Options) { o.PartSize = s3.MinPartSize })
	const part = s3.MinPartSize
	data := randomBytes(3, 7*part+1234)
	d := blobtest.Digest(data)
	ctx := t.Context()

	// Fails while reading part 4: parts 1 to 3 are uploaded and kept.
	if _, err := s.Put(ctx, d, &failingReader{r: bytes.NewReader(data), n: 3*part + 100}, 0); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	if _, uploads := keys(t, srv); len(uploads) != 1 {
		t.Fatalf("after a failed Put the bucket holds uploads %q, want the one to resume", uploads)
	}
	put(t, s, d, data)
	if got := s.Stats().ResumedParts; got != 3 {
		t.Errorf("resumed %d parts, want 3", got)
	}
	if got, err := readAll(t, s, d); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v; want the %d stored", len(got), err, len(data))
	}
	if objects, uploads := keys(t, srv); len(objects) != 1 || len(uploads) != 0 {
		t.Fatalf("bucket holds objects %q and uploads %q, want only the blob", objects, uploads)
	}

	// An interrupted upload of other bytes claiming the same digest: its
	// parts do not match and are sent again; the result is still right.
	other := randomBytes(4, 7*part+1234)
	o := blobtest.Digest(other)
	bad := append([]byte(nil), other...)
	bad[part+7] ^= 1 // part 2 differs
	if _, err := s.Put(ctx, o, &failingReader{r: bytes.NewReader(bad), n: 3*part + 100}, 0); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	before := s.Stats().ResumedParts
	put(t, s, o, other)
	if got := s.Stats().ResumedParts - before; got != 2 {
		t.Errorf("resumed %d parts of a damaged upload, want 2 (parts 1 and 3)", got)
	}
	if got, err := readAll(t, s, o); err != nil || !bytes.Equal(got, other) {
		t.Fatalf("read %d bytes, %v; want the %d stored", len(got), err, len(other))
	}

	// Wrong bytes to the end: refused, and the upload is dropped.
	third := randomBytes(5, 3*part)
	if _, err := s.Put(ctx, blobtest.Digest(third), bytes.NewReader(third[1:]), 0); !errors.Is(err, blob.ErrDigestMismatch) {
		t.Fatalf("Put of wrong bytes = %v, want ErrDigestMismatch", err)
	}
	if _, uploads := keys(t, srv); len(uploads) != 0 {
		t.Fatalf("a refused Put left uploads %q", uploads)
	}
}

// TestOpenDetectsDamage overwrites a stored object behind the store's back
// and expects the reader to fail at EOF rather than hand out wrong bytes.
func TestOpenDetectsDamage(t *testing.T) {
	srv := tests3.Start(t)
	c := srv.Client(t)
	data := bytes.Repeat([]byte("frost snapshot page "), 1000)
	tests := []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"first byte flipped", func(b []byte) []byte { b[0] ^= 0x01; return b }},
		{"last byte flipped", func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-100] }},
		{"emptied", func(b []byte) []byte { return nil }},
		{"extended", func(b []byte) []byte { return append(b, 0) }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := fmt.Sprintf("damage/%d/", i)
			s := newStore(t, srv, prefix, nil)
			d := put(t, s, "", data).Digest
			bad := tt.damage(bytes.Clone(data))
			if _, err := c.PutObject(t.Context(), srv.Bucket, prefix+"sha256/"+d, bytes.NewReader(bad), int64(len(bad)), minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}

			rc, _, err := s.Open(t.Context(), d)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer rc.Close()
			if _, err = io.ReadAll(rc); !errors.Is(err, blob.ErrDigestMismatch) {
				t.Fatalf("reading a damaged blob = %v, want ErrDigestMismatch", err)
			}
			if _, err := rc.Read(make([]byte, 1)); !errors.Is(err, blob.ErrDigestMismatch) {
				t.Fatalf("Read after the mismatch = %v, want ErrDigestMismatch again", err)
			}
			// A Put of other bytes under the digest is checked against
			// the caller's bytes, not the damaged object.
			if _, err := s.Put(t.Context(), d, bytes.NewReader([]byte("wrong")), 0); !errors.Is(err, blob.ErrDigestMismatch) {
				t.Fatalf("Put of wrong bytes = %v, want ErrDigestMismatch", err)
			}
		})
	}
}

// TestServerDown: with S3 stopped every call fails within the retry
// timeout with ErrUnavailable, naming the endpoint; after a restart the
// same store works again.
func TestServerDown(t *testing.T) {
	srv := tests3.Start(t)
	const timeout = 500 * time.Millisecond
	s := newStore(t, srv, "", func(o *s3.Options) { o.RetryTimeout = timeout })
	stored := put(t, s, "", []byte("stored before the outage")).Digest
	fresh := []byte("stored after the outage")

	srv.Stop()
	ctx := t.Context()
	tests := []struct {
		name string
		call func() error
	}{
		{"Put", func() error { _, err := s.Put(ctx, "", bytes.NewReader(fresh), 0); return err }},
		{"Put with digest", func() error {
			_, err := s.Put(ctx, blobtest.Digest(fresh), bytes.NewReader(fresh), 0)
			return err
		}},
		{"Stat", func() error { _, err := s.Stat(ctx, stored); return err }},
		{"Open", func() error {
			rc, _, err := s.Open(ctx, stored)
			if err == nil {
				rc.Close()
			}
			return err
		}},
		{"Delete", func() error { return s.Delete(ctx, stored) }},
		{"List", func() error { return s.List(ctx, func(blob.Info) error { return nil }) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := tt.call()
			took := time.Since(start)
			if !errors.Is(err, s3.ErrUnavailable) || !strings.Contains(err.Error(), srv.Endpoint) {
				t.Fatalf("%s with S3 down = %v, want ErrUnavailable naming %s", tt.name, err, srv.Endpoint)
			}
			if took > timeout+time.Second {
				t.Fatalf("%s with S3 down took %v, want at most about %v", tt.name, took, timeout)
			}
			t.Logf("after %v: %v", took.Round(time.Millisecond), err)
		})
	}

	// A cancelled call stops retrying at once.
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := s.Stat(cctx, stored); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stat with a context that expires while S3 is down = %v, want DeadlineExceeded", err)
	}

	srv.Restart()
	if _, err := s.Stat(ctx, stored); err != nil {
		t.Fatalf("Stat after restart: %v", err)
	}
	d := put(t, s, "", fresh).Digest
	if got, err := readAll(t, s, d); err != nil || !bytes.Equal(got, fresh) {
		t.Fatalf("read %q, %v after restart; want %q", got, err, fresh)
	}
}

// TestServerBriefOutage: a call made while S3 restarts waits for it.
func TestServerBriefOutage(t *testing.T) {
	srv := tests3.Start(t)
	s := newStore(t, srv, "", func(o *s3.Options) { o.RetryTimeout = 20 * time.Second })
	d := put(t, s, "", []byte("outlives the outage")).Digest
	srv.Stop()
	done := make(chan error, 1)
	go func() { _, err := s.Stat(t.Context(), d); done <- err }()
	time.Sleep(300 * time.Millisecond)
	srv.Restart()
	if err := <-done; err != nil {
		t.Fatalf("Stat across a restart: %v", err)
	}
}

// TestReadResumes kills S3 in the middle of a read and restarts it; the
// reader picks up where it stopped, and the bytes still verify.
func TestReadResumes(t *testing.T) {
	srv := tests3.Start(t)
	logs := &recorder{}
	s := newStore(t, srv, "", func(o *s3.Options) {
		o.RetryTimeout = 20 * time.Second
		o.Logger = slog.New(logs)
	})
	data := randomBytes(3, 24<<20)
	d := put(t, s, "", data).Digest

	rc, _, err := s.Open(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, rc, 1<<20); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	srv.Restart()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("read across a restart after %d bytes: %v", 1<<20+n, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d || n != int64(len(data))-1<<20 {
		t.Fatalf("read %d bytes hashing to %s, want %d hashing to %s", 1<<20+n, got, len(data), d)
	}
	if logs.count("blob s3: resuming read") == 0 {
		t.Fatal("the read did not resume: the test did not cut it off")
	}
}

// recorder is a slog.Handler that keeps the messages it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}

func (r *recorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

func TestNewErrors(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	ok := s3.Options{Endpoint: "127.0.0.1:9", Bucket: "b", AccessKey: "a", SecretKey: "s"}
	tests := []struct {
		name string
		edit func(*s3.Options)
		want string
	}{
		{"no endpoint", func(o *s3.Options) { o.Endpoint = "" }, "no endpoint"},
		{"endpoint with scheme", func(o *s3.Options) { o.Endpoint = "https://s3.example.com" }, "without a scheme"},
		{"no bucket", func(o *s3.Options) { o.Bucket = "" }, "no bucket"},
		{"no credentials", func(o *s3.Options) { o.AccessKey, o.SecretKey = "", "" }, "AWS_ACCESS_KEY_ID"},
		{"part too small", func(o *s3.Options) { o.PartSize = 1 << 20 }, "part size"},
		{"absolute prefix", func(o *s3.Options) { o.Prefix = "/x" }, "prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.edit(&o)
			if _, err := s3.New(o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error saying %q", err, tt.want)
			}
		})
	}
	t.Run("credentials from the environment", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "a")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
		o := ok
		o.AccessKey, o.SecretKey = "", ""
		if _, err := s3.New(o); err != nil {
			t.Fatalf("New: %v", err)
		}
	})
}

func TestCheckMissingBucket(t *testing.T) {
	srv := tests3.Start(t)
	s, err := s3.New(s3.Options{Endpoint: srv.Endpoint, Bucket: "no-such-bucket", Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Check = %v, want an error saying the bucket does not exist", err)
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want s3.Options
		err  string
	}{
		{in: "http://127.0.0.1:7070/frost", want: s3.Options{Endpoint: "127.0.0.1:7070", Bucket: "frost"}},
		{in: "https://s3.eu-west-1.amazonaws.com/b/prod/frost/?region=eu-west-1",
			want: s3.Options{Endpoint: "s3.eu-west-1.amazonaws.com", Secure: true, Bucket: "b", Prefix: "prod/frost", Region: "eu-west-1"}},
		{in: "s3://bucket", err: "want http[s]://"},
		{in: "http://host:1/", err: "no bucket"},
		{in: "http://key:secret@host/b", err: "want http[s]://"},
		{in: "http://host/b?acl=1", err: `unknown parameter "acl"`},
	} {
		got, err := s3.ParseURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseURL(%q) = %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// TestRefs: a reference round-trips, is replaced, deleted, and stays out
// of List.
func TestRefs(t *testing.T) {
	srv := tests3.Start(t)
	s := newStore(t, srv, "p", nil)
	ctx := t.Context()
	a, b := blobtest.Digest([]byte("a")), blobtest.Digest([]byte("b"))
	if _, err := s.GetRef(ctx, "zstd-x"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("GetRef of a missing ref = %v, want ErrNotFound", err)
	}
	for _, d := range []string{a, b} {
		if err := s.PutRef(ctx, "zstd-x", d); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetRef(ctx, "zstd-x"); err != nil || got != d {
			t.Fatalf("GetRef = %q, %v; want %s", got, err, d)
		}
	}
	if err := s.List(ctx, func(info blob.Info) error { return fmt.Errorf("List shows %+v", info) }); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRef(ctx, "zstd-x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRef(ctx, "zstd-x"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("GetRef after DeleteRef = %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"", "../x", "A", ".hidden", strings.Repeat("x", 201)} {
		if err := s.PutRef(ctx, bad, a); err == nil {
			t.Errorf("PutRef(%q) accepted a bad name", bad)
		}
	}
	if err := s.PutRef(ctx, "x", "nothex"); !errors.Is(err, blob.ErrInvalidDigest) {
		t.Errorf("PutRef of a bad digest = %v, want ErrInvalidDigest", err)
	}
}
