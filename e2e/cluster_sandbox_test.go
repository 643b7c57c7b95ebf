package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/gateway"
	"github.com/frostdev/frost/internal/testetcd"
	"github.com/frostdev/frost/internal/tests3"
)

// TestClusterSandboxOutlivesNode: two sandbox nodes (real runsc) sharing a
// real etcd and a real versitygw, and a gateway, on loopback. A paused
// sandbox outlives its node: once its checkpoint is in shared storage and
// the node is killed (kill -9), the other node takes it over through the
// gateway — files byte for byte, a background server still listening, the
// access token issued by the dead node still good (one cluster-wide key),
// and no token still refused. When the dead node comes back with its name
// and data it has dropped its stale copy of the checkpoint and hands the
// sandbox's calls (routed to it by the ID's tag) to the new holder by a
// replay. A sandbox left RUNNING on the killed node is not taken over or
// booted afresh elsewhere: its calls fail with "has left the cluster", its
// record keeps naming the dead node, and it comes back, re-attached with
// its files, when that node does.
func TestClusterSandboxOutlivesNode(t *testing.T) {
	// 1. etcd, versitygw, nodes n1 and n2 with sandboxes and --s3, a gateway.
	s3 := tests3.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	t.Setenv("AWS_REGION", s3.Region)
	etcd := strings.Join(testetcd.Start(t), ",")
	// startNode starts (or restarts, with the same data dir) node name;
	// startSandboxServer registers the runsc clean-up of data before the
	// server's own.
	startNode := func(name, data string) (*server, *api.Client) {
		return startSandboxServer(t, data, "--role", "node", "--name", name, "--etcd", etcd,
			"--s3", "http://"+s3.Endpoint+"/"+s3.Bucket+"/frost")
	}
	nodes := map[string]*server{}
	clients := map[string]*api.Client{}
	for _, name := range []string{"n1", "n2"} {
		nodes[name], clients[name] = startNode(name, "")
	}
	gw := startServer(t, "", "--role", "gateway", "--etcd", etcd)
	waitMembers(t, gw, 2)
	c := api.NewClient("http://"+gw.api, gw.token)
	ctx := context.Background()

	// 2. A sandbox created through the gateway, with a file of random bytes
	// and a server in the background.
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Hour)})
	if err != nil {
		t.Fatalf("create through the gateway: %v", err)
	}
	holder := sb.Node
	if nodes[holder] == nil || sb.State != api.SandboxRunning || !strings.HasPrefix(sb.ID, gateway.SandboxTag(holder)) {
		t.Fatalf("created through the gateway: %+v; want a running sandbox on n1 or n2 whose ID starts with its node's tag", sb)
	}
	survivor := "n1"
	if holder == "n1" {
		survivor = "n2"
	}
	t.Logf("sandbox %s on %s; %s will take it over", sb.ID, holder, survivor)
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	name := "blob-" + hex.EncodeToString(blob[:6]) + ".bin"
	path := "/root/" + name
	if info, err := c.WriteFile(ctx, sb.ID, path, 0o644, bytes.NewReader(blob)); err != nil || info.Size != int64(len(blob)) {
		t.Fatalf("upload %s through the gateway: %+v %v", path, info, err)
	}
	sbExec(t, c, sb.ID, "", "sh", "-c", "cd /root && nohup python3 -m http.server 8000 >/tmp/http.log 2>&1 &")
	if status, body := waitPort(gw, sb.ID, 8000, sb.Token, "/"); status != 200 || !strings.Contains(body, name) {
		log, _, _ := sbExec(t, c, sb.ID, "", "cat", "/tmp/http.log")
		t.Fatalf("port 8000 through the gateway before the pause: %d %q (http.server log %q)", status, body, log)
	}

	// 7 (set-up). A second sandbox on the same node, left running: created
	// on that node's own API, so that it is the holder's.
	running, err := clients[holder].CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Hour)})
	if err != nil || running.Node != holder || !strings.HasPrefix(running.ID, gateway.SandboxTag(holder)) {
		t.Fatalf("create on %s: %+v %v", holder, running, err)
	}
	if _, err := c.WriteFile(ctx, running.ID, "/root/marker.txt", 0, strings.NewReader("left running")); err != nil {
		t.Fatalf("write to the running sandbox through the gateway: %v", err)
	}

	// 3. Pause through the gateway; the checkpoint reaches S3.
	p, err := c.PauseSandbox(ctx, sb.ID)
	if err != nil || p.State != api.SandboxPaused || p.Snapshot == nil || p.Node != holder {
		t.Fatalf("pause through the gateway: %+v %v", p, err)
	}
	release := p.Snapshot.Release
	var view api.Sandbox
	var viewErr error
	start := time.Now()
	waitFor(t, "the paused sandbox's checkpoint in shared storage", func() bool {
		view, viewErr = c.Sandbox(ctx, sb.ID)
		return viewErr == nil && view.Snapshot != nil && view.Snapshot.Shared
	})
	t.Logf("checkpoint %.12s (%d bytes on disk) in shared storage %v after the pause", release, view.Snapshot.Size, time.Since(start).Round(time.Millisecond))
	if view.Snapshot.Release != release || view.Node != holder {
		t.Fatalf("shared checkpoint %+v on %q; want %.12s on %s", view.Snapshot, view.Node, release, holder)
	}

	// 4. kill -9 the holder; the gateway routes to the survivor only.
	dead := nodes[holder]
	dead.kill()
	killed := time.Now()
	waitMembers(t, gw, 1)
	if m := members(t, gw); !slices.Equal(m, []string{survivor}) {
		t.Fatalf("after kill -9 %s the gateway routes to %v, want [%s]", holder, m, survivor)
	}
	t.Logf("%s out of the ring %v after kill -9", holder, time.Since(killed).Round(time.Millisecond))

	// 7. The running sandbox is not taken over: its memory is on the dead
	// node. (The survivor learns that the node left from etcd as the
	// gateway does, a moment apart: until then it names the dead node as
	// the holder, which the gateway, knowing better, cannot replay to.)
	var execErr error
	waitFor(t, "the survivor to say the running sandbox's node has left", func() bool {
		var out bytes.Buffer
		_, execErr = c.Exec(ctx, running.ID, api.ExecRequest{Cmd: []string{"cat", "/root/marker.txt"}}, nil, &out, &out)
		if execErr == nil {
			t.Fatalf("exec in the running sandbox of the killed node %s succeeded (%q): it was booted or run elsewhere", holder, out.String())
		}
		return strings.Contains(execErr.Error(), "has left the cluster")
	})
	var se *api.StatusError
	if !errors.As(execErr, &se) || se.Status != http.StatusServiceUnavailable || !strings.Contains(se.Err.Message, "node "+holder) {
		t.Fatalf("exec in the running sandbox of the killed node: %#v; want a 503 naming node %s", execErr, holder)
	}
	if g, err := c.Sandbox(ctx, running.ID); err != nil || g.State != api.SandboxRunning || g.Node != holder || g.Boot != "" {
		t.Fatalf("the running sandbox of the killed node: %+v %v; want it still running on %s, booted nowhere else", g, err, holder)
	}

	// 5. The paused one resumes on the survivor through the gateway.
	out, errs, code := sbExec(t, c, sb.ID, "", "cat", path)
	if code != 0 || out != string(blob) {
		t.Fatalf("cat %s on the survivor: exit %d, %d bytes (equal: %v), stderr %q", path, code, len(out), out == string(blob), errs)
	}
	if g, err := c.Sandbox(ctx, sb.ID); err != nil || g.Node != survivor || g.Boot != "resume" || g.State != api.SandboxRunning {
		t.Fatalf("after the take-over: %+v %v; want running on %s, boot resume", g, err, survivor)
	}
	if status, body := portGet(gw, sb.ID, 8000, sb.Token, "/"); status != 200 || !strings.Contains(body, name) {
		t.Fatalf("port 8000 on the survivor with the token %s issued: %d %q; want http.server's listing with %s", holder, status, body, name)
	}
	if status, body := portGet(gw, sb.ID, 8000, "", "/"); status != 401 {
		t.Fatalf("port 8000 on the survivor without a token: %d %q, want 401", status, body)
	}

	// 6. The killed node comes back with its name and data. Until then its
	// data dir still holds the checkpoint it uploaded.
	if got := sandboxCheckpoints(t, dead.data, sb.ID); !slices.Equal(got, []string{release}) {
		t.Fatalf("the killed node's data dir holds checkpoints %v of the sandbox; want its own %.12s", got, release)
	}
	back, _ := startNode(holder, dead.data)
	waitMembers(t, gw, 2)
	// Routed by the ID's tag to the old node, which replays to the holder.
	if out, errs, code := sbExec(t, c, sb.ID, "", "sha256sum", path); code != 0 || !strings.HasPrefix(out, fmt.Sprintf("%x ", sha256.Sum256(blob))) {
		t.Fatalf("exec through the gateway with %s back: exit %d %q %q", holder, code, out, errs)
	}
	if status, body := portGet(gw, sb.ID, 8000, sb.Token, "/"); status != 200 || !strings.Contains(body, name) {
		t.Fatalf("port 8000 through the gateway with %s back: %d %q", holder, status, body)
	}
	resp, body := back.apiReq("POST", "/v1/sandboxes/"+sb.ID+"/exec", "", strings.NewReader(`{"cmd":["true"]}`+"\n"))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(api.ReplayHeader) != survivor {
		t.Fatalf("exec straight at the restarted %s: %d %q (%s %q); want 503 with a replay to %s",
			holder, resp.StatusCode, body, api.ReplayHeader, resp.Header.Get(api.ReplayHeader), survivor)
	}
	if g, err := c.Sandbox(ctx, sb.ID); err != nil || g.Node != survivor || g.State != api.SandboxRunning {
		t.Fatalf("with %s back: %+v %v; want it still running on %s", holder, g, err, survivor)
	}
	// The store (internal/snapshot) keeps one checkpoint per directory
	// DATA/sandboxes/snapshots/RELEASE, whose manifest.json names its owner
	// ("app": "sandbox-ID"); quarantine/ holds damaged ones as
	// RELEASE-UNIXNANO. The restarted node deleted its stale copy: no
	// checkpoint of the sandbox, and nothing quarantined from one.
	if got := sandboxCheckpoints(t, dead.data, sb.ID); len(got) != 0 {
		t.Fatalf("the restarted %s still holds checkpoints %v of a sandbox %s took over", holder, got, survivor)
	}
	q, err := os.ReadDir(filepath.Join(dead.data, "sandboxes", "snapshots", "quarantine"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range q {
		if strings.HasPrefix(e.Name(), release) {
			t.Fatalf("the restarted %s quarantined the stale checkpoint (%s) instead of deleting it", holder, e.Name())
		}
	}
	// The running sandbox came back with its node, re-attached as it was.
	if out, errs, code := sbExec(t, c, running.ID, "", "cat", "/root/marker.txt"); code != 0 || out != "left running" {
		t.Fatalf("the running sandbox with %s back: exit %d %q %q", holder, code, out, errs)
	}
	if g, err := c.Sandbox(ctx, running.ID); err != nil || g.Node != holder || g.Boot != "reattach" {
		t.Fatalf("the running sandbox with %s back: %+v %v; want it on %s, re-attached", holder, g, err, holder)
	}
}

// sandboxCheckpoints returns the releases of the checkpoints of sandbox id
// in node data dir data's sandbox snapshot store (read from the files, not
// through snapshot.Open: the node may be running).
func sandboxCheckpoints(t *testing.T, data, id string) []string {
	t.Helper()
	dir := filepath.Join(data, "sandboxes", "snapshots")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "quarantine" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "manifest.json"))
		if errors.Is(err, os.ErrNotExist) {
			continue // being written, or debris Open removes
		}
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			App string `json:"app"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", filepath.Join(dir, e.Name(), "manifest.json"), err)
		}
		if m.App == "sandbox-"+id {
			out = append(out, e.Name())
		}
	}
	return out
}
