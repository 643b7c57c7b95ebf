package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testetcd"
	"github.com/frostdev/frost/internal/tests3"
)

// BenchmarkSandboxTakeOver: what the user of a paused sandbox waits for
// when its node has left the cluster, against the resume on its own node,
// in one run. Two sandbox nodes (real runsc) share a real etcd and
// versitygw, with a gateway, on loopback. 2K+1 sandboxes are made on n1,
// each holding a 16 MiB file of random bytes and a Python HTTP server,
// paused, and their checkpoints uploaded (pause → snapshot.shared, timed).
// K are resumed through the gateway on n1 (local: verify the checkpoint
// on disk, runsc restore). Then n1 is killed (kill -9); once the gateway
// and n2 have seen it leave (one sandbox is resumed to find out; not
// counted), K are resumed through the gateway on n2 (take-over: a
// conditional update of the record, the checkpoint fetched from S3,
// verified and stored, runsc restore). Local and take-over samples cannot
// alternate (a kill sits between them). K is FROST_BENCH_SAMPLES
// (default 5). Run with -benchtime 1x.
func BenchmarkSandboxTakeOver(b *testing.B) {
	k := 5
	if v, err := strconv.Atoi(os.Getenv("FROST_BENCH_SAMPLES")); err == nil && v > 0 {
		k = v
	}
	s3 := tests3.Start(b)
	b.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	b.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	b.Setenv("AWS_REGION", s3.Region)
	etcd := strings.Join(testetcd.Start(b), ",")
	n1, c1 := startSandboxServer(b, "", "--role", "node", "--name", "n1", "--etcd", etcd, "--s3", "http://"+s3.Endpoint+"/"+s3.Bucket+"/frost")
	startSandboxServer(b, "", "--role", "node", "--name", "n2", "--etcd", etcd, "--s3", "http://"+s3.Endpoint+"/"+s3.Bucket+"/frost")
	gw := startServer(b, "", "--role", "gateway", "--etcd", etcd)
	waitMembers(b, gw, 2)
	c := api.NewClient("http://"+gw.api, gw.token)
	ctx := context.Background()

	var ids []string
	var uploads []time.Duration
	var size int64
	file := make([]byte, 16<<20)
	rand.Read(file)
	for range 2*k + 1 {
		sb, err := c1.CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Hour)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c1.WriteFile(ctx, sb.ID, "/root/data.bin", 0o644, bytes.NewReader(file)); err != nil {
			b.Fatal(err)
		}
		sbExec(b, c1, sb.ID, "", "sh", "-c", "cd /root && nohup python3 -m http.server 8000 >/dev/null 2>&1 & sleep 0.5")
		if _, err := c1.PauseSandbox(ctx, sb.ID); err != nil {
			b.Fatal(err)
		}
		paused := time.Now()
		var v api.Sandbox
		waitFor(b, "a checkpoint in shared storage", func() bool {
			v, err = c.Sandbox(ctx, sb.ID)
			return err == nil && v.Snapshot != nil && v.Snapshot.Shared
		})
		uploads = append(uploads, time.Since(paused))
		size = v.Snapshot.Size
		ids = append(ids, sb.ID)
	}

	resume := func(id, node string) time.Duration {
		start := time.Now()
		v, err := c.ResumeSandbox(ctx, id)
		d := time.Since(start)
		if err != nil || v.Boot != "resume" || v.Node != node {
			b.Fatalf("resume %s: %+v %v; want resumed on %s", id, v, err, node)
		}
		return d
	}
	var local, cross []time.Duration
	for _, id := range ids[:k] {
		local = append(local, resume(id, "n1"))
	}
	n1.kill()
	waitMembers(b, gw, 1)
	// n2 sees n1 leave a moment after the gateway does.
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := c.ResumeSandbox(ctx, ids[k])
		if err == nil && v.Node == "n2" {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("n2 never took the first sandbox over: %+v %v", v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, id := range ids[k+1:] {
		cross = append(cross, resume(id, "n2"))
	}
	for _, id := range ids[k+1:] {
		if out, _, code := sbExec(b, c, id, "", "sh", "-c", "wc -c </root/data.bin"); code != 0 || strings.TrimSpace(out) != strconv.Itoa(len(file)) {
			b.Fatalf("after the take-over of %s: %q exit %d", id, out, code)
		}
	}

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	p50 := func(ds []time.Duration) time.Duration { s := slices.Clone(ds); slices.Sort(s); return s[(len(s)-1)/2] }
	var rows strings.Builder
	for i := range k {
		fmt.Fprintf(&rows, "\n| %d | %.0f | %.0f |", i+1, ms(local[i]), ms(cross[i]))
	}
	b.Logf("checkpoint %.1f MiB on disk; upload after the pause p50 %.0f ms (max %.0f)\n| sample | local resume ms | take-over resume ms |\n|---|---|---|%s",
		float64(size)/(1<<20), ms(p50(uploads)), ms(slices.Max(uploads)), rows.String())
	b.ReportMetric(ms(p50(local)), "local-resume-ms")
	b.ReportMetric(ms(p50(cross)), "takeover-resume-ms")
	b.ReportMetric(float64(p50(cross))/float64(p50(local)), "takeover/local")
	b.ReportMetric(ms(p50(uploads)), "upload-ms")
	b.ReportMetric(ms(slices.Max(local)), "local-max-ms")
	b.ReportMetric(ms(slices.Max(cross)), "takeover-max-ms")
}
