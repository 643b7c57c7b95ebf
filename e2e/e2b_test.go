package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// e2bSDK installs the pinned E2B SDK (e2e/e2bsdk/package-lock.json) once
// into a cache keyed by the lock file, and returns the directory to run
// the e2e/e2bsdk scripts in.
func e2bSDK(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the E2B SDK test needs Node.js and npm", tool)
		}
	}
	lock, err := os.ReadFile("e2bsdk/package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	cache := os.Getenv("FROST_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "frost")
	}
	dir := filepath.Join(cache, "e2bsdk", hex.EncodeToString(sum[:8]))
	for _, f := range []string{"package.json", "package-lock.json", "control.mjs", "data.mjs", "files.mjs", "bg.mjs", "host.mjs", "localhost-dns.mjs"} {
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
	s, _ := startSandboxServer(t, data, "--https", "127.0.0.1:0", "--domain", "frost.localhost")
	for _, script := range []string{"control.mjs", "data.mjs", "files.mjs", "bg.mjs", "host.mjs"} {
		t.Run(script, func(t *testing.T) {
			cmd := exec.Command("node", script)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(),
				"E2B_API_URL=http://"+s.api,
				"E2B_API_KEY=e2b_"+strings.TrimPrefix(s.token, "frost_"),
			)
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
