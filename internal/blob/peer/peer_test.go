package peer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/frostdev/frost/internal/blob"
	"github.com/frostdev/frost/internal/blob/dir"
	"github.com/frostdev/frost/internal/registry"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// peerServer serves GET /v1/blobs/{digest} from a store, as a node's API
// does, counting requests; corrupt makes it send other bytes.
func peerServer(t *testing.T, store blob.Store, corrupt bool, hits *atomic.Int64) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		rc, _, err := store.Open(r.Context(), strings.TrimPrefix(r.URL.Path, "/v1/blobs/"))
		if errors.Is(err, blob.ErrNotFound) {
			http.NotFound(w, r)
			return
		}
		defer rc.Close()
		if corrupt {
			io.WriteString(w, "not what you asked for")
			return
		}
		io.Copy(w, rc)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newDir(t *testing.T) *dir.Store {
	s, err := dir.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFetchFromPeers(t *testing.T) {
	ctx := context.Background()
	data := []byte("a module that only n1 has")
	d := sum(data)
	n1, bad, empty := newDir(t), newDir(t), newDir(t)
	for _, s := range []blob.Store{n1, bad} {
		if _, err := s.Put(ctx, d, bytes.NewReader(data), 0); err != nil {
			t.Fatal(err)
		}
	}
	var h1, hBad, hEmpty atomic.Int64
	members := []registry.Node{
		{Name: "bad", APIAddr: peerServer(t, bad, true, &hBad).Listener.Addr().String()},
		{Name: "empty", APIAddr: peerServer(t, empty, false, &hEmpty).Listener.Addr().String()},
		{Name: "n1", APIAddr: peerServer(t, n1, false, &h1).Listener.Addr().String()},
		{Name: "me", APIAddr: "127.0.0.1:1"},
	}
	local := newDir(t)
	s := New(local, "me", func() []registry.Node { return members }, "tok")

	// Many readers at once: one fetch.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Go(func() {
			rc, info, err := s.Open(ctx, d)
			if err != nil {
				t.Error(err)
				return
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, data) || info.Size != int64(len(data)) {
				t.Errorf("read %q, %v", got, err)
			}
		})
	}
	wg.Wait()
	if h1.Load() != 1 {
		t.Errorf("n1 was asked %d times, want once", h1.Load())
	}
	if _, err := local.Stat(ctx, d); err != nil {
		t.Errorf("the fetched blob is not stored locally: %v", err)
	}
	// The corrupt peer's bytes were refused, not stored.
	if hBad.Load() != 1 {
		t.Errorf("the corrupt peer was asked %d times", hBad.Load())
	}
	// Served locally from now on.
	if _, err := s.Stat(ctx, d); err != nil || h1.Load() != 1 {
		t.Errorf("stat after the fetch: %v, %d more fetches", err, h1.Load()-1)
	}

	// Nobody has it: ErrNotFound, saying how many peers were asked.
	_, err := s.Stat(ctx, sum([]byte("nobody")))
	if !errors.Is(err, blob.ErrNotFound) || !strings.Contains(err.Error(), "3 peers") {
		t.Errorf("missing everywhere: %v", err)
	}
	if _, err := s.Stat(ctx, "not-a-digest"); errors.Is(err, blob.ErrNotFound) || err == nil {
		t.Errorf("bad digest: %v", err)
	}
}

// TestFetchFromANewPeer: the peer that has the blob joined a moment ago
// and the watched list lacks it: the membership read afresh finds it.
func TestFetchFromANewPeer(t *testing.T) {
	ctx := context.Background()
	data := []byte("a module the newest node took")
	d := sum(data)
	n3 := newDir(t)
	if _, err := n3.Put(ctx, d, bytes.NewReader(data), 0); err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int64
	watched := []registry.Node{{Name: "me", APIAddr: "127.0.0.1:1"}}
	fresh := append(watched, registry.Node{Name: "n3", APIAddr: peerServer(t, n3, false, &hits).Listener.Addr().String()})
	s := New(newDir(t), "me", func() []registry.Node { return watched }, "tok")
	if _, err := s.Stat(ctx, d); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("without Refresh: %v, want not found", err)
	}
	s.Refresh = func(context.Context) ([]registry.Node, error) { return fresh, nil }
	if _, err := s.Stat(ctx, d); err != nil || hits.Load() != 1 {
		t.Fatalf("with the membership read afresh: %v (n3 asked %d times)", err, hits.Load())
	}
}
