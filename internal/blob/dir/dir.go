// Package dir is the single-machine blob.Store: every blob is a file in a
// local directory, named by its SHA-256.
//
// Layout under the root:
//
//	sha256/ab/abcdef…   a blob, named by its full digest, under its first two hex digits
//	tmp/put-*           a Put in progress; removed by New after a crash
//
// A Put streams into a file in tmp/ (on the same file system as sha256/, so
// the final rename is atomic), fsyncs it, renames it into place and fsyncs
// the directory, so after a crash a blob is either whole or absent. Only one
// Store (one process) may use a root at a time: New removes whatever it
// finds in tmp/.
package dir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/frostdev/frost/internal/blob"
)

var _ blob.Store = (*Store)(nil)

// Store is a blob.Store in a local directory. It is safe for concurrent use.
type Store struct {
	root string // holds sha256/ and tmp/
}

// New opens (creating if needed) the store rooted at root, and removes
// temporary files left by a Put that was interrupted by a crash.
func New(root string) (*Store, error) {
	if root == "" {
		return nil, errors.New("blob dir: empty root")
	}
	s := &Store{root: root}
	for _, d := range []string{root, s.blobDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("blob dir: %w", err)
		}
	}
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return nil, fmt.Errorf("blob dir: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.tmpDir(), e.Name())); err != nil {
			return nil, fmt.Errorf("blob dir: remove stale temporary file: %w", err)
		}
	}
	return s, nil
}

// Path returns the file that holds (or would hold) the blob with the given
// digest, or "" if the digest is invalid. Callers that need a local path
// (to mmap a module, say) must treat the file as read-only and must not
// trust its contents without verifying them; Open does that for them.
func (s *Store) Path(digest string) string {
	if blob.ValidateDigest(digest) != nil {
		return ""
	}
	return filepath.Join(s.blobDir(), digest[:2], digest)
}

func (s *Store) blobDir() string { return filepath.Join(s.root, "sha256") }
func (s *Store) tmpDir() string  { return filepath.Join(s.root, "tmp") }

