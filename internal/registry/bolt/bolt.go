// Package bolt is the single-machine registry.Store: apps and releases in a
// bbolt file in the data directory, one JSON value per key.
//
// The file holds five buckets: apps (name → App), releases (keyed so one
// app's releases are a range ordered by version; see keys.go), release IDs
// (app and ID → release key), sandboxes (ID → Sandbox) and templates (key →
// Template; registry.TemplateKey). A meta bucket records the schema version.
//
// bbolt locks the file while it is open, so only one process can use it; a
// second Open waits Options.LockTimeout and then fails with ErrLocked. The
// cluster part of the contract is therefore a cluster of one: members and
// watchers live in memory (cluster.go).
package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/frostdev/frost/internal/registry"
)

var _ registry.Store = (*Store)(nil)

// Errors from Open, checked with errors.Is.
var (
	// ErrLocked: another process (most likely another frost server using the
	// same data directory) has the file open.
	ErrLocked = errors.New("registry database is in use by another process")
	// ErrCorrupt: the file is not a registry database, or is damaged.
	ErrCorrupt = errors.New("registry database is corrupt")
)

// schemaVersion is the layout this package writes; Open refuses newer ones.
const schemaVersion = 1

var (
	appsBucket       = []byte("apps")
	releasesBucket   = []byte("releases")
	releaseIDsBucket = []byte("release_ids")
	sandboxesBucket  = []byte("sandboxes")
	templatesBucket  = []byte("templates")
	tenantsBucket    = []byte("tenants")
	metaBucket       = []byte("meta")
	schemaKey        = []byte("schema")
)

// DefaultLockTimeout is how long Open waits for another process to close the
// file when Options.LockTimeout is zero: long enough to ride out a server
// restart, short enough that a second server fails promptly.
const DefaultLockTimeout = 2 * time.Second

// Options configures Open. The zero value is the production configuration.
type Options struct {
	// LockTimeout is how long Open waits for the file lock held by another
	// process before failing with ErrLocked. Zero means DefaultLockTimeout.
	LockTimeout time.Duration
	// NoSync skips the fsync after each transaction. It is for tests only: a
	// crash can lose committed changes or corrupt the file.
	NoSync bool
}

// Store is a registry.Store in a bbolt file. It is safe for concurrent use;
// write transactions are serialized, reads run in parallel with them.
type Store struct {
	db        *bbolt.DB
	path      string
	closeOnce sync.Once
	closeErr  error
	cluster
}

// Open opens the registry file at path, creating it (mode 0600, and its
// directory, mode 0700) if it does not exist. If another process holds the
// file it waits up to opts.LockTimeout and then fails with ErrLocked; a file
// that is not a valid registry fails with ErrCorrupt.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout < 0 {
		return nil, fmt.Errorf("open registry %s: negative LockTimeout %v", path, opts.LockTimeout)
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open registry: %w", err)
	}
	db, err := openDB(path, opts)
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		return nil, fmt.Errorf("open registry %s: %w%s after waiting %v: is another frost server using this data directory? Stop it, or give this one another data directory",
			path, ErrLocked, holder(path), opts.LockTimeout)
	case errors.Is(err, bbolt.ErrInvalid), errors.Is(err, bbolt.ErrChecksum), errors.Is(err, bbolt.ErrVersionMismatch), errors.Is(err, errPanic):
		return nil, fmt.Errorf("open registry %s: %w (%w): restore it from a backup, or move it aside to start empty", path, ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("open registry %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	s.cluster.init()
	if err := s.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open registry %s: %w", path, err)
	}
	// Best effort: tell a second server who holds the lock.
	_ = os.WriteFile(pidPath(path), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	return s, nil
}

var errPanic = errors.New("bbolt panicked")

// openDB is bbolt.Open, turning a panic on a damaged file into an error.
func openDB(path string, opts Options) (db *bbolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", errPanic, p)
		}
	}()
	return bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.LockTimeout, NoSync: opts.NoSync})
}

