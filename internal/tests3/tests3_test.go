package tests3

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestBinaryFromEnv(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "versitygw")
	t.Setenv("FROST_VERSITYGW", missing)
	if _, err := Binary(); err == nil || !strings.Contains(err.Error(), "FROST_VERSITYGW") {
		t.Fatalf("Binary with FROST_VERSITYGW=%s = %v, want an error naming FROST_VERSITYGW", missing, err)
	}
}

// TestStart: two servers at once, each on its own port with its own bucket;
// an object survives Stop (or Kill) and Restart, and a stopped server refuses at once.
func TestStart(t *testing.T) {
	tests := []struct {
		name    string
		sidecar bool
		kill    bool // Kill instead of Stop
	}{
		{"default metadata", false, false},
		{"sidecar metadata, killed", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forceSidecar = tt.sidecar
			defer func() { forceSidecar = false }()
			a, b := Start(t), Start(t)
			if a.Endpoint == b.Endpoint {
				t.Fatalf("both servers on %s", a.Endpoint)
			}
			if tt.sidecar && !a.Sidecar() {
				t.Fatal("Sidecar() = false, want true")
			}
			t.Logf("sidecar: %v", a.Sidecar())

			ctx := t.Context()
			c := a.Client(t)
			data := []byte("kept across a restart")
			if _, err := c.PutObject(ctx, a.Bucket, "dir/key", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
				t.Fatalf("PutObject: %v", err)
			}
			checkObject(t, c, a.Bucket, "dir/key", data)
			if _, err := b.Client(t).StatObject(ctx, b.Bucket, "dir/key", minio.StatObjectOptions{}); err == nil {
				t.Fatal("the second server sees the first one's object")
			}

			if tt.kill {
				a.Kill()
				a.Kill() // a no-op
			} else {
				a.Stop()
				a.Stop() // a no-op
			}
			start := time.Now()
			stopped, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if _, err := c.StatObject(stopped, a.Bucket, "dir/key", minio.StatObjectOptions{}); err == nil {
				t.Fatal("StatObject on a stopped server succeeded")
			} else if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("StatObject on a stopped server took %v", d)
			} else {
				t.Logf("stopped: %v", err)
			}

			a.Restart()
			checkObject(t, c, a.Bucket, "dir/key", data)
		})
	}
}

func checkObject(t *testing.T, c *minio.Client, bucket, key string, want []byte) {
	t.Helper()
	o, err := c.GetObject(t.Context(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	defer o.Close()
	got, err := io.ReadAll(o)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("GetObject read %q, %v; want %q", got, err, want)
	}
}
