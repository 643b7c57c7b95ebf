package snapshot

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	manifestName   = "manifest.json"
	quarantineName = "quarantine"
	reasonName     = "reason.txt"
	// maxQuarantined is how many quarantined snapshots are kept for
	// inspection; the oldest go first.
	maxQuarantined = 16
)

// Options configures a Store. The zero value means no size cap, no expiry
// by age, and the system clock.
type Options struct {
	// MaxBytes caps the bytes the store's snapshots occupy on disk; 0 means
	// no cap. After each Put (and at the end of Reap) the least recently
	// used snapshots are removed until the total is within the cap; the
	// snapshot a Put has just written is never one of them, even if alone
	// it is larger than the cap.
	MaxBytes int64
	// TTL is how long a snapshot may go unused before Reap removes it; 0
	// means never by age.
	TTL time.Duration
	// Now is the clock for last use, Created and TTL; nil means time.Now.
	Now func() time.Time
}

// Info describes a stored snapshot, as List returns it.
type Info struct {
	App     string // "" when the manifest cannot be parsed
	Release string
	Size    int64 // bytes on disk (part files are sparse)
	// LastUsed is when Get last returned it, or when it was written.
	LastUsed time.Time
	Created  time.Time
}

// Store keeps snapshots in a local directory, one per release. It is safe
// for concurrent use: operations on different releases run in parallel;
// on one release, Gets and GetFiles run in parallel and a Put, PutFiles,
// Delete or Quarantine waits for them and they for it. Only one Store (one process) may use a
// directory at a time: Open removes what it takes for debris of a crash.
type Store struct {
	dir   string
	opts  Options
	locks keyedLocks

	mu     sync.Mutex
	index  map[string]*entry // by release: every snapshot that has a manifest
	pinned map[string]int    // releases a Put is writing; eviction skips them

	qmu sync.Mutex // serialises Quarantine's naming and pruning
}

// entry is what the index keeps about one snapshot.
type entry struct {
	app      string // "" when the manifest cannot be parsed
	size     int64  // bytes on disk
	lastUsed time.Time
	created  time.Time
	// raw and parsed are the manifest last parsed for this release: a
	// manifest read again with exactly these bytes is not parsed again
	// (JSON decoding is a good part of a small snapshot's Get).
	raw    []byte
	parsed Manifest
}

// Open opens the store in dir, creating dir (mode 0700) if needed. It
// finishes what a crash interrupted: it removes temporary files, snapshot
// directories without a manifest, and part files their manifest does not
// list. It then builds the index of sizes and last uses from what is on
// disk; it does not read or verify any part. Entries in dir that are not
// release IDs are left alone.
func Open(dir string, opts Options) (*Store, error) {
	switch {
	case dir == "":
		return nil, fmt.Errorf("open snapshot store: %w: empty directory name", ErrInvalid)
	case opts.MaxBytes < 0:
		return nil, fmt.Errorf("open snapshot store: %w: MaxBytes %d is negative (0 means no cap)", ErrInvalid, opts.MaxBytes)
	case opts.TTL < 0:
		return nil, fmt.Errorf("open snapshot store: %w: TTL %v is negative (0 means no expiry)", ErrInvalid, opts.TTL)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{
		dir:    dir,
		opts:   opts,
		index:  make(map[string]*entry),
		pinned: make(map[string]int),
	}
	for _, d := range []string{dir, s.quarantineDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open snapshot store: %w", err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || !isHex64(e.Name()) {
			continue
		}
		ent, err := s.tidy(e.Name())
		if err != nil {
			return nil, fmt.Errorf("open snapshot store: %w", err)
		}
		if ent != nil {
			s.index[e.Name()] = ent
		}
	}
	return s, nil
}

// now reads the clock, dropping the monotonic reading so that times kept
// in the index compare equal to those read back from the disk.
func (s *Store) now() time.Time { return s.opts.Now().Round(0) }

func (s *Store) path(release string) string { return filepath.Join(s.dir, release) }

func (s *Store) manifestPath(release string) string {
	return filepath.Join(s.dir, release, manifestName)
}

func (s *Store) quarantineDir() string { return filepath.Join(s.dir, quarantineName) }