func pidPath(path string) string { return path + ".pid" }

// readPid returns the pid in the pid file, or 0.
func readPid(path string) int {
	b, err := os.ReadFile(pidPath(path))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// holder returns " (held by pid N)" if the pid file names one, else "".
func holder(path string) string {
	if pid := readPid(path); pid != 0 {
		return fmt.Sprintf(" (held by pid %d)", pid)
	}
	return ""
}

// init creates the buckets and checks the schema version.
func (s *Store) init() error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		switch v := meta.Get(schemaKey); {
		case v == nil:
			if err := meta.Put(schemaKey, []byte(strconv.Itoa(schemaVersion))); err != nil {
				return err
			}
		default:
			n, err := strconv.Atoi(string(v))
			if err != nil {
				return fmt.Errorf("%w: schema version %q", ErrCorrupt, v)
			}
			if n > schemaVersion {
				return fmt.Errorf("registry schema version %d is newer than this frost understands (%d): upgrade frost", n, schemaVersion)
			}
		}
		for _, b := range [][]byte{appsBucket, releasesBucket, releaseIDsBucket, sandboxesBucket, templatesBucket, tenantsBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// Path returns the file the store was opened on.
func (s *Store) Path() string { return s.path }

// Close ends the memberships and watches, closes the file and releases its
// lock. Calling it again does nothing and returns the first call's error.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closeCluster()
		if readPid(s.path) == os.Getpid() {
			os.Remove(pidPath(s.path))
		}
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// GetApp implements registry.Store.
func (s *Store) GetApp(ctx context.Context, name string) (registry.App, error) {
	var a registry.App
	err := s.view(ctx, func(tx *bbolt.Tx) (err error) {
		a, err = getApp(tx, name)
		return err
	})
	return a, err
}

// ListApps implements registry.Store.
func (s *Store) ListApps(ctx context.Context) ([]registry.App, error) {
	var apps []registry.App
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(appsBucket).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var a registry.App
			if err := decode(v, &a); err != nil {
				return fmt.Errorf("app %q: %w", k, err)
			}
			apps = append(apps, a)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	return apps, nil
}

// UpdateApp implements registry.Store. fn runs once, inside the write
// transaction, which blocks every other write until it returns, so it must
// be quick and must not call the Store. fn may not change the app's Name.
func (s *Store) UpdateApp(ctx context.Context, name string, create bool, fn func(*registry.App) error) (registry.App, error) {
	if name == "" {
		return registry.App{}, errors.New("update app: empty name")
	}
	var out registry.App
	s.appMu.Lock()
	defer s.appMu.Unlock()
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		a, err := getApp(tx, name)
		switch {
		case errors.Is(err, registry.ErrNotFound) && create:
			a = registry.App{Name: name}
		case err != nil:
			return err
		}
		if err := fn(&a); err != nil {
			return fnError{err}
		}
		if a.Name != name {
			return fmt.Errorf("update app %q: fn renamed it to %q", name, a.Name)
		}
		if err := put(tx.Bucket(appsBucket), []byte(name), a); err != nil {
			return fmt.Errorf("update app %q: %w", name, err)
		}
		out = a
		return nil
	})
	if fe := (fnError{}); errors.As(err, &fe) {
		return registry.App{}, fe.err // fn's error exactly as it returned it
	}
	if err != nil {
		return registry.App{}, err
	}
	s.notifyApps(registry.AppEvent{App: out})
	return out, nil
}

