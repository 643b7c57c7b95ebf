// Package etcd is the cluster registry.Store: the catalogue in etcd (3.7),
// shared by every process of a Frost cluster, with leases for node liveness
// and watches for changes.
//
// Every key starts with Options.Prefix (default "/frost/"); names and IDs in
// keys are path-escaped (url.PathEscape), so no name can reach into another's
// keys ("web" and "web/x" never mix):
//
//	schema                 layout version ("1")
//	apps/NAME              registry.App
//	releases/APP/ID        registry.Release
//	sandboxes/ID           registry.Sandbox
//	templates/KEY          registry.Template (KEY: NAME, or TENANT/NAME)
//	nodes/NAME             registry.Node, attached to the member's lease
//	secrets/NAME           a cluster-wide secret (Secret)
//
// Values are the types' JSON. Read-modify-write (UpdateApp, UpdateSandbox)
// is an optimistic transaction that compares the key's mod revision and
// retries on conflict, so concurrent writers in different processes never
// lose an update; DeleteApp removes the app and its releases in one
// transaction, PutRelease checks the app and the ID in the one that writes.
package etcd

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/frostdev/frost/internal/registry"
)

var _ registry.Store = (*Store)(nil)

// ErrCorrupt: a value under the prefix is not what Frost wrote there.
var ErrCorrupt = errors.New("registry value is corrupt")

// schemaVersion is the key layout this package writes; Open refuses newer ones.
const schemaVersion = 1

// Options configures Open. Zero fields take DefaultOptions' values.
type Options struct {
	// Endpoints are etcd's client URLs, e.g. "http://10.0.0.1:2379". The
	// client spreads requests over them and fails over between them.
	Endpoints []string
	// Prefix starts every key Frost writes, so that several Frost clusters
	// (or test runs) can share one etcd. It must start and end with '/'.
	Prefix string
	// DialTimeout bounds Open's first contact with etcd; Open fails if etcd
	// does not answer in time.
	DialTimeout time.Duration
	// OpTimeout bounds every request to etcd (a read, a write, a lease
	// grant): while no endpoint answers, etcd's client waits for one
	// without end, and the caller (a deploy, an API request) is told
	// registry.ErrUnavailable instead. Watches are not bounded.
	OpTimeout time.Duration
	// Logger receives the etcd client's logs (its info as Debug). Nil
	// discards them.
	Logger *slog.Logger
}

// DefaultOptions is a local etcd on its standard port.
func DefaultOptions() Options {
	return Options{
		Endpoints:   []string{"http://127.0.0.1:2379"},
		Prefix:      "/frost/",
		DialTimeout: 5 * time.Second,
		OpTimeout:   5 * time.Second,
	}
}

// revokeTimeout bounds the revocation of a lease when a membership ends; if
// etcd cannot be reached by then, the lease expires on its own.
const revokeTimeout = 2 * time.Second

