// Command shardsim compares how well three ways for a gateway to route
// requests keep apps warm, on the same traffic, and prints a Markdown table:
// bounded-load consistent hashing ([ring.Ring.Pick]), plain consistent
// hashing ([ring.Ring.Owner]) and uniformly random routing.
//
// The model, each part a flag:
//
//   - -apps apps (10,000), whose popularity follows Zipf's law: the k-th
//     most popular gets requests in proportion to 1/k^s, s = -zipf (1.1).
//   - -nodes nodes (10), each able to hold -warm apps warm (1,000, 10% of
//     the apps: all nodes together could hold every app once, as a cluster
//     sized for its apps can, while no node can hold them all), evicting
//     the least recently used app to make room for another.
//   - A stream of -requests requests (2,000,000), drawn independently from
//     that popularity with a seeded generator (-seed), after -warmup
//     requests (200,000) that fill the cluster and are not counted.
//   - Each request stays in flight for the next -inflight arrivals (200),
//     so after the first few exactly that many are in flight, 20 a node on
//     average. Bounded loads (c = -c, 1.25; -points ring points per node,
//     100) see these in-flight counts, as a gateway does.
//   - A request is warm if the node it is routed to holds its app warm;
//     otherwise it is a cold start, after which the node holds the app
//     warm, having evicted its least recently used app if it was full. An
//     app is not pinned while it serves requests.
//
// "Peak load ÷ mean" is the most requests one node ever had in flight over
// the mean per node (-inflight ÷ -nodes); "busiest node ÷ mean" is the
// requests the busiest node served over the mean per node.
//
//	go run ./bench/shardsim
//	go run ./bench/shardsim -warm 200   # memory for a fifth of the apps
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command without its process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("shardsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.Apps, "apps", cfg.Apps, "apps deployed")
	fs.Float64Var(&cfg.Zipf, "zipf", cfg.Zipf, "Zipf exponent s of app popularity (0: all alike)")
	fs.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "nodes in the cluster")
	fs.IntVar(&cfg.Warm, "warm", cfg.Warm, "apps one node can hold warm")
	fs.IntVar(&cfg.Requests, "requests", cfg.Requests, "requests counted")
	fs.IntVar(&cfg.Warmup, "warmup", cfg.Warmup, "requests replayed first and not counted")
	fs.IntVar(&cfg.InFlight, "inflight", cfg.InFlight, "arrivals a request stays in flight for (= requests in flight)")
	fs.Float64Var(&cfg.Balance, "c", cfg.Balance, "balance factor of bounded loads, at least 1")
	fs.IntVar(&cfg.Points, "points", cfg.Points, "ring points per node")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the traffic and of random routing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "shardsim: unexpected argument %q; every setting is a flag (-h lists them)\n", fs.Arg(0))
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "shardsim: %v\n", err)
		return 2
	}
	results, err := simulate(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "shardsim: %v\n", err)
		return 1
	}
	report(stdout, cfg, results)
	return 0
}

// report writes the model, the table and how bounded loads compare on
// evictions. results[0] is bounded loads.
func report(w io.Writer, cfg config, results []result) {
	fmt.Fprintf(w, "%d apps, Zipf s = %g; %d nodes holding %d warm apps each (%.1f%% of apps in all); "+
		"%d requests after %d of warm-up; %d in flight; seed %d.\n\n",
		cfg.Apps, cfg.Zipf, cfg.Nodes, cfg.Warm, 100*float64(cfg.Nodes*cfg.Warm)/float64(cfg.Apps),
		cfg.Requests, cfg.Warmup, cfg.InFlight, cfg.Seed)
	fmt.Fprintln(w, "| policy | warm requests | cold starts | evictions | peak load ÷ mean | busiest node ÷ mean |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	meanLoad := float64(cfg.InFlight) / float64(cfg.Nodes)
	for _, r := range results {
		meanServed := float64(r.requests) / float64(cfg.Nodes)
		fmt.Fprintf(w, "| %s | %.3f%% | %d | %d | %.2f | %.2f |\n",
			r.policy, 100*float64(r.warm)/float64(r.requests), r.coldStarts(), r.evictions,
			float64(r.peakLoad)/meanLoad, float64(r.busiest)/meanServed)
	}
	b := results[0]
	fmt.Fprintf(w, "\nBounded loads evicted %d apps: %s and %s.\n",
		b.evictions, compare(b.evictions, results[2].evictions, "random routing"),
		compare(b.evictions, results[1].evictions, "plain consistent hashing"))
}

// compare says how count a stands against count b of policy other:
// "3.2× fewer than random routing (1234)".
func compare(a, b int, other string) string {
	switch {
	case a == b:
		return fmt.Sprintf("as many as %s", other)
	case a == 0:
		return fmt.Sprintf("fewer than %s (%d)", other, b)
	case b == 0:
		return fmt.Sprintf("more than %s (none)", other)
	case a < b:
		return fmt.Sprintf("%.1f× fewer than %s (%d)", float64(b)/float64(a), other, b)
	default:
		return fmt.Sprintf("%.1f× more than %s (%d)", float64(a)/float64(b), other, b)
	}
}
