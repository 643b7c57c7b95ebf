// Package peer is the blob store of a cluster without shared storage:
// every blob lives in the node's own store, and one it lacks is fetched
// from the other nodes (GET /v1/blobs/{digest} on their control API, with
// the cluster's token), verified against its SHA-256 as it is stored, and
// served locally from then on. It keeps the blob.Store contract, so that a
// store on S3 can take its place.
package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/frostdev/frost/internal/blob"
	"github.com/frostdev/frost/internal/flight"
	"github.com/frostdev/frost/internal/registry"
)

// Store is a node's local blob store that fetches missing blobs from peers.
type Store struct {
	local  blob.Store
	self   string
	peers  func() []registry.Node
	token  string
	client *http.Client

	// Refresh, if set, reads the membership afresh: a node's watched
	// list can lag a node that joined a moment ago, which may be the one
	// that has the blob (it took the deploy). Asked when no peer of the
	// watched list had the blob.
	Refresh func(context.Context) ([]registry.Node, error)

	fetching flight.Group // one fetch per digest at a time
}

// New returns the store: local holds the blobs, peers lists the cluster's
// members (self, this node's name, is skipped), token authorises fetches.
func New(local blob.Store, self string, peers func() []registry.Node, token string) *Store {
	return &Store{local: local, self: self, peers: peers, token: token,
		client: &http.Client{Timeout: 5 * time.Minute}}
}

// Local is the node's own store: what it serves to peers (a peer never
// asks its peers on another's behalf, so fetches cannot loop).
func (s *Store) Local() blob.Store { return s.local }

// Put implements blob.Store.
func (s *Store) Put(ctx context.Context, want string, r io.Reader, limit int64) (blob.Info, error) {
	return s.local.Put(ctx, want, r, limit)
}

// Open implements blob.Store, fetching the blob from a peer if this node
// lacks it.
func (s *Store) Open(ctx context.Context, digest string) (io.ReadCloser, blob.Info, error) {
	rc, info, err := s.local.Open(ctx, digest)
	if errors.Is(err, blob.ErrNotFound) {
		if err = s.fetch(ctx, digest); err == nil {
			return s.local.Open(ctx, digest)
		}
	}
	return rc, info, err
}

// Stat implements blob.Store, fetching the blob from a peer if this node
// lacks it.
func (s *Store) Stat(ctx context.Context, digest string) (blob.Info, error) {
	info, err := s.local.Stat(ctx, digest)
	if errors.Is(err, blob.ErrNotFound) {
		if err = s.fetch(ctx, digest); err == nil {
			return s.local.Stat(ctx, digest)
		}
	}
	return info, err
}

// Delete implements blob.Store (this node's copy).
func (s *Store) Delete(ctx context.Context, digest string) error { return s.local.Delete(ctx, digest) }

// List implements blob.Store (this node's blobs).
func (s *Store) List(ctx context.Context, fn func(blob.Info) error) error {
	return s.local.List(ctx, fn)
}

// fetch copies the blob from the first peer that has it.
func (s *Store) fetch(ctx context.Context, digest string) error {
	if err := blob.ValidateDigest(digest); err != nil {
		return err
	}
	_, err := s.fetching.Do(ctx, digest, func(ctx context.Context) (any, error) { return nil, s.fetchOnce(ctx, digest) })
	return err
}

func (s *Store) fetchOnce(ctx context.Context, digest string) error {
	var errs []error
	asked := map[string]bool{s.self: true}
	try := func(nodes []registry.Node) bool {
		for _, p := range nodes {
			if asked[p.Name] {
				continue
			}
			asked[p.Name] = true
			err := s.fetchFrom(ctx, p, digest)
			if err == nil {
				return true
			}
			if !errors.Is(err, blob.ErrNotFound) {
				errs = append(errs, fmt.Errorf("node %s: %w", p.Name, err))
			}
		}
		return false
	}
	if try(s.peers()) {
		return nil
	}
	if s.Refresh != nil {
		nodes, err := s.Refresh(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading the membership: %w", err))
		} else if try(nodes) {
			return nil
		}
	}
	return fmt.Errorf("blob %s is not on this node nor on its %d peers: %w", digest, len(asked)-1, errors.Join(append([]error{blob.ErrNotFound}, errs...)...))
}

func (s *Store) fetchFrom(ctx context.Context, p registry.Node, digest string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.APIAddr+"/v1/blobs/"+digest, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return blob.ErrNotFound
	default:
		return fmt.Errorf("GET /v1/blobs/%s: %s", digest, resp.Status)
	}
	// Put verifies the SHA-256 as the bytes arrive: a peer's corrupt copy
	// is refused (ErrDigestMismatch) and the next peer is asked.
	_, err = s.local.Put(ctx, digest, resp.Body, 0)
	return err
}