// Store is a registry.Store in etcd. It is safe for concurrent use, and any
// number of Stores (in any number of processes) may share one prefix.
type Store struct {
	cli       *clientv3.Client
	prefix    string
	endpoints string
	opTimeout time.Duration

	mu    sync.Mutex    // guards adding to joins against Close
	done  chan struct{} // closed by Close
	joins sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Open connects to etcd and checks (or, on an empty prefix, writes) the
// layout version. It fails, saying how to start etcd, if no endpoint answers
// within opts.DialTimeout.
func Open(ctx context.Context, opts Options) (*Store, error) {
	def := DefaultOptions()
	if len(opts.Endpoints) == 0 {
		opts.Endpoints = def.Endpoints
	}
	if opts.Prefix == "" {
		opts.Prefix = def.Prefix
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = def.DialTimeout
	}
	if opts.OpTimeout == 0 {
		opts.OpTimeout = def.OpTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	endpoints := strings.Join(opts.Endpoints, ",")
	switch {
	case !strings.HasPrefix(opts.Prefix, "/") || !strings.HasSuffix(opts.Prefix, "/"):
		return nil, fmt.Errorf("etcd registry: prefix %q must start and end with '/'", opts.Prefix)
	case opts.DialTimeout < 0:
		return nil, fmt.Errorf("etcd registry: negative DialTimeout %v", opts.DialTimeout)
	case opts.OpTimeout < 0:
		return nil, fmt.Errorf("etcd registry: negative OpTimeout %v", opts.OpTimeout)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.DialTimeout,
		Logger:      zapToSlog(opts.Logger),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd at %s: %w", endpoints, err)
	}
	s := &Store{cli: cli, prefix: opts.Prefix, endpoints: endpoints, opTimeout: opts.OpTimeout, done: make(chan struct{})}
	ictx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	if err := s.init(ictx); err != nil {
		cli.Close()
		if ctx.Err() == nil && ictx.Err() != nil {
			return nil, fmt.Errorf("etcd at %s: no answer within %v: is it running? Start one with `etcd --data-dir DIR` "+
				"(scripts/etcd.sh builds the pinned version), or give the endpoints of a running one", endpoints, opts.DialTimeout)
		}
		return nil, fmt.Errorf("etcd at %s: %w", endpoints, err)
	}
	return s, nil
}

// init writes the schema version on an empty prefix, or checks it.
func (s *Store) init(ctx context.Context) error {
	k := s.prefix + "schema"
	tr, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, strconv.Itoa(schemaVersion))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		return err
	}
	if tr.Succeeded {
		return nil
	}
	kvs := tr.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return fmt.Errorf("%w: schema key %s vanished", ErrCorrupt, k)
	}
	n, err := strconv.Atoi(string(kvs[0].Value))
	if err != nil {
		return fmt.Errorf("%w: schema version %q under %s", ErrCorrupt, kvs[0].Value, k)
	}
	if n > schemaVersion {
		return fmt.Errorf("registry schema version %d under %s is newer than this frost understands (%d): upgrade frost", n, s.prefix, schemaVersion)
	}
	return nil
}

// Close ends the store's memberships (revoking their leases), makes running
// watches return registry.ErrClosed, and closes the client. Calling it again
// does nothing and returns the first call's error.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.done)
		s.mu.Unlock()
		s.joins.Wait()
		s.closeErr = s.cli.Close()
	})
	return s.closeErr
}

// Prefix returns the key prefix the store was opened on.
func (s *Store) Prefix() string { return s.prefix }

func (s *Store) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Keys. dir returns a directory's prefix, key one entry in it.
func (s *Store) dir(kind string) string       { return s.prefix + kind + "/" }
func (s *Store) key(kind, name string) string { return s.dir(kind) + url.PathEscape(name) }
func (s *Store) releaseDir(app string) string { return s.dir("releases") + url.PathEscape(app) + "/" }
func (s *Store) releaseKey(app, id string) string {
	return s.releaseDir(app) + url.PathEscape(id)
}

// nameOf returns the name in a key of dir kind.
func (s *Store) nameOf(kind string, key []byte) string {
	esc := strings.TrimPrefix(string(key), s.dir(kind))
	if name, err := url.PathUnescape(esc); err == nil {
		return name
	}
	return esc
}

// GetApp implements registry.Store.
func (s *Store) GetApp(ctx context.Context, name string) (registry.App, error) {
	var a registry.App
	_, err := s.get(ctx, s.key("apps", name), "app", name, &a)
	return a, err
}

// ListApps implements registry.Store.
func (s *Store) ListApps(ctx context.Context) ([]registry.App, error) {
	apps, err := list[registry.App](ctx, s, "apps", "app")
	slices.SortFunc(apps, func(a, b registry.App) int { return cmp.Compare(a.Name, b.Name) })
	return apps, err
}

// UpdateApp implements registry.Store. fn runs again, on the newer app,
// whenever another writer changed the app between the read and the write.
func (s *Store) UpdateApp(ctx context.Context, name string, create bool, fn func(*registry.App) error) (registry.App, error) {
	if name == "" {
		return registry.App{}, errors.New("update app: empty name")
	}
	return update(ctx, s, s.key("apps", name), "app", name, create,
		func() registry.App { return registry.App{Name: name} }, fn,
		func(a *registry.App) error {
			if a.Name != name {
				return fmt.Errorf("update app %q: fn renamed it to %q", name, a.Name)
			}
			return nil
		})
}

