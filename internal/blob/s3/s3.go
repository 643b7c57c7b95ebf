// Package s3 is a blob.Store in an S3-compatible object store (AWS S3,
// MinIO, versitygw, …), the storage a cluster's nodes share releases and
// snapshots through.
//
// Layout in the bucket, under Options.Prefix:
//
//	sha256/<digest>   a blob, named by its SHA-256 in lower-case hex
//	tmp/<random>      a large Put without an expected digest, in progress
//	refs/<name>       a reference: the 64 hex characters of a blob's digest
//	                  (PutRef, GetRef, DeleteRef)
//
// # No wrong bytes under a digest
//
// An object appears under sha256/<digest> only once its bytes are known to
// hash to digest:
//
//   - A body of at most PartSize bytes is read into memory and hashed first,
//     then sent in one PutObject signed with its SHA-256 as the payload hash
//     (x-amz-content-sha256), so the server, too, refuses bytes that
//     changed on the way.
//   - A larger body whose digest the caller gave (want) goes up as a
//     multipart upload straight to sha256/<want>, hashed as it streams, each
//     part signed with its own SHA-256. The upload is completed only if the
//     whole hash matches, and aborted otherwise; until it is completed it is
//     invisible.
//   - A larger body without want goes up as a multipart upload to
//     tmp/<random>. Once it is complete and its digest known, it is copied
//     server side to sha256/<digest>, and the temporary object deleted.
//
// A Put holds at most one part (PartSize bytes) in memory; a small blob only
// what it needs. A Put interrupted by a crash may leave an incomplete
// multipart upload or an object under tmp/; neither is ever seen by Stat,
// Open or List.
//
// # Resuming
//
// A large Put with want that fails for any reason but wrong bytes (S3
// gone for longer than RetryTimeout, ctx done, the reader failing) leaves
// its multipart upload in place. The next Put of the same digest finds it
// (ListMultipartUploads on the key, then ListParts) and sends only the
// parts it lacks: a part already uploaded is kept when its size and its
// ETag, the MD5 of its bytes, match the part the new Put read at that
// number. Every byte is still read and hashed, and the upload is completed
// only if the whole blob hashes to want. Stats().ResumedParts counts the
// parts kept. The store does not sweep them itself, since other processes
// share the bucket and their Puts may be in flight: give the bucket a
// lifecycle rule that aborts incomplete multipart uploads and expires tmp/
// after a day.
//
// # Retries
//
// Every request is retried on transient errors (network errors such as a
// refused or reset connection or a timeout, HTTP 5xx, 408 and 429, and S3's
// SlowDown, RequestTimeout and InternalError codes) with jittered
// exponential backoff, until it succeeds, fails otherwise, its context is
// done, or RetryTimeout has passed since its first attempt; then the error
// wraps ErrUnavailable. minio-go's own retries are off, so that bound is
// ours. Retrying is safe because every request is idempotent or made so:
// HEAD, GET and LIST only read; DELETE of a key is idempotent; a PutObject
// or an upload part sends the same bytes (held in memory) to the same key
// or part number, replacing the earlier attempt's; a server-side copy from
// the same source to the same key likewise. Two requests are not
// idempotent: starting a multipart upload (a retry after a lost answer
// leaves an orphaned, invisible upload for the lifecycle rule) and
// completing one (a retry after a lost success finds the upload gone; the
// store then checks that the object is there with the right size). A read
// of an open blob that fails with a transient error resumes where it
// stopped, with a ranged GET conditional on the object's ETag, so bytes of a
// replaced object are never spliced in.
package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/frostdev/frost/internal/blob"
)

var _ blob.Store = (*Store)(nil)

// ErrUnavailable: S3 did not answer, or answered only with transient errors,
// for Options.RetryTimeout. Checked with errors.Is; the error also wraps the
// last failure.
var ErrUnavailable = errors.New("s3 unavailable")

const (
	// DefaultPartSize is Options.PartSize's default.
	DefaultPartSize = 16 << 20
	// MinPartSize is the smallest part S3 accepts, but for the last.
	MinPartSize = 5 << 20
	// DefaultRetryTimeout is Options.RetryTimeout's default.
	DefaultRetryTimeout = 30 * time.Second

	maxParts    = 10000 // S3's limit on the parts of one upload
	contentType = "application/octet-stream"
)

