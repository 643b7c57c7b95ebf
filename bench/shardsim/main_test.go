package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// small is a model that runs in milliseconds.
var small = []string{"-apps", "500", "-nodes", "5", "-warm", "20", "-requests", "20000", "-warmup", "2000", "-inflight", "50"}

func TestRunIsDeterministic(t *testing.T) {
	var first string
	for i := range 2 {
		var out, errOut bytes.Buffer
		if code := run(small, &out, &errOut); code != 0 {
			t.Fatalf("run = %d, stderr: %s", code, errOut.String())
		}
		if i == 0 {
			first = out.String()
			continue
		}
		if out.String() != first {
			t.Fatalf("two runs with the same seed differ:\n%s\n%s", first, out.String())
		}
	}
	for _, want := range []string{
		"| policy | warm requests |",
		"| bounded-load consistent hashing (c = 1.25) |",
		"| consistent hashing |",
		"| random |",
		"Bounded loads evicted",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("output lacks %q:\n%s", want, first)
		}
	}
	var other bytes.Buffer
	run(append(small, "-seed", "2"), &other, &bytes.Buffer{})
	if other.String() == first {
		t.Error("-seed 2 gave the same output as -seed 1")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"zero nodes", []string{"-nodes", "0"}, "-nodes is 0"},
		{"c below 1", []string{"-c", "0.9"}, "-c is 0.9"},
		{"negative zipf", []string{"-zipf", "-1"}, "-zipf is -1"},
		{"argument", []string{"extra"}, `unexpected argument "extra"`},
		{"unknown flag", []string{"-bogus"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(tt.args, &out, &errOut); code != 2 {
				t.Errorf("run = %d, want 2", code)
			}
			if !strings.Contains(errOut.String(), tt.want) {
				t.Errorf("stderr = %q, want it to say %q", errOut.String(), tt.want)
			}
		})
	}
}

func TestSimulate(t *testing.T) {
	cfg := defaultConfig()
	cfg.Apps, cfg.Nodes, cfg.Warm, cfg.Requests, cfg.Warmup, cfg.InFlight = 500, 5, 20, 20000, 2000, 50
	results, err := simulate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bounded, plain, random := results[0], results[1], results[2]
	for _, r := range results {
		if r.requests != cfg.Requests || r.warm > r.requests || r.evictions > r.coldStarts() {
			t.Errorf("%s: inconsistent counts %+v", r.policy, r)
		}
	}
	// The bound holds: at most ceil(c × mean) in flight on any node.
	if limit := int(math.Ceil(cfg.Balance * float64(cfg.InFlight) / float64(cfg.Nodes))); bounded.peakLoad > limit {
		t.Errorf("bounded loads peaked at %d in flight on a node, over %d", bounded.peakLoad, limit)
	}
	// Sharding keeps more warm than scattering every app over every node.
	if bounded.warm <= random.warm || plain.warm <= random.warm {
		t.Errorf("warm requests: bounded %d, plain %d, random %d; want random fewest", bounded.warm, plain.warm, random.warm)
	}
}

func TestLRU(t *testing.T) {
	c := newLRU(2)
	steps := []struct {
		app           int32
		warm, evicted bool
	}{
		{app: 1},                // cold, into a free slot
		{app: 2},                // cold, into the last free slot
		{app: 1, warm: true},    // 1 is now the most recent
		{app: 3, evicted: true}, // evicts 2
		{app: 1, warm: true},    // kept
		{app: 2, evicted: true}, // evicts 3
		{app: 3, evicted: true}, // evicts 1
		{app: 2, warm: true},    // kept
		{app: 1, evicted: true}, // evicts 3
	}
	for i, s := range steps {
		warm, evicted := c.touch(s.app)
		if warm != s.warm || evicted != s.evicted {
			t.Fatalf("step %d, app %d: warm %v evicted %v, want %v %v", i, s.app, warm, evicted, s.warm, s.evicted)
		}
	}
}
