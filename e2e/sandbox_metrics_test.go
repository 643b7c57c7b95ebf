package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
)

// TestSandboxMetricsCLI: `frost sandbox metrics` on a real gVisor
// sandbox, sampled every second here: rows of CPU and memory read from
// its cgroup; memory a process holds shows; a paused sandbox keeps its
// history; --since selects; --json is the API's list.
func TestSandboxMetricsCLI(t *testing.T) {
	s, c := startSandboxServer(t, "", "--sandbox-metrics-every", "1s")
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	metrics := func() []api.SandboxMetric {
		t.Helper()
		var list []api.SandboxMetric
		if err := json.Unmarshal([]byte(s.mustFrost("sandbox", "metrics", sb.ID, "--json")), &list); err != nil {
			t.Fatal(err)
		}
		return list
	}
	base := metrics()
	// 128 MiB held by a process in the sandbox, and a few samples.
	if _, e, code := sbExec(t, c, sb.ID, "", "sh", "-c", `python3 -c "import time; b = bytearray(128 << 20); b[::4096] = b'x' * (len(b) // 4096); time.sleep(600)" >/dev/null 2>&1 & sleep 3`); code != 0 {
		t.Fatalf("allocate: %d %s", code, e)
	}
	list := metrics()
	if len(list) < 3 {
		t.Fatalf("%d metrics after 3 s sampled every second: %+v", len(list), list)
	}
	last := list[len(list)-1]
	if last.CPUCount <= 0 || last.MemTotal < last.MemUsed || len(base) > 0 && last.MemUsed-base[len(base)-1].MemUsed < 100<<20 {
		t.Fatalf("after holding 128 MiB: %+v (before: %+v)", last, base)
	}
	out := s.mustFrost("sandbox", "metrics", sb.ID)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 4 || !strings.Contains(lines[0], "CPU %") || !strings.Contains(lines[len(lines)-1], "MiB") {
		t.Fatalf("table:\n%s", out)
	}
	if got := strings.Count(s.mustFrost("sandbox", "metrics", sb.ID, "--since", "1500ms"), "\n"); got > 4 {
		t.Fatalf("--since 1.5s: %d lines", got)
	}
	// Paused: the history stays, nothing new comes.
	if _, err := c.PauseSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	paused := metrics()
	time.Sleep(1500 * time.Millisecond)
	if again := metrics(); len(paused) < len(list) || len(again) != len(paused) {
		t.Fatalf("paused: %d metrics, then %d (before the pause %d)", len(paused), len(again), len(list))
	}
	if _, e, code := s.frost("sandbox", "metrics", sb.ID, "--since", "-1s"); code != 2 || !strings.Contains(e, "positive") {
		t.Fatalf("--since -1s: exit %d %s", code, e)
	}
}