// Options configure a Store. Zero fields take the defaults their comments
// give; New validates them.
type Options struct {
	// Endpoint is the server's host[:port], without a scheme:
	// "s3.eu-west-1.amazonaws.com", "127.0.0.1:7070". Required.
	Endpoint string
	// Secure selects https; false is plain http.
	Secure bool
	// Bucket holds the blobs. It must exist; Check says whether it does.
	Bucket string
	// Prefix goes before every key, so that stores can share a bucket:
	// "frost/prod" keeps blobs under "frost/prod/sha256/". A missing final
	// "/" is added. Default "": the bucket's root.
	Prefix string
	// Region is the bucket's region. Default $AWS_REGION, then
	// $AWS_DEFAULT_REGION, then "us-east-1".
	Region string
	// AccessKey and SecretKey sign requests. Default, when both are "":
	// $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY (and SessionToken
	// $AWS_SESSION_TOKEN).
	AccessKey, SecretKey string
	// SessionToken goes with temporary credentials; usually "".
	SessionToken string
	// PartSize is the size of a multipart upload's parts, the largest body
	// sent in one request, and the memory one Put holds. A blob may have at
	// most 10,000 parts. Default DefaultPartSize; at least MinPartSize.
	PartSize int64
	// RetryTimeout bounds how long one request is retried on transient
	// errors. Default DefaultRetryTimeout. An attempt under way is not cut
	// short: one fails by itself after 10s without a connection, or a
	// minute without an answer.
	RetryTimeout time.Duration
	// Logger receives retries (Debug) and failed clean-ups (Warn). Default:
	// none.
	Logger *slog.Logger
}

// Store is a blob.Store in an S3 bucket. It is safe for concurrent use, and
// several processes may share a bucket and prefix.
type Store struct {
	client   *minio.Client
	core     minio.Core // the same client, with the lower-level calls
	endpoint string
	bucket   string
	prefix   string // "" or ends with "/"
	partSize int64
	timeout  time.Duration // RetryTimeout
	log      *slog.Logger
	resumed  atomic.Int64 // parts kept from an earlier, interrupted upload
}

