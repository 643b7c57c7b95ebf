// Package blob defines Frost's content-addressed blob store: modules and
// snapshot parts stored under their SHA-256. The single-machine
// implementation is dir (a local directory); a cluster adds S3 with a local
// cache. Every implementation passes the suite in blobtest.
package blob

import (
	"context"
	"errors"
	"io"
	"time"
)

// Errors every Store returns, checked with errors.Is.
var (
	// ErrNotFound: no blob has that digest.
	ErrNotFound = errors.New("blob not found")
	// ErrDigestMismatch: the bytes do not hash to the digest they were stored or read under.
	ErrDigestMismatch = errors.New("blob digest mismatch")
	// ErrTooLarge: the blob is larger than the caller's limit.
	ErrTooLarge = errors.New("blob too large")
	// ErrInvalidDigest: the digest is not 64 lower-case hex characters.
	ErrInvalidDigest = errors.New("invalid blob digest")
)

// Info describes a stored blob.
type Info struct {
	Digest  string    // SHA-256, 64 lower-case hex characters
	Size    int64     // bytes
	ModTime time.Time // when it was stored
}

// Store is a content-addressed blob store. Implementations are safe for
// concurrent use; writes are atomic (a reader never sees a partial blob, a
// crash leaves either the whole blob or none).
type Store interface {
	// Put stores r's bytes, hashing them as they stream, and returns their Info.
	// If want is not "", the hash must equal it or nothing is stored and the
	// error is ErrDigestMismatch. If more than limit bytes arrive (limit > 0)
	// nothing is stored and the error is ErrTooLarge. Storing an existing blob
	// again is cheap and not an error.
	Put(ctx context.Context, want string, r io.Reader, limit int64) (Info, error)
	// Open returns a reader of the blob's bytes. The reader verifies the hash
	// as it reads: a blob altered on disk fails with ErrDigestMismatch at EOF.
	Open(ctx context.Context, digest string) (io.ReadCloser, Info, error)
	// Stat returns the blob's Info or ErrNotFound.
	Stat(ctx context.Context, digest string) (Info, error)
	// Delete removes the blob; deleting a missing blob is not an error.
	Delete(ctx context.Context, digest string) error
	// List calls fn for every blob, in no particular order, until fn errs.
	List(ctx context.Context, fn func(Info) error) error
}
