package main

import (
	"maps"
	"os"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	for _, tc := range []struct {
		name string
		out  string
		want wrkResult
		err  bool
	}{
		{
			name: "errors",
			out: `Running 1s test @ http://127.0.0.1:18999/nope
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.26ms    0.91ms  13.67ms   97.41%
    Req/Sec     1.57k    71.24     1.66k    70.00%
  Latency Distribution
     50%    1.13ms
     75%    1.43ms
     90%    1.73ms
     99%    4.67ms
  1557 requests in 1.00s, 790.66KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 1557
Requests/sec:   1555.82
Transfer/sec:    790.06KB
`,
			want: wrkResult{rps: 1555.82, p50: 1130 * time.Microsecond, p99: 4670 * time.Microsecond, errors: 1560, requests: 1557},
		},
		{
			name: "microseconds",
			out:  "     50%  352.00us\n     99%    2.00s\nRequests/sec:  32782.10\n",
			want: wrkResult{rps: 32782.10, p50: 352 * time.Microsecond, p99: 2 * time.Second},
		},
		{name: "no latency", out: "Requests/sec:  1.0\n", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseWrk(tc.out)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error: %v", err, tc.err)
			}
			if !tc.err && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestServerTiming(t *testing.T) {
	boot, dur := serverTiming("boot;desc=thaw, wake;dur=2.250, start;dur=0.006, run;dur=0.020")
	want := map[string]float64{"wake": 2.25, "start": 0.006, "run": 0.02}
	if boot != "thaw" || !maps.Equal(dur, want) {
		t.Errorf("got %q %v, want thaw %v", boot, dur, want)
	}
}

func TestCPUTime(t *testing.T) {
	// Spinning shows as CPU time, in ticks of /proc's clock; how much of
	// the wall clock it takes depends on what else the machine runs, so
	// the spin lasts until 20 ms are counted, or fails after 10 s.
	self := cpuTime(os.Getpid())
	got := self
	for end := time.Now().Add(10 * time.Second); got-self < 20*time.Millisecond && time.Now().Before(end); {
		got = cpuTime(os.Getpid())
	}
	if got-self < 20*time.Millisecond {
		t.Errorf("10 s spinning: CPU time %v → %v", self, got)
	}
	if cpuTime(0) != 0 {
		t.Error("pid 0 has CPU time")
	}
}

func TestParseQuotas(t *testing.T) {
	q, err := parseQuotas("gateway=0.5, node=1.5")
	if err != nil {
		t.Fatal(err)
	}
	if q.cpus["gateway"] != 0.5 || q.cpus["node"] != 1.5 {
		t.Errorf("parseQuotas: %v", q.cpus)
	}
	t.Setenv("GOMAXPROCS", "")
	want := "the gateway capped at 0.5 CPU with GOMAXPROCS=1, each node capped at 1.5 CPU with GOMAXPROCS=1 (cgroup CPU quota, 10 ms periods)"
	if s := q.String(); s != want {
		t.Errorf("String() = %q, want %q", s, want)
	}
	if env := q.env("gateway"); len(env) == 0 || env[len(env)-1] != "GOMAXPROCS=1" {
		t.Errorf("env(gateway) ends %q, want GOMAXPROCS=1", env[max(0, len(env)-1):])
	}
	if two, _ := parseQuotas("node=2.5"); two.env("node")[len(two.env("node"))-1] != "GOMAXPROCS=2" {
		t.Error("node=2.5: want GOMAXPROCS=2")
	}
	if env := q.env("wrk"); env != nil {
		t.Errorf("env(wrk) = %q, want nil (the bench's own)", env)
	}
	// GOMAXPROCS set for the bench: every process has it as it is.
	t.Setenv("GOMAXPROCS", "3")
	if env := q.env("gateway"); env != nil {
		t.Errorf("with GOMAXPROCS set, env(gateway) = %q, want nil", env)
	}
	if s := q.String(); s != "the gateway capped at 0.5 CPU, each node capped at 1.5 CPU (cgroup CPU quota, 10 ms periods)" {
		t.Errorf("with GOMAXPROCS set, String() = %q", s)
	}
	for _, bad := range []string{"wrk=1", "gateway", "gateway=x", "node=0", "node=-1"} {
		if _, err := parseQuotas(bad); err == nil {
			t.Errorf("parseQuotas(%q): no error", bad)
		}
	}
	// No quota: nothing to do, nothing said.
	var none *quotas
	if err := none.cap("gateway", "gateway", 1); err != nil || none.String() != "" {
		t.Errorf("nil quotas: %v %q", err, none.String())
	}
	empty, _ := parseQuotas("")
	if err := empty.cap("node", "n1", 1); err != nil || empty.String() != "" || empty.root != "" {
		t.Errorf("empty quotas: %v %q", err, empty.String())
	}
}