// tidy brings the directory of release back to a state a completed Put or
// Delete leaves, and returns its index entry, or nil if there is no
// snapshot. It removes temporary files; a directory without a manifest
// whole; and, when the manifest parses, every file it does not list. The
// caller holds the release's lock, or is Open.
func (s *Store) tidy(release string) (*entry, error) {
	dir := s.path(release)
	b, mtime, err := s.readManifest(release)
	if errors.Is(err, ErrNotFound) {
		// Parts but no manifest: a Put that never committed, or a Delete
		// that did not finish. Either way there is no snapshot.
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("remove uncommitted snapshot %s: %w", short(release), err)
		}
		return nil, nil
	}
	ent := &entry{}
	listed := map[string]bool{manifestName: true}
	parsed := false
	if err == nil {
		if m, err := parseManifest(b); err == nil {
			parsed = true
			ent.app, ent.created = m.App, m.Created
			for _, p := range m.Parts {
				listed[p.Digest] = true
			}
		}
	}
	names, err := readDirNames(dir)
	if err != nil {
		return nil, fmt.Errorf("tidy snapshot %s: %w", short(release), err)
	}
	for _, name := range names {
		// A manifest that cannot be read or parsed lists nothing for sure:
		// keep its files for Get to report and Quarantine to set aside.
		stale := strings.HasPrefix(name, tmpPrefix) || (parsed && !listed[name])
		if stale {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("tidy snapshot %s: %w", short(release), err)
			}
		}
	}
	if ent.size, err = dirUsage(dir); err != nil {
		return nil, fmt.Errorf("tidy snapshot %s: %w", short(release), err)
	}
	if !mtime.IsZero() {
		ent.lastUsed = mtime
	}
	return ent, nil
}

// readManifest reads the manifest file of release, refusing one larger
// than any real manifest. A missing manifest is ErrNotFound. On ErrCorrupt
// the FileInfo is still returned.
func (s *Store) readManifest(release string) ([]byte, time.Time, error) {
	b, mtime, err := readRegular(s.manifestPath(release), func(size int64) error {
		if size > maxManifestBytes {
			return fmt.Errorf("%w: %s is %d bytes, more than the %d allowed", ErrCorrupt, manifestName, size, maxManifestBytes)
		}
		return nil
	}, newBuffer)
	switch {
	case err == nil || errors.Is(err, ErrCorrupt):
	case errors.Is(err, fs.ErrNotExist):
		err = fmt.Errorf("%w: no %s", ErrNotFound, manifestName)
	case errors.Is(err, errNotRegular):
		err = fmt.Errorf("%w: %s is not a regular file", ErrCorrupt, manifestName)
	case !mtime.IsZero():
		err = fmt.Errorf("%w: read %s: %v", ErrCorrupt, manifestName, err)
	}
	return b, mtime, err
}

// errNotRegular is readRegular's answer for anything but a regular file.
var errNotRegular = errors.New("not a regular file")

// newBuffer is readRegular's alloc when nothing is lent.
func newBuffer(size int64) []byte { return make([]byte, size) }