// Put implements blob.Store. It reads r to the end (or the limit) even when
// the blob is already stored, because it must check that r hashes to want;
// it does not rewrite a stored blob. It checks ctx between reads of r, but
// cannot interrupt a Read that blocks.
func (s *Store) Put(ctx context.Context, want string, r io.Reader, limit int64) (blob.Info, error) {
	if want != "" {
		if err := blob.ValidateDigest(want); err != nil {
			return blob.Info{}, fmt.Errorf("put blob: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, fmt.Errorf("put blob: %w", err)
	}
	if want != "" {
		if info, err := s.stat(want); err == nil {
			// Already stored: confirm the caller's bytes, store nothing.
			if _, err := s.hash(ctx, io.Discard, r, want, limit); err != nil {
				return blob.Info{}, err
			}
			return info, nil
		}
	}

	f, err := os.CreateTemp(s.tmpDir(), "put-*")
	if err != nil {
		return blob.Info{}, fmt.Errorf("put blob: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if tmp != "" {
			os.Remove(tmp)
		}
	}()

	d, err := s.hash(ctx, f, r, want, limit)
	if err != nil {
		return blob.Info{}, err
	}
	if err := f.Sync(); err != nil {
		return blob.Info{}, fmt.Errorf("put blob %s: %w", d, err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return blob.Info{}, fmt.Errorf("put blob %s: %w", d, err)
	}
	if info, err := s.stat(d); err == nil {
		return info, nil // stored meanwhile, or before with want == ""
	}

	dst := s.Path(d)
	switch err := os.Mkdir(filepath.Dir(dst), 0o700); {
	case err == nil:
		if err := syncDir(s.blobDir()); err != nil {
			return blob.Info{}, fmt.Errorf("put blob %s: %w", d, err)
		}
	case !errors.Is(err, fs.ErrExist):
		return blob.Info{}, fmt.Errorf("put blob %s: %w", d, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return blob.Info{}, fmt.Errorf("put blob %s: %w", d, err)
	}
	tmp = ""
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return blob.Info{}, fmt.Errorf("put blob %s: %w", d, err)
	}
	return s.stat(d)
}

// hash copies r to w, checking ctx and limit as it goes, and returns the
// digest of what it copied, which must equal want unless want is "".
func (s *Store) hash(ctx context.Context, w io.Writer, r io.Reader, want string, limit int64) (string, error) {
	max := int64(math.MaxInt64)
	if limit > 0 && limit < math.MaxInt64 {
		max = limit + 1 // one byte more, to see that there is more
	}
	h := sha256.New()
	buf := make([]byte, 128<<10)
	n, err := io.CopyBuffer(io.MultiWriter(w, h), io.LimitReader(ctxReader{ctx, r}, max), buf)
	if err != nil {
		return "", fmt.Errorf("put blob: %w", err)
	}
	if limit > 0 && n > limit {
		return "", fmt.Errorf("put blob: more than %d bytes: %w", limit, blob.ErrTooLarge)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if want != "" && got != want {
		return "", fmt.Errorf("put blob: got sha256 %s, want %s: %w", got, want, blob.ErrDigestMismatch)
	}
	return got, nil
}

// Open implements blob.Store. ctx governs only the opening; the reader is
// not tied to it. The reader fails with blob.ErrDigestMismatch at EOF if the
// file's bytes do not hash to digest; a caller that stops early gets no check.
func (s *Store) Open(ctx context.Context, digest string) (io.ReadCloser, blob.Info, error) {
	if err := blob.ValidateDigest(digest); err != nil {
		return nil, blob.Info{}, fmt.Errorf("open blob: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, blob.Info{}, fmt.Errorf("open blob %s: %w", digest, err)
	}
	f, err := os.Open(s.Path(digest))
	if err != nil {
		return nil, blob.Info{}, fmt.Errorf("open blob %s: %w", digest, notFound(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, blob.Info{}, fmt.Errorf("open blob %s: %w", digest, err)
	}
	return &verifyingReader{f: f, h: sha256.New(), want: digest}, info(digest, fi), nil
}

// Stat implements blob.Store. It does not read or verify the blob's bytes.
func (s *Store) Stat(ctx context.Context, digest string) (blob.Info, error) {
	if err := blob.ValidateDigest(digest); err != nil {
		return blob.Info{}, fmt.Errorf("stat blob: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, fmt.Errorf("stat blob %s: %w", digest, err)
	}
	return s.stat(digest)
}

func (s *Store) stat(digest string) (blob.Info, error) {
	fi, err := os.Stat(s.Path(digest))
	if err != nil {
		return blob.Info{}, fmt.Errorf("stat blob %s: %w", digest, notFound(err))
	}
	if !fi.Mode().IsRegular() {
		return blob.Info{}, fmt.Errorf("stat blob %s: %s is not a regular file", digest, s.Path(digest))
	}
	return info(digest, fi), nil
}

// Delete implements blob.Store. A reader already open keeps reading the
// deleted blob. The deletion is not fsynced: after a crash the blob may be
// back, which is harmless for content-addressed data.
func (s *Store) Delete(ctx context.Context, digest string) error {
	if err := blob.ValidateDigest(digest); err != nil {
		return fmt.Errorf("delete blob: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete blob %s: %w", digest, err)
	}
	if err := os.Remove(s.Path(digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", digest, err)
	}
	return nil
}

// List implements blob.Store. Files under sha256/ that are not named like a
// blob in the right place are skipped. Blobs stored or deleted while List
// runs may or may not be reported.
func (s *Store) List(ctx context.Context, fn func(blob.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list blobs: %w", err)
	}
	prefixes, err := os.ReadDir(s.blobDir())
	if err != nil {
		return fmt.Errorf("list blobs: %w", err)
	}
	for _, p := range prefixes {
		if !p.IsDir() || len(p.Name()) != 2 {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(s.blobDir(), p.Name()))
		if err != nil {
			return fmt.Errorf("list blobs: %w", err)
		}
		for _, e := range entries {
			d := e.Name()
			if !e.Type().IsRegular() || blob.ValidateDigest(d) != nil || d[:2] != p.Name() {
				continue
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("list blobs: %w", err)
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted meanwhile
			}
			if err != nil {
				return fmt.Errorf("list blobs: %w", err)
			}
			if err := fn(info(d, fi)); err != nil {
				return err
			}
		}
	}
	return nil
}

func info(digest string, fi fs.FileInfo) blob.Info {
	return blob.Info{Digest: digest, Size: fi.Size(), ModTime: fi.ModTime()}
}

// notFound maps a missing file to blob.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return blob.ErrNotFound
	}
	return err
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// verifyingReader hashes a blob file as it is read and turns EOF into
// blob.ErrDigestMismatch if the hash is not the blob's digest. It is not safe
// for concurrent use.
type verifyingReader struct {
	f    *os.File
	h    hash.Hash
	want string
	err  error // sticky: io.EOF or the mismatch
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			err = fmt.Errorf("read blob %s: bytes on disk hash to %s: %w", v.want, got, blob.ErrDigestMismatch)
		}
		v.err = err
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.f.Close() }
