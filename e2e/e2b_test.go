package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testbox"
	"github.com/frostdev/frost/internal/testtool"
)

// e2bSDK installs the pinned E2B SDK (e2e/e2bsdk/package-lock.json) once
// into a cache keyed by the lock file, and returns the directory to run
// the e2e/e2bsdk scripts in.
func e2bSDK(t *testing.T) string {
	t.Helper()
	cache, err := testtool.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	// The SDK needs Node.js >= 20.18.1: the machine's, or the pinned build
	// scripts/deps.sh fetches when the machine's is missing or older.
	if !nodeNewEnough() {
		bin := filepath.Join(cache, "node", "20.20.2", "bin")
		if _, err := os.Stat(filepath.Join(bin, "node")); err != nil {
			t.Skip("Node.js >= 20.18.1 is not installed: run scripts/deps.sh (make test does)")
		}
		t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed: run scripts/deps.sh (make test does)")
	}
	lock, err := os.ReadFile("e2bsdk/package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	dir := filepath.Join(cache, "e2bsdk", hex.EncodeToString(sum[:8]))
	for _, f := range []string{"package.json", "package-lock.json", "control.mjs", "data.mjs", "files.mjs", "bg.mjs", "host.mjs", "pty.mjs", "fork.mjs", "net.mjs", "tenant.mjs", "localhost-dns.mjs", "takeover.mjs"} {
		b, err := os.ReadFile(filepath.Join("e2bsdk", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "e2b", "package.json")); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci (the pinned E2B SDK): %v\n%s", err, out)
		}
	}
	return dir
}

// nodeNewEnough says whether the machine's node is at least 20.18.1.
func nodeNewEnough() bool {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return false
	}
	var v [3]int
	if n, _ := fmt.Sscanf(strings.TrimSpace(string(out)), "v%d.%d.%d", &v[0], &v[1], &v[2]); n != 3 {
		return false
	}
	return slices.Compare(v[:], []int{20, 18, 1}) >= 0
}

// TestE2BSDK runs the official E2B SDK, unmodified and pinned, against a
// real frost server with real gVisor sandboxes: the control plane
// (create, getInfo, list by metadata, setTimeout, pause, connect, kill)
// and the data plane (commands and files, before and after a pause) over
// E2B_SANDBOX_URL; then, with only E2B_DOMAIN, the data plane and
// getHost(port) over Frost's TLS listener with its development
// certificate.
func TestE2BSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("installs the E2B SDK with npm")
	}
	dir := e2bSDK(t)
	data := t.TempDir()
	s, c := startSandboxServer(t, data, "--https", "127.0.0.1:0", "--domain", "frost.localhost")
	outside := testbox.NewOutside(t)
	outsideURL := serveWhoAmI(t, outside)
	ctx := context.Background()
	tenant, err := c.CreateTenant(ctx, "sdk-tenant")
	if err != nil {
		t.Fatal(err)
	}
	adminSandbox, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, script := range []string{"control.mjs", "data.mjs", "files.mjs", "bg.mjs", "pty.mjs", "fork.mjs", "net.mjs", "tenant.mjs", "host.mjs"} {
		t.Run(script, func(t *testing.T) {
			cmd := exec.Command("node", script)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(),
				"E2B_API_URL=http://"+s.api,
				"E2B_API_KEY=e2b_"+strings.TrimPrefix(s.token, "frost_"),
				"OUTSIDE_URL="+outsideURL, "OUTSIDE_HOST="+outside.Host.String(),
			)
			if script == "tenant.mjs" {
				cmd.Env = append(cmd.Env, "E2B_API_KEY="+api.E2BKey(tenant.Token), "OTHER_SANDBOX="+adminSandbox.ID)
			}
			if script == "host.mjs" {
				_, port, _ := strings.Cut(s.https, ":")
				cmd.Args = []string{"node", "--import", "./localhost-dns.mjs", script}
				cmd.Env = append(cmd.Env, "E2B_DOMAIN=frost.localhost:"+port,
					"NODE_EXTRA_CA_CERTS="+filepath.Join(data, "tls", "ca.pem"))
			} else {
				cmd.Env = append(cmd.Env, "E2B_SANDBOX_URL=http://"+s.http)
			}
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), ": ok") {
				t.Fatalf("the E2B SDK against frost (%s): %v\n%s", script, err, out)
			}
		})
	}
}
