// Package testguest gives Go tests the example and test guests (wasm
// modules) built by scripts/build-guests.sh.
//
// The first call to Path in a test process runs the script, which is cheap
// when the guests are cached (under $FROST_CACHE, default ~/.cache/frost).
// A file lock keeps parallel test binaries from building at the same time.
// A failed build fails the test: the guests' toolchain is installed by
// scripts/deps.sh, never skipped.
package testguest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/testtool"
)

// files maps each guest's name to its file in the build directory.
var files = map[string]string{
	"hello-c":     "hello-c.wasm",     // http-wasm, C, no libc: 200 "hello from frost\n"
	"hello-go":    "hello-go.wasm",    // CGI, Go net/http/cgi: README demo app
	"probe":       "probe.wasm",       // http-wasm, C: isolation probe (JSON report)
	"spin":        "spin.wasm",        // http-wasm, C: ?mode=forever|work&n=N|recurse
	"membomb":     "membomb.wasm",     // http-wasm, C: mallocs until it fails
	"heavy":       "heavy.wasm",       // http-wasm, C: an init of tens of ms building a 256 KiB table
	"fat-1":       "fat-1.wasm",       // http-wasm, C: init fills 1 MiB of memory with random words
	"fat-64":      "fat-64.wasm",      // … 64 MiB
	"fat-512":     "fat-512.wasm",     // … 512 MiB
	"cgi":         "cgi.wasm",         // CGI, C: echoes the CGI variables and stdin
	"go-cgi":      "go-cgi.wasm",      // CGI, Go: echo, an isolation probe on /probe, /asset reads /assets
	"go-httpwasm": "go-httpwasm.wasm", // http-wasm, Go reactor (c-shared, wasmexport)
	"big":         "big.wasm",         // CGI, Go: > 20 MiB of code, answers "big ok"
	"noshape":     "noshape.wasm",     // valid wasm, neither handle_request nor _start
	"truncated":   "truncated.wasm",   // a module cut in half
	"not-wasm":    "not-wasm.txt",     // plain text
}

// Names returns the names Path accepts, sorted.
func Names() []string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Path returns the path of the built guest called name, building all guests
// on the first call in the process. It fails t if name is unknown or the
// build fails. Safe for concurrent use.
func Path(t testing.TB, name string) string {
	t.Helper()
	file, ok := files[name]
	if !ok {
		t.Fatalf("testguest: unknown guest %q; known: %s", name, strings.Join(Names(), ", "))
	}
	once.Do(func() {
		start := time.Now()
		dir, buildErr = build()
		if buildErr == nil {
			t.Logf("testguest: guests ready in %s (%s)", dir, time.Since(start).Round(time.Millisecond))
		}
	})
	if buildErr != nil {
		t.Fatalf("testguest: %v", buildErr)
	}
	return filepath.Join(dir, file)
}

var (
	once     sync.Once
	dir      string
	buildErr error
)

// build runs scripts/build-guests.sh, under an exclusive lock, into a
// directory of the cache that belongs to this checkout, and returns it.
func build() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	cache, err := testtool.CacheDir()
	if err != nil {
		return "", err
	}
	base := filepath.Join(cache, "testguest")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(base, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close() // closing releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}

	sum := sha256.Sum256([]byte(root))
	out := filepath.Join(base, hex.EncodeToString(sum[:8]))
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "build-guests.sh"), out)
	cmd.Env = append(os.Environ(), "FROST_CACHE="+cache)
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("scripts/build-guests.sh %s: %v (is the toolchain installed? run scripts/deps.sh)\n%s", out, err, output)
	}
	return out, nil
}

// repoRoot walks up from the working directory (a package directory under
// go test) to the directory holding go.mod.
func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("testguest: no go.mod above the working directory")
		}
		d = parent
	}
}
