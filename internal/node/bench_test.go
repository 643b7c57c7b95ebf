package node

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/blob"
	"github.com/frostdev/frost/internal/blob/dir"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/registry/bolt"
	"github.com/frostdev/frost/internal/runtime/wasm"
	"github.com/frostdev/frost/internal/snapshot"
	"github.com/frostdev/frost/internal/testguest"
)

func newTestNode(t testing.TB) *Node {
	t.Helper()
	return newTestNodeWith(t, nil)
}

// newTestNodeWith is newTestNode with edit applied to the node's config.
func newTestNodeWith(t testing.TB, edit func(*Config)) *Node {
	t.Helper()
	reg, blobs := testStores(t)
	return newTestNodeOn(t, reg, blobs, edit)
}

// testStores are a bbolt registry and a blob directory in a temporary
// directory.
func testStores(t testing.TB) (*bolt.Store, blob.Store) {
	t.Helper()
	d := t.TempDir()
	reg, err := bolt.Open(filepath.Join(d, "reg.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	blobs, err := dir.New(filepath.Join(d, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return reg, blobs
}

// newTestNodeOn is a node on reg and blobs, which other nodes may share.
func newTestNodeOn(t testing.TB, reg registry.Store, blobs blob.Store, edit func(*Config)) *Node {
	t.Helper()
	d := t.TempDir()
	rt, err := wasm.New(wasm.Config{CacheDir: filepath.Join(d, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	snaps, err := snapshot.Open(filepath.Join(d, "snapshots"), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Snapshots = snaps
	if edit != nil {
		edit(&cfg)
	}
	n, err := New(context.Background(), cfg, reg, blobs, rt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(context.Background()) })
	return n
}

func deployGuest(t testing.TB, n *Node, name, guest string) {
	t.Helper()
	f, err := os.Open(testguest.Path(t, guest))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := n.blobs.Put(context.Background(), "", f, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Deploy(context.Background(), name, api.DeployRequest{Module: info.Digest}); err != nil {
		t.Fatal(err)
	}
}

// nopWriter is a ResponseWriter that discards, so the benchmark measures
// the handler, not a recorder.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkServeHTTP is the node's in-process cost per request for the
// http-wasm hello guest, against a vanilla handler answering the same.
func BenchmarkServeHTTP(b *testing.B) {
	body := []byte("hello from frost\n")
	vanilla := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	n := newTestNode(b)
	deployGuest(b, n, "hello", "hello-c")
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"vanilla", vanilla}, {"frost", n}} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "http://hello.localhost/", nil)
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				clear(w.h)
				c.h.ServeHTTP(w, req)
			}
		})
	}
}
