package api_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	wire "github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/runtime"
)

// TestMetricsRoute: GET /v1/sandboxes/{id}/metrics through the Go client:
// a running sandbox's point for now with what its box reports, a range
// in the future selects nothing, a bad bound is 400, an unknown sandbox
// 404.
func TestMetricsRoute(t *testing.T) {
	fake, e, cl, sb := blockedSandbox(t)
	close(fake.Live[sb.ID].Block)
	fake.Live[sb.ID].SetUsage(runtime.BoxStats{CPU: time.Second, Memory: 96 << 20, Cache: 8 << 20, MemoryLimit: 512 << 20, CPUs: 1})
	time.Sleep(150 * time.Millisecond) // a point for now comes 100 ms after the last sample or later
	ctx := context.Background()
	list, err := cl.SandboxMetrics(ctx, sb.ID, time.Time{}, time.Time{})
	if err != nil || len(list) != 1 {
		t.Fatalf("%+v %v", list, err)
	}
	if m := list[0]; m.MemUsed != 96<<20 || m.MemCache != 8<<20 || m.MemTotal != 512<<20 || m.CPUCount != 1 || m.CPUUsedPct != 100 || time.Since(m.Time) > time.Minute {
		t.Fatalf("metric: %+v", m)
	}
	if list, err := cl.SandboxMetrics(ctx, sb.ID, time.Now().Add(time.Hour), time.Time{}); err != nil || len(list) != 0 {
		t.Fatalf("from an hour on: %+v %v", list, err)
	}
	for _, q := range []string{"?from=yesterday", "?to=12:00"} {
		req, _ := http.NewRequest("GET", e.url+"/v1/sandboxes/"+sb.ID+"/metrics"+q, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: %s", q, resp.Status)
		}
	}
	var se *wire.StatusError
	if _, err := cl.SandboxMetrics(ctx, "nosuchsandbox0", time.Time{}, time.Time{}); !errors.As(err, &se) || se.Status != http.StatusNotFound {
		t.Fatalf("unknown sandbox: %v", err)
	}
}