// seal checks a manifest and parts as a caller supplies them and returns
// what to store: the parts sorted by name, and the manifest as sealHeader
// leaves it with Parts listing every part's name, SHA-256 and size.
// Errors wrap ErrInvalid.
func seal(m Manifest, parts []Part, now time.Time) (Manifest, []Part, error) {
	m, err := sealHeader(m, now)
	if err != nil {
		return Manifest{}, nil, err
	}
	parts = slices.Clone(parts)
	slices.SortFunc(parts, func(a, b Part) int { return cmp.Compare(a.Name, b.Name) })
	m.Parts = make([]PartInfo, len(parts))
	for i, p := range parts {
		if err := checkPartName(p.Name); err != nil {
			return Manifest{}, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if i > 0 && parts[i-1].Name == p.Name {
			return Manifest{}, nil, fmt.Errorf("%w: part %q given twice", ErrInvalid, p.Name)
		}
		m.Parts[i] = PartInfo{Name: p.Name, Digest: digest(p.Data), Size: int64(len(p.Data))}
	}
	return m, parts, nil
}

// sealHeader checks the fields of m that a caller of Put or PutFiles
// supplies and returns m with Format set, Created set to now unless
// already set, and Meta copied. Errors wrap ErrInvalid.
func sealHeader(m Manifest, now time.Time) (Manifest, error) {
	m.Format = FormatVersion
	if err := m.checkHeader(); err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if m.Created.IsZero() {
		m.Created = now
	}
	m.Created = m.Created.UTC().Round(0)
	if len(m.Meta) == 0 {
		m.Meta = nil
	} else {
		m.Meta = maps.Clone(m.Meta)
	}
	return m, nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Put stores a snapshot of m.Release, replacing any previous one of that
// release, and returns the manifest as stored: Format set, Created set to
// now unless m has one, and Parts listing the given parts sorted by name
// with their SHA-256 and size (whatever m.Parts held is ignored).
// m.Release must be a release ID and App, Runtime and RuntimeVersion must
// not be empty, else the error wraps ErrInvalid.
//
// Parts are written sparsely and atomically and the manifest last, so a
// crash or an error leaves the previous snapshot or none, never a mix (see
// the package comment). A part file already present under its digest with
// the right size is kept, not rewritten: re-putting an identical part costs
// its hashing only. (A snapshot found corrupt is quarantined, moved away
// whole, so the next Put writes every part afresh.)
//
// Put then removes least recently used snapshots while the store is over
// Options.MaxBytes, never this one. If only that removal fails, Put returns
// the stored manifest and the error. ctx is checked between parts.
func (s *Store) Put(ctx context.Context, m Manifest, parts []Part) (Manifest, error) {
	m, parts, err := seal(m, parts, s.now())
	if err != nil {
		return Manifest{}, fmt.Errorf("put snapshot: %w", err)
	}
	return s.put(ctx, m, memSources(m, parts))
}

// source is one part's bytes on their way into the store, as Put (memory)
// and PutFiles (a file on the host) take them.
type source interface {
	// store puts the part's bytes in the snapshot directory dir as a file
	// named by their SHA-256, unless a regular file of that name and size
	// is already there, and returns the part's info and whether it created
	// a file. A file it creates is fsynced; the caller fsyncs dir. It
	// leaves no temporary file behind, also on error. The caller holds the
	// release's lock.
	store(ctx context.Context, dir string) (info PartInfo, created bool, err error)
}

// memSource is a part held in memory, its info already computed by seal.
type memSource struct {
	info PartInfo
	data []byte
}

func (p memSource) store(_ context.Context, dir string) (PartInfo, bool, error) {
	if present(dir, p.info) {
		return p.info, false, nil
	}
	if err := writeFileAtomic(dir, p.info.Digest, p.data, true); err != nil {
		return PartInfo{}, false, err
	}
	return p.info, true, nil
}

// memSources pairs sealed parts with their infos in m.
func memSources(m Manifest, parts []Part) []source {
	srcs := make([]source, len(parts))
	for i, p := range parts {
		srcs[i] = memSource{info: m.Parts[i], data: p.Data}
	}
	return srcs
}

// present reports whether dir holds a regular file named by p's digest
// with p's size: the very part, stored before, which is kept rather than
// written again.
func present(dir string, p PartInfo) bool {
	fi, err := os.Lstat(filepath.Join(dir, p.Digest))
	return err == nil && fi.Mode().IsRegular() && fi.Size() == p.Size
}

// put stores a sealed manifest and its parts' sources, in manifest order,
// and returns the manifest as stored. m.Parts[i] is the info of srcs[i],
// or, where a source learns it only as it stores the part (PutFiles), a
// stand-in that encodes at least as long (see pendingPart), so that a
// manifest too large to store is refused before anything is written.
func (s *Store) put(ctx context.Context, m Manifest, srcs []source) (Manifest, error) {
	release := m.Release
	s.pin(release)
	defer s.unpin(release)

	unlock := s.locks.lock(release)
	m, err := s.write(ctx, m, srcs)
	unlock()
	if err != nil {
		return Manifest{}, fmt.Errorf("put snapshot %s: %w", short(release), err)
	}
	if _, err := s.evict(); err != nil {
		return m, fmt.Errorf("put snapshot %s: stored, but keeping the store within %d bytes failed: %w", short(release), s.opts.MaxBytes, err)
	}
	return m, nil
}

// write does the disk work of put and returns the manifest it committed;
// the caller holds the release's lock.
func (s *Store) write(ctx context.Context, m Manifest, srcs []source) (_ Manifest, err error) {
	release := m.Release
	dir := s.path(release)
	mb, err := marshalManifest(m) // exact, or an upper bound of the size
	if err != nil {
		return Manifest{}, err
	}
	if err := ctx.Err(); err != nil {
		return Manifest{}, err
	}
	switch err := os.Mkdir(dir, 0o700); {
	case err == nil:
		if err := syncDir(s.dir); err != nil {
			return Manifest{}, err
		}
	case !errors.Is(err, fs.ErrExist):
		return Manifest{}, err
	}
	defer func() {
		if err != nil {
			// Back to the previous snapshot, or to none.
			s.retidy(release)
		}
	}()

	m.Parts = slices.Clone(m.Parts)
	wrote, changed := false, false
	for i, src := range srcs {
		if err := ctx.Err(); err != nil {
			return Manifest{}, err
		}
		info, created, err := src.store(ctx, dir)
		if err != nil {
			return Manifest{}, fmt.Errorf("write part %q: %w", m.Parts[i].Name, err)
		}
		wrote = wrote || created
		if info != m.Parts[i] {
			m.Parts[i], changed = info, true
		}
	}
	if wrote {
		if err := syncDir(dir); err != nil {
			return Manifest{}, err
		}
	}
	if changed {
		if mb, err = marshalManifest(m); err != nil {
			return Manifest{}, err
		}
	}
	if err := writeFileAtomic(dir, manifestName, mb, false); err != nil {
		return Manifest{}, fmt.Errorf("write manifest: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return Manifest{}, err
	}

	// Committed. What follows only tidies up (removes the parts of the
	// snapshot this one replaced); a failure is repaired by the next Open,
	// so it does not fail the Put.
	now := s.now()
	_ = os.Chtimes(s.manifestPath(release), now, now) // the index has it; only a restart would see the write time
	ent, err := s.tidy(release)
	if err != nil || ent == nil {
		ent = &entry{app: m.App, created: m.Created, size: m.Size()} // size: at most this
	}
	ent.lastUsed = now
	s.mu.Lock()
	s.index[release] = ent
	s.mu.Unlock()
	return m, nil
}

// retidy runs tidy on release and puts the result in the index. The caller
// holds the release's lock. An error leaves the index as it was: the next
// Open tidies again.
func (s *Store) retidy(release string) {
	ent, err := s.tidy(release)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ent == nil {
		delete(s.index, release)
	} else {
		s.index[release] = ent
	}
}

// Get reads and verifies the snapshot of want.Release and returns its
// manifest and its parts in manifest order. It returns a snapshot only if
// the manifest parses (else ErrCorrupt), its format, runtime and runtime
// version are those wanted (else ErrIncompatible), its app and release are
// those wanted (else ErrWrongRelease), and every part it lists is present
// with exactly its size and SHA-256 (else ErrCorrupt). No manifest is
// ErrNotFound. On success it marks the snapshot used now, for Options.TTL
// and MaxBytes, in a way that survives reopening the store.
//
// Get waits only for a Put, Delete or Quarantine of the same release. ctx
// is checked between parts.
func (s *Store) Get(ctx context.Context, want Want) (Manifest, []Part, error) {
	return s.GetInto(ctx, want, nil)
}

// Buffers lends the buffers GetInto reads parts into: for the part named
// name, of size bytes, a slice of exactly that length, or nil for a new
// one. Whatever it returns becomes the part's Data, whether the part then
// verifies or not.
type Buffers func(name string, size int64) []byte

// GetInto is Get reading each part into a buffer from bufs (nil: new
// ones). A runtime that keeps buffers resident from one wake to the next
// spares its thaws the page faults of fresh memory, which on virtual
// machines cost more than reading and hashing the part.
func (s *Store) GetInto(ctx context.Context, want Want, bufs Buffers) (Manifest, []Part, error) {
	if err := checkRelease(want.Release); err != nil {
		return Manifest{}, nil, fmt.Errorf("get snapshot: %w: %v", ErrInvalid, err)
	}
	unlock := s.locks.rlock(want.Release)
	defer unlock()
	m, parts, err := s.read(ctx, want, bufs)
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("get snapshot %s: %w", short(want.Release), err)
	}
	s.markUsed(want.Release)
	return m, parts, nil
}

// markUsed records that release was used now, in the index and in its
// manifest's mtime. The caller holds the release's lock.
func (s *Store) markUsed(release string) {
	now := s.now()
	_ = os.Chtimes(s.manifestPath(release), now, now) // the index has it; only a restart would lose it
	s.mu.Lock()
	if e := s.index[release]; e != nil {
		e.lastUsed = now
	}
	s.mu.Unlock()
}

// read is GetInto without the locking and the marking. The release is
// valid.
func (s *Store) read(ctx context.Context, want Want, bufs Buffers) (Manifest, []Part, error) {
	m, err := s.load(want)
	if err != nil {
		return Manifest{}, nil, err
	}
	dir := s.path(want.Release)
	parts := make([]Part, len(m.Parts))
	for i, p := range m.Parts {
		if err := ctx.Err(); err != nil {
			return Manifest{}, nil, err
		}
		data, err := readPart(filepath.Join(dir, p.Digest), p, bufs)
		if err != nil {
			return Manifest{}, nil, err
		}
		parts[i] = Part{Name: p.Name, Data: data}
	}
	return m, parts, nil
}

// load reads the manifest of want.Release, parses it and checks it is the
// snapshot wanted: the checks Get makes before it reads any part. The
// release is valid; the caller holds its lock.
func (s *Store) load(want Want) (Manifest, error) {
	b, _, err := s.readManifest(want.Release)
	if err != nil {
		return Manifest{}, err
	}
	m, err := s.parse(want.Release, b)
	if err != nil {
		return Manifest{}, err
	}
	if err := match(m, want); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// parse parses the release's manifest b, or returns a copy of the last
// parse if b is byte for byte the manifest that gave it.
func (s *Store) parse(release string, b []byte) (Manifest, error) {
	s.mu.Lock()
	e := s.index[release]
	if e != nil && e.raw != nil && bytes.Equal(e.raw, b) {
		m := e.parsed
		s.mu.Unlock()
		m.Parts = slices.Clone(m.Parts)
		m.Meta = maps.Clone(m.Meta)
		return m, nil
	}
	s.mu.Unlock()
	m, err := parseManifest(b)
	if err != nil {
		return Manifest{}, err
	}
	s.mu.Lock()
	if e := s.index[release]; e != nil {
		e.raw, e.parsed = b, m
		e.parsed.Parts = slices.Clone(m.Parts)
		e.parsed.Meta = maps.Clone(m.Meta)
	}
	s.mu.Unlock()
	return m, nil
}

// readPart reads a part file in one read into a buffer of the size the
// manifest gives (lent by bufs if it has one), after checking the file has that size, and checks its
// SHA-256.
func readPart(path string, p PartInfo, bufs Buffers) ([]byte, error) {
	data, mtime, err := readRegular(path, func(size int64) error {
		if size != p.Size {
			return wrongSize(p, size)
		}
		return nil
	}, func(size int64) []byte {
		if bufs != nil {
			if b := bufs(p.Name, size); int64(len(b)) == size {
				return b
			}
		}
		return make([]byte, size)
	})
	switch {
	case err == nil:
	case errors.Is(err, ErrCorrupt):
		return nil, err
	case errors.Is(err, fs.ErrNotExist):
		return nil, missingPart(p)
	case errors.Is(err, errNotRegular):
		return nil, notRegular(p)
	case !mtime.IsZero():
		return nil, shrank(p, err)
	default:
		return nil, fmt.Errorf("part %q: %w", p.Name, err)
	}
	if err := verify(p, data); err != nil {
		return nil, err
	}
	return data, nil
}

// openPart opens a part file for reading after checking that it is a
// regular file of exactly the size the manifest gives: before anything
// is read or allocated for it.
func openPart(path string, p PartInfo) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, missingPart(p)
	}
	if err != nil {
		return nil, fmt.Errorf("part %q: %w", p.Name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("part %q: %w", p.Name, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, notRegular(p)
	}
	if fi.Size() != p.Size {
		f.Close()
		return nil, wrongSize(p, fi.Size())
	}
	return f, nil
}

// The ways a part file can be wrong before it is read.
func missingPart(p PartInfo) error {
	return fmt.Errorf("%w: part %q (sha256 %s) is missing", ErrCorrupt, p.Name, short(p.Digest))
}

func notRegular(p PartInfo) error {
	return fmt.Errorf("%w: part %q (sha256 %s) is not a regular file", ErrCorrupt, p.Name, short(p.Digest))
}

func wrongSize(p PartInfo, size int64) error {
	return fmt.Errorf("%w: part %q (sha256 %s) is %d bytes, manifest says %d", ErrCorrupt, p.Name, short(p.Digest), size, p.Size)
}

// shrank describes a part file that ended before its size while read.
func shrank(p PartInfo, err error) error {
	return fmt.Errorf("%w: part %q (sha256 %s) shrank while read: %v", ErrCorrupt, p.Name, short(p.Digest), err)
}

// verify checks data against the part's SHA-256.
func verify(p PartInfo, data []byte) error {
	sum := sha256.Sum256(data)
	return checkSum(p, sum[:])
}

// checkSum checks a computed SHA-256 against the part's.
func checkSum(p PartInfo, sum []byte) error {
	var got [2 * sha256.Size]byte
	hex.Encode(got[:], sum)
	if string(got[:]) != p.Digest {
		return fmt.Errorf("%w: part %q has sha256 %s, manifest says %s", ErrCorrupt, p.Name, short(string(got[:])), short(p.Digest))
	}
	return nil
}

// Stat returns the manifest of release, parsed but with no part verified,
// the bytes the snapshot occupies on disk, and when it was last used.
// It is ErrNotFound if there is no snapshot and ErrCorrupt or
// ErrIncompatible if the manifest cannot be parsed.
func (s *Store) Stat(release string) (Manifest, int64, time.Time, error) {
	if err := checkRelease(release); err != nil {
		return Manifest{}, 0, time.Time{}, fmt.Errorf("stat snapshot: %w: %v", ErrInvalid, err)
	}
	unlock := s.locks.rlock(release)
	defer unlock()
	fail := func(err error) (Manifest, int64, time.Time, error) {
		return Manifest{}, 0, time.Time{}, fmt.Errorf("stat snapshot %s: %w", short(release), err)
	}
	b, mtime, err := s.readManifest(release)
	if err != nil {
		return fail(err)
	}
	m, err := s.parse(release, b)
	if err != nil {
		return fail(err)
	}
	s.mu.Lock()
	e := s.index[release]
	var size int64
	lastUsed := mtime
	if e != nil {
		size, lastUsed = e.size, e.lastUsed
	}
	s.mu.Unlock()
	if e == nil { // not written through this Store: should not happen, but answer truly
		if size, err = dirUsage(s.path(release)); err != nil {
			return fail(err)
		}
	}
	return m, size, lastUsed, nil
}

// Quarantine moves the snapshot of release, whatever state it is in, to
// DIR/quarantine/<release>-<unixnano>/ with the reason in reason.txt, so it
// is never used again but can be inspected. Quarantined snapshots count
// toward no cap; the newest 16 are kept. With nothing to move the error
// wraps ErrNotFound.
func (s *Store) Quarantine(release, reason string) error {
	if err := checkRelease(release); err != nil {
		return fmt.Errorf("quarantine snapshot: %w: %v", ErrInvalid, err)
	}
	unlock := s.locks.lock(release)
	defer unlock()
	s.qmu.Lock()
	defer s.qmu.Unlock()
	fail := func(err error) error { return fmt.Errorf("quarantine snapshot %s: %w", short(release), err) }

	src := s.path(release)
	if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
		return fail(fmt.Errorf("%w: nothing to quarantine", ErrNotFound))
	} else if err != nil {
		return fail(err)
	}
	now := s.now()
	var dst string
	for nano := now.UnixNano(); ; nano++ {
		dst = filepath.Join(s.quarantineDir(), release+"-"+strconv.FormatInt(nano, 10))
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err := os.Rename(src, dst); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	delete(s.index, release)
	s.mu.Unlock()
	note := fmt.Sprintf("%s\nquarantined %s\n", reason, now.UTC().Format(time.RFC3339Nano))
	if err := os.WriteFile(filepath.Join(dst, reasonName), []byte(note), 0o600); err != nil {
		return fail(err)
	}
	if err := syncDir(s.quarantineDir()); err != nil {
		return fail(err)
	}
	if err := syncDir(s.dir); err != nil {
		return fail(err)
	}
	if err := s.pruneQuarantine(); err != nil {
		return fail(err)
	}
	return nil
}

// pruneQuarantine removes the oldest quarantined snapshots beyond
// maxQuarantined. An entry whose name has no time counts as oldest.
func (s *Store) pruneQuarantine() error {
	names, err := readDirNames(s.quarantineDir())
	if err != nil || len(names) <= maxQuarantined {
		return err
	}
	when := func(name string) int64 {
		i := strings.LastIndexByte(name, '-')
		n, err := strconv.ParseInt(name[i+1:], 10, 64)
		if i < 0 || err != nil {
			return -1
		}
		return n
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(when(a), when(b)), cmp.Compare(a, b))
	})
	for _, name := range names[:len(names)-maxQuarantined] {
		if err := os.RemoveAll(filepath.Join(s.quarantineDir(), name)); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the snapshot of release. A missing snapshot is not an
// error.
func (s *Store) Delete(release string) error {
	if err := checkRelease(release); err != nil {
		return fmt.Errorf("delete snapshot: %w: %v", ErrInvalid, err)
	}
	unlock := s.locks.lock(release)
	defer unlock()
	if err := s.remove(release); err != nil {
		return fmt.Errorf("delete snapshot %s: %w", short(release), err)
	}
	return nil
}

// remove deletes the snapshot of release: the manifest first, so that a
// crash part-way leaves no snapshot rather than a broken one. The caller
// holds the release's lock.
func (s *Store) remove(release string) error {
	if err := os.Remove(s.manifestPath(release)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	s.mu.Lock()
	delete(s.index, release)
	s.mu.Unlock()
	return os.RemoveAll(s.path(release))
}

// DeleteApp removes every snapshot whose manifest names app, except the
// one of release keep ("" keeps none), and returns how many it removed.
func (s *Store) DeleteApp(app, keep string) (int, error) {
	if app == "" {
		return 0, fmt.Errorf("delete snapshots of app: %w: empty app", ErrInvalid)
	}
	n := 0
	for _, release := range s.releases(func(r string, e *entry) bool { return e.app == app && r != keep }) {
		unlock := s.locks.lock(release)
		s.mu.Lock()
		e := s.index[release]
		still := e != nil && e.app == app
		s.mu.Unlock()
		var err error
		if still {
			err = s.remove(release)
		}
		unlock()
		if err != nil {
			return n, fmt.Errorf("delete snapshots of app %q: %s: %w", app, short(release), err)
		}
		if still {
			n++
		}
	}
	return n, nil
}

// releases returns the sorted releases in the index for which ok is true.
func (s *Store) releases(ok func(string, *entry) bool) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for r, e := range s.index {
		if ok(r, e) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// List returns every stored snapshot, sorted by app and release. It reads
// only the index, not the disk.
func (s *Store) List() ([]Info, error) {
	s.mu.Lock()
	out := make([]Info, 0, len(s.index))
	for r, e := range s.index {
		out = append(out, Info{App: e.app, Release: r, Size: e.size, LastUsed: e.lastUsed, Created: e.created})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Info) int {
		return cmp.Or(cmp.Compare(a.App, b.App), cmp.Compare(a.Release, b.Release))
	})
	return out, nil
}

// TotalBytes returns the bytes all stored snapshots occupy on disk,
// quarantined ones not counted.
func (s *Store) TotalBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, e := range s.index {
		n += e.size
	}
	return n
}

// Reap removes every snapshot for which keep(app, release) is false (its
// app deleted, its release no longer current), and, if Options.TTL > 0,
// every snapshot not used within TTL; then removes least recently used
// snapshots while the store is over Options.MaxBytes. A snapshot whose
// manifest cannot be parsed is offered to keep with app "". keep may be
// nil (keep all) and is called without any lock held. Reap returns the
// removed releases, sorted, also when it fails part-way. ctx is checked
// between snapshots.
func (s *Store) Reap(ctx context.Context, keep func(app, release string) bool) ([]string, error) {
	type cand struct {
		release, app string
	}
	var cands []cand
	s.mu.Lock()
	for r, e := range s.index {
		cands = append(cands, cand{r, e.app})
	}
	s.mu.Unlock()
	slices.SortFunc(cands, func(a, b cand) int { return cmp.Compare(a.release, b.release) })

	expired := func(e *entry, now time.Time) bool {
		return s.opts.TTL > 0 && now.Sub(e.lastUsed) > s.opts.TTL
	}
	var removed []string
	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			slices.Sort(removed)
			return removed, fmt.Errorf("reap snapshots: %w", err)
		}
		unwanted := keep != nil && !keep(c.app, c.release)
		unlock := s.locks.lock(c.release)
		s.mu.Lock()
		e := s.index[c.release]
		// Look again under the lock: a Get may have used it meanwhile.
		drop := e != nil && e.app == c.app && (unwanted || expired(e, s.now()))
		s.mu.Unlock()
		var err error
		if drop {
			err = s.remove(c.release)
		}
		unlock()
		if err != nil {
			slices.Sort(removed)
			return removed, fmt.Errorf("reap snapshots: %s: %w", short(c.release), err)
		}
		if drop {
			removed = append(removed, c.release)
		}
	}
	evicted, err := s.evict()
	removed = append(removed, evicted...)
	slices.Sort(removed)
	if err != nil {
		return removed, fmt.Errorf("reap snapshots: %w", err)
	}
	return removed, nil
}

// evict removes least recently used snapshots, none that a Put is writing,
// while the store is over Options.MaxBytes, and returns their releases.
// The caller holds no release lock.
func (s *Store) evict() ([]string, error) {
	if s.opts.MaxBytes <= 0 {
		return nil, nil
	}
	var evicted []string
	for {
		s.mu.Lock()
		var total int64
		victim, v := "", (*entry)(nil)
		for r, e := range s.index {
			total += e.size
			if s.pinned[r] > 0 {
				continue
			}
			if v == nil || e.lastUsed.Before(v.lastUsed) || (e.lastUsed.Equal(v.lastUsed) && r < victim) {
				victim, v = r, e
			}
		}
		if total <= s.opts.MaxBytes || v == nil {
			s.mu.Unlock()
			return evicted, nil
		}
		lastUsed := v.lastUsed
		s.mu.Unlock()

		unlock := s.locks.lock(victim)
		s.mu.Lock()
		e := s.index[victim]
		// Still the one to go only if nobody used, replaced or pinned it meanwhile.
		still := e == v && e.lastUsed.Equal(lastUsed) && s.pinned[victim] == 0
		s.mu.Unlock()
		var err error
		if still {
			err = s.remove(victim)
		}
		unlock()
		if err != nil {
			return evicted, fmt.Errorf("evict %s: %w", short(victim), err)
		}
		if still {
			evicted = append(evicted, victim)
		}
	}
}

func (s *Store) pin(release string) {
	s.mu.Lock()
	s.pinned[release]++
	s.mu.Unlock()
}

func (s *Store) unpin(release string) {
	s.mu.Lock()
	if s.pinned[release]--; s.pinned[release] == 0 {
		delete(s.pinned, release)
	}
	s.mu.Unlock()
}

// readDirNames returns the names in dir; a missing dir has none.
func readDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

// keyedLocks is a read-write lock per release, created on first use and
// dropped when no one holds or waits for it.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	sync.RWMutex
	refs int
}

func (k *keyedLocks) acquire(key string) *keyedLock {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = make(map[string]*keyedLock)
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{}
		k.m[key] = l
	}
	l.refs++
	return l
}

func (k *keyedLocks) release(key string, l *keyedLock) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(k.m, key)
	}
}

// lock takes key's lock for writing and returns its unlock.
func (k *keyedLocks) lock(key string) func() {
	l := k.acquire(key)
	l.Lock()
	return func() { l.Unlock(); k.release(key, l) }
}

// rlock takes key's lock for reading and returns its unlock.
func (k *keyedLocks) rlock(key string) func() {
	l := k.acquire(key)
	l.RLock()
	return func() { l.RUnlock(); k.release(key, l) }
}