// fnError marks an error returned by UpdateApp's fn.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// DeleteApp implements registry.Store.
func (s *Store) DeleteApp(ctx context.Context, name string) error {
	s.appMu.Lock()
	defer s.appMu.Unlock()
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		apps := tx.Bucket(appsBucket)
		if apps.Get([]byte(name)) == nil {
			return fmt.Errorf("delete app %q: %w", name, registry.ErrNotFound)
		}
		if err := apps.Delete([]byte(name)); err != nil {
			return fmt.Errorf("delete app %q: %w", name, err)
		}
		prefix := appPrefix(name)
		for _, b := range [][]byte{releasesBucket, releaseIDsBucket} {
			if err := deletePrefix(tx.Bucket(b), prefix); err != nil {
				return fmt.Errorf("delete app %q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.notifyApps(registry.AppEvent{App: registry.App{Name: name}, Deleted: true})
	return nil
}

// PutRelease implements registry.Store.
func (s *Store) PutRelease(ctx context.Context, r registry.Release) error {
	if r.ID == "" {
		return fmt.Errorf("put release of %q: empty ID", r.App)
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		if tx.Bucket(appsBucket).Get([]byte(r.App)) == nil {
			return fmt.Errorf("put release %s of app %q: %w", r.ID, r.App, registry.ErrNotFound)
		}
		ids := tx.Bucket(releaseIDsBucket)
		ik := idKey(r.App, r.ID)
		if ids.Get(ik) != nil {
			return fmt.Errorf("put release %s of app %q: %w", r.ID, r.App, registry.ErrExists)
		}
		rk := releaseKey(r.App, r.Version, r.ID)
		if err := put(tx.Bucket(releasesBucket), rk, r); err != nil {
			return fmt.Errorf("put release %s of app %q: %w", r.ID, r.App, err)
		}
		if err := ids.Put(ik, rk); err != nil {
			return fmt.Errorf("put release %s of app %q: %w", r.ID, r.App, err)
		}
		return nil
	})
}

// GetRelease implements registry.Store.
func (s *Store) GetRelease(ctx context.Context, app, id string) (registry.Release, error) {
	var r registry.Release
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		rk := tx.Bucket(releaseIDsBucket).Get(idKey(app, id))
		if rk == nil {
			return fmt.Errorf("release %s of app %q: %w", id, app, registry.ErrNotFound)
		}
		v := tx.Bucket(releasesBucket).Get(rk)
		if v == nil {
			return fmt.Errorf("release %s of app %q: %w: ID index points at a missing release", id, app, ErrCorrupt)
		}
		if err := decode(v, &r); err != nil {
			return fmt.Errorf("release %s of app %q: %w", id, app, err)
		}
		return nil
	})
	return r, err
}

// ListReleases implements registry.Store. It is ErrNotFound if the app is missing.
func (s *Store) ListReleases(ctx context.Context, app string) ([]registry.Release, error) {
	var rs []registry.Release
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		if tx.Bucket(appsBucket).Get([]byte(app)) == nil {
			return fmt.Errorf("list releases of app %q: %w", app, registry.ErrNotFound)
		}
		prefix := appPrefix(app)
		c := tx.Bucket(releasesBucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var r registry.Release
			if err := decode(v, &r); err != nil {
				return fmt.Errorf("list releases of app %q: %w", app, err)
			}
			rs = append(rs, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(rs) // keys ascend by version; callers want the newest first
	return rs, nil
}

// view runs fn in a read transaction, unless ctx is already done.
func (s *Store) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// update runs fn in a write transaction, unless ctx is done before the
// transaction starts (waiting for other writers included).
func (s *Store) update(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(tx)
	})
}

func getApp(tx *bbolt.Tx, name string) (registry.App, error) {
	var a registry.App
	v := tx.Bucket(appsBucket).Get([]byte(name))
	if v == nil {
		return a, fmt.Errorf("app %q: %w", name, registry.ErrNotFound)
	}
	if err := decode(v, &a); err != nil {
		return a, fmt.Errorf("app %q: %w", name, err)
	}
	return a, nil
}

func put(b *bbolt.Bucket, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, data)
}

// decode unmarshals a stored value. v is only valid during its transaction,
// so nothing decoded may alias it; json.Unmarshal copies.
func decode(v []byte, into any) error {
	if err := json.Unmarshal(v, into); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return nil
}

// deletePrefix removes every key that starts with prefix. Keys are collected
// first: deleting while a cursor moves can skip keys.
func deletePrefix(b *bbolt.Bucket, prefix []byte) error {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