// DeleteApp implements registry.Store: the app and its releases go in one
// transaction.
func (s *Store) DeleteApp(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k := s.key("apps", name)
	octx, cancel := s.op(ctx)
	defer cancel()
	tr, err := s.cli.Txn(octx).
		If(clientv3.Compare(clientv3.CreateRevision(k), ">", 0)).
		Then(clientv3.OpDelete(k), clientv3.OpDelete(s.releaseDir(name), clientv3.WithPrefix())).
		Commit()
	if err != nil {
		return fmt.Errorf("delete app %q: %w", name, s.err(ctx, err))
	}
	if !tr.Succeeded {
		return fmt.Errorf("delete app %q: %w", name, registry.ErrNotFound)
	}
	return nil
}

// PutRelease implements registry.Store: the app's existence and the ID's
// absence are checked in the transaction that writes the release.
func (s *Store) PutRelease(ctx context.Context, r registry.Release) error {
	if r.ID == "" {
		return fmt.Errorf("put release of %q: empty ID", r.App)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("put release %s of app %q: %w", r.ID, r.App, err)
	}
	ak, rk := s.key("apps", r.App), s.releaseKey(r.App, r.ID)
	octx, cancel := s.op(ctx)
	defer cancel()
	tr, err := s.cli.Txn(octx).
		If(clientv3.Compare(clientv3.CreateRevision(ak), ">", 0), clientv3.Compare(clientv3.CreateRevision(rk), "=", 0)).
		Then(clientv3.OpPut(rk, string(data))).
		Else(clientv3.OpGet(ak, clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return fmt.Errorf("put release %s of app %q: %w", r.ID, r.App, s.err(ctx, err))
	}
	if !tr.Succeeded {
		if tr.Responses[0].GetResponseRange().Count == 0 {
			return fmt.Errorf("put release %s of app %q: %w", r.ID, r.App, registry.ErrNotFound)
		}
		return fmt.Errorf("put release %s of app %q: %w", r.ID, r.App, registry.ErrExists)
	}
	return nil
}

// GetRelease implements registry.Store.
func (s *Store) GetRelease(ctx context.Context, app, id string) (registry.Release, error) {
	var r registry.Release
	if id == "" {
		return r, fmt.Errorf("release %q of app %q: %w", id, app, registry.ErrNotFound)
	}
	_, err := s.get(ctx, s.releaseKey(app, id), "release", app+"/"+id, &r)
	return r, err
}

// ListReleases implements registry.Store: newest first, and by ID (also
// descending) among releases of one version.
func (s *Store) ListReleases(ctx context.Context, app string) ([]registry.Release, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// One transaction, so the app and its releases are read at one revision.
	octx, cancel := s.op(ctx)
	defer cancel()
	tr, err := s.cli.Txn(octx).Then(
		clientv3.OpGet(s.key("apps", app), clientv3.WithCountOnly()),
		clientv3.OpGet(s.releaseDir(app), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("list releases of app %q: %w", app, s.err(ctx, err))
	}
	if tr.Responses[0].GetResponseRange().Count == 0 {
		return nil, fmt.Errorf("list releases of app %q: %w", app, registry.ErrNotFound)
	}
	var rs []registry.Release
	for _, kv := range tr.Responses[1].GetResponseRange().Kvs {
		var r registry.Release
		if err := decode(kv, &r); err != nil {
			return nil, fmt.Errorf("list releases of app %q: %w", app, err)
		}
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b registry.Release) int {
		return cmp.Or(cmp.Compare(b.Version, a.Version), cmp.Compare(b.ID, a.ID))
	})
	return rs, nil
}

// get decodes the value at key into v and returns its mod revision, or is
// ErrNotFound.
func (s *Store) get(ctx context.Context, key, kind, name string, v any) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Get(octx, key)
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w", kind, name, s.err(ctx, err))
	}
	if len(resp.Kvs) == 0 {
		return 0, fmt.Errorf("%s %q: %w", kind, name, registry.ErrNotFound)
	}
	if err := decode(resp.Kvs[0], v); err != nil {
		return 0, fmt.Errorf("%s %q: %w", kind, name, err)
	}
	return resp.Kvs[0].ModRevision, nil
}

