// Package testtool holds what Frost's test helpers share: where the
// project's scripts cache what they build (test guests, pinned etcd and
// versitygw binaries), free loopback addresses for the servers tests
// start, and a log buffer safe for a child process's writes.
package testtool

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// CacheDir is where Frost's scripts and tests keep build products:
// $FROST_CACHE, or ~/.cache/frost.
func CacheDir() (string, error) {
	if d := os.Getenv("FROST_CACHE"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache dir: %w (set FROST_CACHE)", err)
	}
	return filepath.Join(home, ".cache", "frost"), nil
}

// Binary returns the pinned tool a script installs: $env if set, else
// CacheDir/tool/version/tool. It is an error if the file is not there.
func Binary(env, tool, version string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w", env, err)
		}
		return p, nil
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(cache, tool, version, tool)
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

// FreeAddrs returns n distinct loopback addresses that were free a moment
// ago (all bound at once, so no two are the same). Another process may
// take one before the caller does: callers retry.
func FreeAddrs(n int) ([]string, error) {
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		addrs[i] = l.Addr().String()
	}
	return addrs, nil
}

// SyncBuffer is a bytes.Buffer safe for a process's writes and the test's
// reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Exchange writes a raw HTTP/1.1 request's bytes on conn and reads the
// answer (after any 1xx) from br, which reads conn; the answer's body is
// read whole.
func Exchange(t testing.TB, conn net.Conn, br *bufio.Reader, method, request string) (*http.Response, string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	for err == nil && resp.StatusCode < 200 {
		resp, err = http.ReadResponse(br, &http.Request{Method: method})
	}
	if err != nil {
		t.Fatalf("%q: %v", request, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: body: %v", request, err)
	}
	return resp, string(b)
}
