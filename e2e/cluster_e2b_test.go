package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testetcd"
	"github.com/frostdev/frost/internal/tests3"
)

// TestClusterE2BSDK runs the official E2B SDK, unmodified and pinned,
// against a Frost cluster: two sandbox nodes (real runsc) sharing a real
// etcd and a real versitygw, and a gateway with --https, on loopback. The
// SDK knows only the gateway: E2B_API_URL is its control API, and its data
// plane goes through the gateway's app listener (E2B_SANDBOX_URL) or, with
// only E2B_DOMAIN, through 49983-ID.DOMAIN on the gateway's TLS listener
// (the SDK is told the gateway's domain and port, not a node's; the nodes
// keep the default --domain, localhost, and the gateway sends them their
// requests under it). Every script of the single-machine test passes as
// it is; then a sandbox paused through the SDK outlives its node: after
// kill -9 of the node that held it, Sandbox.connect resumes it on the
// other one with its files, and the server it had started as a
// background command still answering (a pause does not end commands).
func TestClusterE2BSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("installs the E2B SDK with npm")
	}
	dir := e2bSDK(t)
	s3 := tests3.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	t.Setenv("AWS_REGION", s3.Region)
	etcd := strings.Join(testetcd.Start(t), ",")
	nodes := map[string]*server{}
	for _, name := range []string{"n1", "n2"} {
		nodes[name], _ = startSandboxServer(t, "", "--role", "node", "--name", name, "--etcd", etcd,
			"--s3", "http://"+s3.Endpoint+"/"+s3.Bucket+"/frost")
	}
	gwData := t.TempDir()
	gw := startServer(t, gwData, "--role", "gateway", "--etcd", etcd,
		"--https", "127.0.0.1:0", "--domain", "frost.localhost")
	waitMembers(t, gw, 2)
	_, tlsPort, _ := strings.Cut(gw.https, ":")
	env := append(os.Environ(),
		"E2B_API_URL=http://"+gw.api,
		"E2B_API_KEY=e2b_"+strings.TrimPrefix(gw.token, "frost_"),
	)
	viaURL := append(slices.Clip(env), "E2B_SANDBOX_URL=http://"+gw.http)
	node := func(t *testing.T, env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command("node", args...)
		cmd.Dir = dir
		cmd.Env = env
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil || !strings.Contains(out.String(), ": ok") {
			t.Fatalf("the E2B SDK through the gateway (%s): %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
		}
		return out.String()
	}

	for _, script := range []string{"control.mjs", "data.mjs", "files.mjs", "bg.mjs", "pty.mjs", "fork.mjs", "host.mjs"} {
		t.Run(script, func(t *testing.T) {
			if script == "host.mjs" {
				node(t, append(slices.Clip(env), "E2B_DOMAIN=frost.localhost:"+tlsPort,
					"NODE_EXTRA_CA_CERTS="+filepath.Join(gwData, "tls", "ca.pem")),
					"--import", "./localhost-dns.mjs", script)
				return
			}
			node(t, viaURL, script)
		})
	}

	t.Run("takeover", func(t *testing.T) {
		out := node(t, viaURL, "takeover.mjs", "pause")
		var paused struct {
			ID, SHA256 string
			PID        int
		}
		if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &paused); err != nil || paused.ID == "" || paused.PID == 0 {
			t.Fatalf("takeover.mjs pause printed %q: %v", out, err)
		}
		c := api.NewClient("http://"+gw.api, gw.token)
		ctx := context.Background()
		var view api.Sandbox
		waitFor(t, "the paused sandbox's checkpoint in shared storage", func() bool {
			var err error
			view, err = c.Sandbox(ctx, paused.ID)
			return err == nil && view.Snapshot != nil && view.Snapshot.Shared
		})
		holder := view.Node
		survivor := "n1"
		if holder == "n1" {
			survivor = "n2"
		}
		if nodes[holder] == nil || view.State != api.SandboxPaused {
			t.Fatalf("paused through the SDK: %+v; want paused on n1 or n2", view)
		}
		nodes[holder].kill()
		waitMembers(t, gw, 1)

		node(t, viaURL, "takeover.mjs", "resume", paused.ID, paused.SHA256, strconv.Itoa(paused.PID))
		if g, err := c.Sandbox(ctx, paused.ID); err != nil || g.Node != survivor || g.Boot != "resume" || g.State != api.SandboxRunning {
			t.Fatalf("after Sandbox.connect with %s killed: %+v %v; want running on %s, boot resume", holder, g, err, survivor)
		}
		node(t, viaURL, "takeover.mjs", "kill", paused.ID)
		if _, err := c.Sandbox(ctx, paused.ID); err == nil {
			t.Fatalf("sandbox %s still listed after the SDK killed it", paused.ID)
		}
	})
}