// list decodes every value in the directory kind, in key order.
func list[T any](ctx context.Context, s *Store, kind, what string) ([]T, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	octx, cancel := s.op(ctx)
	defer cancel()
	resp, err := s.cli.Get(octx, s.dir(kind), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %ss: %w", what, s.err(ctx, err))
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v T
		if err := decode(kv, &v); err != nil {
			return nil, fmt.Errorf("list %ss: %w", what, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// update is the optimistic read-modify-write behind UpdateApp and
// UpdateSandbox: read the value and its mod revision, run fn on it, and write
// the result only if the mod revision is unchanged. A transaction that loses
// the race returns the newer value, and fn runs again on that.
func update[T any](ctx context.Context, s *Store, key, kind, name string, create bool, zero func() T, fn func(*T) error, check func(*T) error) (T, error) {
	var none T
	if err := ctx.Err(); err != nil {
		return none, err
	}
	octx, cancel := s.op(ctx)
	resp, err := s.cli.Get(octx, key)
	cancel()
	if err != nil {
		return none, fmt.Errorf("update %s %q: %w", kind, name, s.err(ctx, err))
	}
	kvs := resp.Kvs
	for {
		v, rev := zero(), int64(0) // mod revision 0: the key does not exist
		switch {
		case len(kvs) > 0:
			if err := decode(kvs[0], &v); err != nil {
				return none, fmt.Errorf("update %s %q: %w", kind, name, err)
			}
			rev = kvs[0].ModRevision
		case !create:
			return none, fmt.Errorf("%s %q: %w", kind, name, registry.ErrNotFound)
		}
		if err := fn(&v); err != nil {
			return none, err // fn's error exactly as it returned it
		}
		if err := check(&v); err != nil {
			return none, err
		}
		data, err := json.Marshal(v)
		if err != nil {
			return none, fmt.Errorf("update %s %q: %w", kind, name, err)
		}
		octx, cancel := s.op(ctx)
		tr, err := s.cli.Txn(octx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(data))).
			Else(clientv3.OpGet(key)).
			Commit()
		cancel()
		if err != nil {
			return none, fmt.Errorf("update %s %q: %w", kind, name, s.err(ctx, err))
		}
		if tr.Succeeded {
			return v, nil
		}
		kvs = tr.Responses[0].GetResponseRange().Kvs
	}
}

// op returns ctx bounded by the store's OpTimeout, for one request to etcd.
func (s *Store) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

// err returns ctx's error if ctx ended (the client reports a cancelled call
// in its own words), ErrClosed if the store was closed, ErrUnavailable if
// the request ran out of its OpTimeout or etcd could not serve it (the
// connection broke, no leader), else err. ctx is the caller's, not op's.
//
// A write that fails with ErrUnavailable may or may not have been made:
// its connection can break after etcd applied it.
func (s *Store) err(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if s.closed() {
		return registry.ErrClosed
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), status.Code(err) == codes.DeadlineExceeded:
		return fmt.Errorf("%w: etcd at %s did not answer within %v", registry.ErrUnavailable, s.endpoints, s.opTimeout)
	case status.Code(err) == codes.Unavailable, errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrLeaderChanged),
		errors.Is(err, rpctypes.ErrTimeout), errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail), errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost):
		return fmt.Errorf("%w: etcd at %s: %w", registry.ErrUnavailable, s.endpoints, err)
	}
	return err
}

// decode unmarshals a stored value.
func decode(kv *mvccpb.KeyValue, into any) error {
	if err := json.Unmarshal(kv.Value, into); err != nil {
		return fmt.Errorf("%w: key %s: %w", ErrCorrupt, kv.Key, err)
	}
	return nil
}
