package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testguest"
	"github.com/frostdev/frost/internal/tests3"
)

// startSharedCluster starts a real versitygw and a cluster of n nodes
// sharing it (frost server --s3).
func startSharedCluster(t *testing.T, n int) (*server, []*server, tests3.Server) {
	t.Helper()
	srv := tests3.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_REGION", srv.Region)
	gw, nodes, _ := startCluster(t, n, "--s3", "http://"+srv.Endpoint+"/"+srv.Bucket+"/frost")
	return gw, nodes, srv
}

// status is frost status --json (through a gateway: every node's).
func (s *server) status() api.Status {
	s.t.Helper()
	var st api.Status
	if err := json.Unmarshal([]byte(s.mustFrost("status", "--json")), &st); err != nil {
		s.t.Fatal(err)
	}
	return st
}

// appDetail is frost app NAME --json.
func (s *server) appDetail(name string) api.AppDetail {
	s.t.Helper()
	var d api.AppDetail
	if err := json.Unmarshal([]byte(s.mustFrost("app", name, "--json")), &d); err != nil {
		s.t.Fatal(err)
	}
	return d
}

// objects lists the bucket's keys under the cluster's prefix.
func objects(t *testing.T, srv tests3.Server) []string {
	t.Helper()
	var keys []string
	for oi := range srv.Client(t).ListObjectsIter(t.Context(), srv.Bucket, minio.ListObjectsOptions{Prefix: "frost/", Recursive: true}) {
		if oi.Err != nil {
			t.Fatal(oi.Err)
		}
		keys = append(keys, oi.Key)
	}
	return keys
}

// hasModule reports whether a module is in S3 as nodes upload it: packed,
// under a reference from its digest.
func hasModule(t *testing.T, srv tests3.Server, digest string) bool {
	t.Helper()
	return slices.Contains(objects(t, srv), "frost/refs/zstd-"+digest)
}

// TestClusterSharedStorage: two nodes and a gateway on real etcd and a
// real versitygw. A deploy lands in S3; a snapshot baked on the app's
// node is uploaded, and the other node, which never ran the app, thaws it
// from S3 (pull + verify + thaw) instead of booting cold. Deleting the
// app deletes its blobs.
func TestClusterSharedStorage(t *testing.T) {
	gw, _, srv := startSharedCluster(t, 2)
	gw.mustFrost("deploy", "heavy", testguest.Path(t, "heavy"), "--mode", "session", "--idle", "1h")
	resp, body := gw.get("heavy", "/")
	if resp.StatusCode != 200 {
		t.Fatalf("first request: %d %q", resp.StatusCode, body)
	}
	owner := resp.Header.Get("Frost-Node")
	other := "n1"
	if owner == "n1" {
		other = "n2"
	}
	d := gw.appDetail("heavy")
	module := d.Releases[0].Module
	waitFor(t, "the module in S3", func() bool { return hasModule(t, srv, module) })

	gw.mustFrost("freeze", "heavy")
	waitFor(t, "the shared snapshot", func() bool { return gw.appDetail("heavy").SharedSnapshot != nil })
	shared := gw.appDetail("heavy").SharedSnapshot
	if shared.Node != owner || shared.Release != d.Release || shared.Size <= 0 || shared.Size > shared.Bytes {
		t.Fatalf("shared snapshot %+v: want one baked on %s for release %s, packed smaller than its %d bytes", shared, owner, d.Release, shared.Bytes)
	}
	out := gw.mustFrost("app", "heavy")
	if !strings.Contains(out, "shared snapshot") || !strings.Contains(out, "baked on "+owner) {
		t.Errorf("frost app does not show the shared snapshot:\n%s", out)
	}

	// The other node has never run the app: it pulls the snapshot.
	resp, body = gw.get("0-"+other+"--heavy", "/")
	st := resp.Header.Get("Server-Timing")
	if resp.StatusCode != 200 || resp.Header.Get("Frost-Node") != other || bootOf(resp) != "thaw" || !strings.Contains(st, "fetch;dur=") {
		t.Fatalf("first request on %s: %d %q, Server-Timing %q; want a thaw with a fetch", other, resp.StatusCode, body, st)
	}
	t.Logf("cross-node wake on %s: %s", other, st)
	var fetched bool
	for _, n := range gw.status().Nodes {
		if n.Node == other && n.Shared != nil && n.Shared.SnapshotFetches == 1 {
			fetched = true
		}
	}
	if !fetched {
		t.Errorf("frost status does not count %s's snapshot fetch: %+v", other, gw.status())
	}

	gw.mustFrost("rm", "heavy")
	// The only app: once its module (packed, and its reference) and its
	// snapshot are gone, nothing is left.
	waitFor(t, "the deleted app's blobs to leave S3", func() bool { return len(objects(t, srv)) == 0 })

}

// TestClusterS3Outage: S3 goes away while clients load an app through the
// gateway. Requests keep succeeding from the nodes' caches; a deploy
// still lands (its upload queued); frost status shows S3 unreachable and
// the backlog; a node that lacks the new module gets it from its peer.
// S3 comes back: the backlog drains and the module is in S3.
func TestClusterS3Outage(t *testing.T) {
	gw, _, srv := startSharedCluster(t, 2)
	gw.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	if resp, body := gw.get("hello", "/"); resp.StatusCode != 200 {
		t.Fatalf("before the outage: %d %q", resp.StatusCode, body)
	}

	load := startLoad(gw, "hello", "/", "hello from frost\n", 3)
	time.Sleep(500 * time.Millisecond)
	srv.Stop()
	before := load.ok.Load()

	gw.mustFrost("deploy", "cgi", testguest.Path(t, "cgi"))
	module := gw.appDetail("cgi").Releases[0].Module
	// Both nodes serve it: one from its own store, the other from its peer.
	for _, n := range []string{"n1", "n2"} {
		if resp, body := gw.get("0-"+n+"--cgi", "/"); resp.StatusCode != 200 {
			t.Fatalf("new app on %s with S3 down: %d %q", n, resp.StatusCode, body)
		}
	}
	waitFor(t, "frost status to show S3 down with a backlog", func() bool {
		for _, n := range gw.status().Nodes {
			if n.Shared != nil && !n.Shared.Reachable && n.Shared.Backlog > 0 {
				return true
			}
		}
		return false
	})
	out := gw.mustFrost("status")
	if !strings.Contains(out, "UNREACHABLE") || !strings.Contains(out, "to upload") {
		t.Errorf("frost status during the outage:\n%s", out)
	}
	time.Sleep(time.Second)
	during := load.ok.Load() - before

	srv.Restart()
	// A node notices within one S3 retry timeout (10s) and one backoff (5s).
	deadline := time.Now().Add(45 * time.Second)
	for {
		st := gw.status()
		drained := true
		for _, n := range st.Nodes {
			if n.Shared == nil || n.Shared.Backlog > 0 || !n.Shared.Reachable {
				drained = false
			}
		}
		if drained {
			break
		}
		if time.Now().After(deadline) {
			for _, n := range st.Nodes {
				t.Logf("%s: %+v", n.Node, n.Shared)
			}
			t.Fatal("backlog not drained 45s after S3 came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	errs := load.stop()
	t.Logf("S3 outage: %d requests ok during it, %d in all, %d failed", during, load.ok.Load(), load.failed.Load())
	if load.failed.Load() > 0 {
		t.Errorf("%d requests failed while S3 was down: %v", load.failed.Load(), errs)
	}
	if during == 0 {
		t.Error("no request succeeded while S3 was down")
	}
	if !hasModule(t, srv, module) {
		t.Error("the module deployed during the outage is not in S3 after it")
	}
}