// Stats are a store's counters since New.
type Stats struct {
	// ResumedParts counts multipart parts not sent again because an
	// interrupted upload of the same blob already held them.
	ResumedParts int64
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats { return Stats{ResumedParts: s.resumed.Load()} }

// New returns a store with the given options. It validates them but makes
// no request: Check does.
func New(opts Options) (*Store, error) {
	if opts.Endpoint == "" {
		return nil, errors.New("blob s3: no endpoint")
	}
	if strings.Contains(opts.Endpoint, "://") {
		return nil, fmt.Errorf("blob s3: endpoint %q: want host[:port] without a scheme (Secure selects https)", opts.Endpoint)
	}
	if opts.Bucket == "" {
		return nil, errors.New("blob s3: no bucket")
	}
	prefix := opts.Prefix
	if strings.HasPrefix(prefix, "/") {
		return nil, fmt.Errorf("blob s3: prefix %q starts with /", prefix)
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if opts.Region == "" {
		opts.Region = firstSet(os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"), "us-east-1")
	}
	if opts.AccessKey == "" && opts.SecretKey == "" {
		opts.AccessKey = os.Getenv("AWS_ACCESS_KEY_ID")
		opts.SecretKey = os.Getenv("AWS_SECRET_ACCESS_KEY")
		if opts.SessionToken == "" {
			opts.SessionToken = os.Getenv("AWS_SESSION_TOKEN")
		}
	}
	if opts.AccessKey == "" || opts.SecretKey == "" {
		return nil, errors.New("blob s3: no credentials: set the access and secret keys, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	if opts.PartSize == 0 {
		opts.PartSize = DefaultPartSize
	}
	if opts.PartSize < MinPartSize || opts.PartSize > 5<<30 {
		return nil, fmt.Errorf("blob s3: part size %d: want %d to %d bytes", opts.PartSize, MinPartSize, int64(5<<30))
	}
	if opts.RetryTimeout == 0 {
		opts.RetryTimeout = DefaultRetryTimeout
	}
	if opts.RetryTimeout < 0 {
		return nil, fmt.Errorf("blob s3: negative retry timeout %v", opts.RetryTimeout)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}

	tr, err := minio.DefaultTransport(opts.Secure)
	if err != nil {
		return nil, fmt.Errorf("blob s3: %w", err)
	}
	// A server that is down should fail a request quickly, so that the
	// retries, not one dial, use up RetryTimeout.
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.MaxIdleConnsPerHost = 64
	c, err := minio.New(opts.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, opts.SessionToken),
		Secure:     opts.Secure,
		Transport:  tr,
		Region:     opts.Region, // known, so no GetBucketLocation requests
		MaxRetries: 1,           // no retries: Store.retry does them
	})
	if err != nil {
		return nil, fmt.Errorf("blob s3: %w", err)
	}
	return &Store{
		client:   c,
		core:     minio.Core{Client: c},
		endpoint: opts.Endpoint,
		bucket:   opts.Bucket,
		prefix:   prefix,
		partSize: opts.PartSize,
		timeout:  opts.RetryTimeout,
		log:      opts.Logger,
	}, nil
}

// ParseURL reads a store's location from a URL,
// http[s]://HOST[:PORT]/BUCKET[/PREFIX][?region=REGION], the form of
// `frost server --s3`. The other options keep their defaults (credentials
// from the AWS environment variables).
func ParseURL(s string) (Options, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Options{}, fmt.Errorf("s3 URL %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return Options{}, fmt.Errorf("s3 URL %q: want http[s]://HOST[:PORT]/BUCKET[/PREFIX], e.g. https://s3.eu-west-1.amazonaws.com/my-bucket/frost", s)
	}
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if bucket == "" {
		return Options{}, fmt.Errorf("s3 URL %q: no bucket: want http[s]://HOST[:PORT]/BUCKET[/PREFIX]", s)
	}
	q := u.Query()
	for k := range q {
		if k != "region" {
			return Options{}, fmt.Errorf("s3 URL %q: unknown parameter %q (only region is known)", s, k)
		}
	}
	return Options{Endpoint: u.Host, Secure: u.Scheme == "https", Bucket: bucket, Prefix: strings.TrimSuffix(prefix, "/"), Region: q.Get("region")}, nil
}

// String describes the store: s3://BUCKET/PREFIX at ENDPOINT.
func (s *Store) String() string {
	return "s3://" + s.bucket + "/" + s.prefix + " at " + s.endpoint
}

// firstSet returns the first of ss that is not "".
func firstSet(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// Check makes sure the bucket exists and the credentials may see it. Call it
// once at start to catch a wrong configuration early.
func (s *Store) Check(ctx context.Context) error {
	var ok bool
	err := s.retry(ctx, func(int) (err error) {
		ok, err = s.client.BucketExists(ctx, s.bucket)
		return err
	})
	if err != nil {
		return fmt.Errorf("blob s3: bucket %s at %s: %w", s.bucket, s.endpoint, err)
	}
	if !ok {
		return fmt.Errorf("blob s3: bucket %s does not exist at %s: create it first", s.bucket, s.endpoint)
	}
	return nil
}

func (s *Store) key(digest string) string { return s.prefix + "sha256/" + digest }

func (s *Store) tmpKey() string {
	var b [16]byte
	rand.Read(b[:])
	return s.prefix + "tmp/" + hex.EncodeToString(b[:])
}

// Put implements blob.Store; the package comment says how it never leaves
// wrong bytes under a digest. It reads r to the end (or the limit) even when
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
	in := newSource(ctx, r, limit)
	if want != "" {
		info, err := s.stat(ctx, want)
		switch {
		case err == nil:
			// Already stored: confirm the caller's bytes, store nothing.
			if _, err := io.Copy(io.Discard, in); err != nil {
				return blob.Info{}, fmt.Errorf("put blob: %w", err)
			}
			if err := in.check(want); err != nil {
				return blob.Info{}, err
			}
			return info, nil
		case !errors.Is(err, blob.ErrNotFound):
			return blob.Info{}, fmt.Errorf("put blob %s: %w", want, err)
		}
	}

	first, eof, err := readFirst(in, s.partSize)
	if err != nil {
		return blob.Info{}, fmt.Errorf("put blob: %w", err)
	}
	if !eof {
		return s.putMultipart(ctx, want, in, first)
	}
	d := in.digest()
	if err := in.check(want); err != nil {
		return blob.Info{}, err
	}
	if want == "" {
		if info, err := s.stat(ctx, d); err == nil {
			return info, nil
		} else if !errors.Is(err, blob.ErrNotFound) {
			return blob.Info{}, fmt.Errorf("put blob %s: %w", d, err)
		}
	}
	err = s.retry(ctx, func(int) error {
		// The digest is the payload hash the request is signed with, so
		// the server checks the bytes against it too.
		_, err := s.core.PutObject(ctx, s.bucket, s.key(d), bytes.NewReader(first), int64(len(first)), "", d,
			minio.PutObjectOptions{ContentType: contentType, DisableContentSha256: true})
		return err
	})
	if err != nil {
		return blob.Info{}, fmt.Errorf("put blob %s: %w", d, err)
	}
	return s.stat(ctx, d)
}

// putMultipart stores a blob larger than one part, first holding its first
// part: as a multipart upload to its final key if want is known, else to a
// temporary key that is then copied to the final one.
func (s *Store) putMultipart(ctx context.Context, want string, in *source, first []byte) (blob.Info, error) {
	key := s.tmpKey()
	var id string
	var have map[int]minio.ObjectPart
	if want != "" {
		key = s.key(want)
		id, have = s.pendingUpload(ctx, key)
	}
	if id == "" {
		err := s.retry(ctx, func(int) (err error) {
			id, err = s.core.NewMultipartUpload(ctx, s.bucket, key, minio.PutObjectOptions{ContentType: contentType})
			return err
		})
		if err != nil {
			return blob.Info{}, fmt.Errorf("put blob: start upload: %w", err)
		}
	}
	completed, wrongBytes := false, false
	defer func() {
		// Keep an upload of the right digest for the next Put to resume,
		// unless its bytes were wrong.
		if !completed && (want == "" || wrongBytes) {
			s.cleanUp(ctx, "abort upload "+key, func(ctx context.Context) error {
				err := s.core.AbortMultipartUpload(ctx, s.bucket, key, id)
				if code(err) == "NoSuchUpload" {
					return nil
				}
				return err
			})
		}
	}()

	var parts []minio.CompletePart
	var size int64
	buf, part, eof := first, first, false
	for n := 1; ; n++ {
		if n > maxParts {
			return blob.Info{}, fmt.Errorf("put blob: more than %d parts of %d bytes", maxParts, s.partSize)
		}
		etag, err := s.putPart(ctx, key, id, n, part, have[n])
		if err != nil {
			return blob.Info{}, fmt.Errorf("put blob: upload part %d: %w", n, err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: n, ETag: etag})
		size += int64(len(part))
		if eof {
			break
		}
		var m int
		m, eof, err = readFull(in, buf)
		if err != nil {
			wrongBytes = errors.Is(err, blob.ErrTooLarge)
			return blob.Info{}, fmt.Errorf("put blob: %w", err)
		}
		if m == 0 {
			break
		}
		part = buf[:m]
	}

	d := in.digest()
	if err := in.check(want); err != nil {
		wrongBytes = true
		return blob.Info{}, err // the deferred abort drops the upload
	}
	if want == "" {
		if info, err := s.stat(ctx, d); err == nil {
			return info, nil // stored before: drop the upload
		} else if !errors.Is(err, blob.ErrNotFound) {
			return blob.Info{}, fmt.Errorf("put blob %s: %w", d, err)
		}
	}
	err := s.retry(ctx, func(attempt int) error {
		_, err := s.core.CompleteMultipartUpload(ctx, s.bucket, key, id, parts, minio.PutObjectOptions{})
		if attempt > 1 && code(err) == "NoSuchUpload" {
			// An earlier attempt completed the upload, but its answer
			// was lost.
			oi, serr := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
			if serr == nil && oi.Size == size {
				return nil
			}
		}
		return err
	})
	if err != nil {
		return blob.Info{}, fmt.Errorf("put blob %s: complete upload: %w", d, err)
	}
	completed = true
	if want != "" {
		return s.stat(ctx, d)
	}

	defer s.cleanUp(ctx, "delete "+key, func(ctx context.Context) error {
		return s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
	})
	err = s.retry(ctx, func(int) error {
		// ComposeObject copies in one request up to 5 GiB, in parts above.
		_, err := s.client.ComposeObject(ctx,
			minio.CopyDestOptions{Bucket: s.bucket, Object: s.key(d)},
			minio.CopySrcOptions{Bucket: s.bucket, Object: key})
		return err
	})
	if err != nil {
		return blob.Info{}, fmt.Errorf("put blob %s: copy into place: %w", d, err)
	}
	return s.stat(ctx, d)
}

// putPart uploads part number n, or keeps prev, the part an interrupted
// upload left under that number, if it holds the same bytes. It returns
// the part's ETag.
func (s *Store) putPart(ctx context.Context, key, id string, n int, part []byte, prev minio.ObjectPart) (string, error) {
	if prev.PartNumber == n && prev.Size == int64(len(part)) {
		sum := md5.Sum(part)
		if strings.Trim(prev.ETag, `"`) == hex.EncodeToString(sum[:]) {
			s.resumed.Add(1)
			return prev.ETag, nil
		}
	}
	sum := sha256.Sum256(part)
	var p minio.ObjectPart
	err := s.retry(ctx, func(int) (err error) {
		p, err = s.core.PutObjectPart(ctx, s.bucket, key, id, n, bytes.NewReader(part), int64(len(part)),
			minio.PutObjectPartOptions{Sha256Hex: hex.EncodeToString(sum[:]), DisableContentSha256: true})
		return err
	})
	return p.ETag, err
}

// pendingUpload finds the newest incomplete multipart upload to key and
// the parts it holds. Finding none, or failing to look, is not an error:
// the Put then starts a new upload.
func (s *Store) pendingUpload(ctx context.Context, key string) (string, map[int]minio.ObjectPart) {
	var up minio.ObjectMultipartInfo
	err := s.retry(ctx, func(int) error {
		res, err := s.core.ListMultipartUploads(ctx, s.bucket, key, "", "", "", 1000)
		for _, u := range res.Uploads {
			if u.Key == key && (up.UploadID == "" || u.Initiated.After(up.Initiated)) {
				up = u
			}
		}
		return err
	})
	if err != nil || up.UploadID == "" {
		return "", nil
	}
	have := map[int]minio.ObjectPart{}
	for marker := 0; ; {
		var res minio.ListObjectPartsResult
		err := s.retry(ctx, func(int) (err error) {
			res, err = s.core.ListObjectParts(ctx, s.bucket, key, up.UploadID, marker, 1000)
			return err
		})
		if err != nil {
			return "", nil
		}
		for _, p := range res.ObjectParts {
			have[p.PartNumber] = p
		}
		if !res.IsTruncated || res.NextPartNumberMarker <= marker {
			break
		}
		marker = res.NextPartNumberMarker
	}
	return up.UploadID, have
}

// PutRef stores a reference: name points at the blob with digest. Names
// are 1 to 200 characters of [a-z0-9._-]. A reference is not
// content-addressed, so a reader must check what it points at (the blob's
// own digest, or what the bytes must hash to once decoded).
func (s *Store) PutRef(ctx context.Context, name, digest string) error {
	if err := checkRef(name); err != nil {
		return err
	}
	if err := blob.ValidateDigest(digest); err != nil {
		return fmt.Errorf("put ref %s: %w", name, err)
	}
	body := []byte(digest)
	sum := sha256.Sum256(body)
	err := s.retry(ctx, func(int) error {
		_, err := s.core.PutObject(ctx, s.bucket, s.prefix+"refs/"+name, bytes.NewReader(body), int64(len(body)), "",
			hex.EncodeToString(sum[:]), minio.PutObjectOptions{ContentType: "text/plain", DisableContentSha256: true})
		return err
	})
	if err != nil {
		return fmt.Errorf("put ref %s: %w", name, err)
	}
	return nil
}

// GetRef returns the digest name points at, or blob.ErrNotFound.
func (s *Store) GetRef(ctx context.Context, name string) (string, error) {
	if err := checkRef(name); err != nil {
		return "", err
	}
	var body []byte
	err := s.retry(ctx, func(int) error {
		obj, err := s.client.GetObject(ctx, s.bucket, s.prefix+"refs/"+name, minio.GetObjectOptions{})
		if err != nil {
			return notFound(err)
		}
		defer obj.Close()
		body, err = io.ReadAll(io.LimitReader(obj, 65))
		return notFound(err)
	})
	if err != nil {
		return "", fmt.Errorf("get ref %s: %w", name, err)
	}
	d := string(body)
	if err := blob.ValidateDigest(d); err != nil {
		return "", fmt.Errorf("get ref %s: %w", name, err)
	}
	return d, nil
}

// DeleteRef removes a reference; removing a missing one is not an error.
func (s *Store) DeleteRef(ctx context.Context, name string) error {
	if err := checkRef(name); err != nil {
		return err
	}
	err := s.retry(ctx, func(int) error {
		return s.client.RemoveObject(ctx, s.bucket, s.prefix+"refs/"+name, minio.RemoveObjectOptions{})
	})
	if err != nil {
		return fmt.Errorf("delete ref %s: %w", name, err)
	}
	return nil
}

func checkRef(name string) error {
	if name == "" || len(name) > 200 || name[0] == '.' {
		return fmt.Errorf("ref name %q: want 1 to 200 characters of [a-z0-9._-], not starting with '.'", name)
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("ref name %q: want 1 to 200 characters of [a-z0-9._-], not starting with '.'", name)
		}
	}
	return nil
}

// cleanUp runs op (with retries) even if ctx is done, for at most 30s, and
// logs a failure: what it leaves behind is invisible, and the bucket's
// lifecycle rule removes it.
func (s *Store) cleanUp(ctx context.Context, what string, op func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.retry(ctx, func(int) error { return op(ctx) }); err != nil {
		s.log.Warn("blob s3: clean-up failed", "op", what, "err", err)
	}
}

// Open implements blob.Store. The reader reads under ctx: once ctx is done,
// its reads fail. It fails with blob.ErrDigestMismatch at EOF if the
// object's bytes do not hash to digest; a caller that stops early gets no
// check. It resumes after transient errors (see the package comment).
func (s *Store) Open(ctx context.Context, digest string) (io.ReadCloser, blob.Info, error) {
	if err := blob.ValidateDigest(digest); err != nil {
		return nil, blob.Info{}, fmt.Errorf("open blob: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, blob.Info{}, fmt.Errorf("open blob %s: %w", digest, err)
	}
	rd := &reader{s: s, ctx: ctx, key: s.key(digest), want: digest, h: sha256.New()}
	var oi minio.ObjectInfo
	err := s.retry(ctx, func(int) (err error) {
		rd.body, oi, _, err = s.core.GetObject(ctx, s.bucket, rd.key, minio.GetObjectOptions{})
		return err
	})
	if err != nil {
		return nil, blob.Info{}, fmt.Errorf("open blob %s: %w", digest, notFound(err))
	}
	rd.size, rd.etag = oi.Size, oi.ETag
	return rd, blob.Info{Digest: digest, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// Stat implements blob.Store. It does not read or verify the blob's bytes.
func (s *Store) Stat(ctx context.Context, digest string) (blob.Info, error) {
	if err := blob.ValidateDigest(digest); err != nil {
		return blob.Info{}, fmt.Errorf("stat blob: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return blob.Info{}, fmt.Errorf("stat blob %s: %w", digest, err)
	}
	info, err := s.stat(ctx, digest)
	if err != nil {
		return blob.Info{}, fmt.Errorf("stat blob %s: %w", digest, err)
	}
	return info, nil
}

func (s *Store) stat(ctx context.Context, digest string) (blob.Info, error) {
	var oi minio.ObjectInfo
	err := s.retry(ctx, func(int) (err error) {
		oi, err = s.client.StatObject(ctx, s.bucket, s.key(digest), minio.StatObjectOptions{})
		return err
	})
	if err != nil {
		return blob.Info{}, notFound(err)
	}
	return blob.Info{Digest: digest, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// Delete implements blob.Store. A reader already open may fail, or go on
// reading the deleted blob, as the server allows.
func (s *Store) Delete(ctx context.Context, digest string) error {
	if err := blob.ValidateDigest(digest); err != nil {
		return fmt.Errorf("delete blob: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete blob %s: %w", digest, err)
	}
	err := s.retry(ctx, func(int) error {
		err := s.client.RemoveObject(ctx, s.bucket, s.key(digest), minio.RemoveObjectOptions{})
		if code(err) == "NoSuchKey" {
			return nil // S3 says nothing; some servers do
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("delete blob %s: %w", digest, err)
	}
	return nil
}

// List implements blob.Store. Keys under sha256/ that are not named like a
// blob are skipped. Blobs stored or deleted while List runs may or may not
// be reported. A listing that fails with a transient error resumes after
// the last key it reported.
func (s *Store) List(ctx context.Context, fn func(blob.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list blobs: %w", err)
	}
	prefix := s.prefix + "sha256/"
	noOwner := false
	after := ""
	b := s.backoff()
	for {
		var failed error
		opts := minio.ListObjectsOptions{Prefix: prefix, Recursive: true, StartAfter: after, FetchOwner: &noOwner}
		for oi := range s.client.ListObjectsIter(ctx, s.bucket, opts) {
			if oi.Err != nil {
				failed = oi.Err
				break
			}
			after = oi.Key
			b.progress()
			d := strings.TrimPrefix(oi.Key, prefix)
			if blob.ValidateDigest(d) != nil {
				continue
			}
			if err := fn(blob.Info{Digest: d, Size: oi.Size, ModTime: oi.LastModified}); err != nil {
				return err
			}
		}
		if failed == nil {
			return nil
		}
		if err := b.wait(ctx, failed); err != nil {
			return fmt.Errorf("list blobs: %w", err)
		}
	}
}

// retry calls op, numbering its attempts from 1, until it succeeds or fails
// with an error that is not transient, or ctx is done, or the store's retry
// timeout has passed.
func (s *Store) retry(ctx context.Context, op func(attempt int) error) error {
	b := s.backoff()
	for attempt := 1; ; attempt++ {
		err := op(attempt)
		if err == nil {
			return nil
		}
		if err := b.wait(ctx, err); err != nil {
			return err
		}
	}
}

// backoff paces the retries of one request.
type backoff struct {
	s        *Store
	start    time.Time
	attempts int
	delay    time.Duration
}

func (s *Store) backoff() *backoff {
	return &backoff{s: s, start: time.Now(), delay: 50 * time.Millisecond}
}

// progress restarts the clock: the request got somewhere.
func (b *backoff) progress() {
	b.start, b.attempts, b.delay = time.Now(), 0, 50*time.Millisecond
}

// wait returns err at once if it is not transient; else, once the time
// for one more attempt has come, nil; or, if ctx is done first or the retry
// timeout would pass, an error.
func (b *backoff) wait(ctx context.Context, err error) error {
	b.attempts++
	if !transient(ctx, err) {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			return fmt.Errorf("%w (after %v)", cerr, err)
		}
		return err
	}
	// Full jitter, so that clients that failed together retry apart.
	d := b.delay/2 + mathrand.N(b.delay/2+1)
	b.delay = min(2*b.delay, 2*time.Second)
	elapsed := time.Since(b.start)
	if elapsed+d > b.s.timeout {
		return fmt.Errorf("%w: %s: gave up after %d attempts in %v: %w",
			ErrUnavailable, b.s.endpoint, b.attempts, elapsed.Round(time.Millisecond), err)
	}
	b.s.log.Debug("blob s3: retrying", "attempt", b.attempts, "in", d, "err", err)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w (while retrying %v)", ctx.Err(), err)
	}
}

// transient reports whether err may go away if the request is sent again.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "SlowDown", "SlowDownRead", "SlowDownWrite", "RequestTimeout", "InternalError",
			"ServiceUnavailable", "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled":
			return true
		}
		return er.StatusCode >= 500 || er.StatusCode == http.StatusTooManyRequests || er.StatusCode == http.StatusRequestTimeout
	}
	// A certificate the client does not trust stays untrusted.
	var (
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		host      x509.HostnameError
		verify    *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &invalid) || errors.As(err, &host) || errors.As(err, &verify) {
		return false
	}
	if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return false
	}
	// net/http wraps every failure to get a response in a *url.Error:
	// refused, reset or timed-out connections, a lost response.
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// code returns the S3 error code in err, or "".
func code(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code
	}
	return ""
}

// notFound maps a missing object to blob.ErrNotFound. A missing bucket is
// not a missing blob: it is a configuration error, reported as is.
func notFound(err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) && (er.Code == "NoSuchKey" || er.StatusCode == http.StatusNotFound && er.Code != "NoSuchBucket") {
		return blob.ErrNotFound
	}
	return err
}

// source is a Put's body: it stops once ctx is done, hashes what it reads,
// and fails with blob.ErrTooLarge after more than the limit. It is not safe
// for concurrent use.
type source struct {
	ctx context.Context
	r   io.Reader
	h   hash.Hash
	n   int64
	max int64 // the limit, or MaxInt64 for none
}

func newSource(ctx context.Context, r io.Reader, limit int64) *source {
	max := int64(math.MaxInt64)
	if limit > 0 {
		max = limit
	}
	return &source{ctx: ctx, r: r, h: sha256.New(), max: max}
}

func (s *source) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.r.Read(p)
	s.h.Write(p[:n])
	s.n += int64(n)
	if s.n > s.max {
		return n, fmt.Errorf("more than %d bytes: %w", s.max, blob.ErrTooLarge)
	}
	return n, err
}

func (s *source) digest() string { return hex.EncodeToString(s.h.Sum(nil)) }

// check returns blob.ErrDigestMismatch unless want is "" or what was read
// hashes to it.
func (s *source) check(want string) error {
	if got := s.digest(); want != "" && got != want {
		return fmt.Errorf("put blob: got sha256 %s, want %s: %w", got, want, blob.ErrDigestMismatch)
	}
	return nil
}

// readFirst reads up to max bytes from r into a buffer that grows as they
// arrive, so that a small blob costs little memory. eof says r ended.
func readFirst(r io.Reader, max int64) (buf []byte, eof bool, err error) {
	buf = make([]byte, 0, min(max, 64<<10))
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) == max {
				return buf, false, nil
			}
			grown := make([]byte, len(buf), min(max, 4*int64(cap(buf))))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}

// readFull fills buf from r; eof says r ended (then n may be short).
func readFull(r io.Reader, buf []byte) (n int, eof bool, err error) {
	n, err = io.ReadFull(r, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return n, true, nil
	}
	return n, false, err
}

// reader reads an object, hashing it, and turns EOF into
// blob.ErrDigestMismatch if the hash is not the blob's digest. It is not
// safe for concurrent use.
type reader struct {
	s    *Store
	ctx  context.Context
	key  string
	want string
	size int64  // the object's, from the first GET
	etag string // the object's, from the first GET: resumed reads must match
	body io.ReadCloser
	off  int64 // bytes read so far
	h    hash.Hash
	err  error // sticky: io.EOF, the mismatch, or a failure
}

// maxStalls is how many resumed reads in a row may fail before a byte
// arrives; each has its own RetryTimeout.
const maxStalls = 5

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for stalls := 0; ; stalls++ {
		n, err := r.body.Read(p)
		r.h.Write(p[:n])
		r.off += int64(n)
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF:
			if got := hex.EncodeToString(r.h.Sum(nil)); got != r.want {
				err = fmt.Errorf("read blob %s: bytes in S3 hash to %s: %w", r.want, got, blob.ErrDigestMismatch)
			}
			r.err = err
			return n, err
		case transient(r.ctx, err) && (n > 0 || stalls < maxStalls):
			if rerr := r.resume(err); rerr != nil {
				r.err = fmt.Errorf("read blob %s at byte %d: %w", r.want, r.off, rerr)
				return n, r.err
			}
			if n > 0 {
				return n, nil
			}
		default:
			r.err = fmt.Errorf("read blob %s at byte %d: %w", r.want, r.off, err)
			return n, r.err
		}
	}
}

// resume replaces a failed body with a ranged GET from r.off, on condition
// that the object is still the one first opened.
func (r *reader) resume(cause error) error {
	r.body.Close()
	r.body = http.NoBody
	r.s.log.Debug("blob s3: resuming read", "key", r.key, "at", r.off, "err", cause)
	if r.off >= r.size {
		return nil // all bytes are in; the next Read reports EOF
	}
	opts := minio.GetObjectOptions{}
	if err := opts.SetMatchETag(r.etag); err != nil {
		return err
	}
	if err := opts.SetRange(r.off, 0); err != nil {
		return err
	}
	return r.s.retry(r.ctx, func(int) error {
		body, _, h, err := r.s.core.GetObject(r.ctx, r.s.bucket, r.key, opts)
		if code(err) == "PreconditionFailed" {
			return fmt.Errorf("blob replaced while being read (%v): %w", cause, err)
		}
		if err != nil {
			return err
		}
		if r.off > 0 && h.Get("Content-Range") == "" {
			body.Close()
			return fmt.Errorf("resume after %v: server ignored the range", cause)
		}
		r.body = body
		return nil
	})
}

func (r *reader) Close() error { return r.body.Close() }
