// Command cluster measures a Frost cluster as its users see it and prints
// a Markdown report. It starts a real etcd, three `frost server --role
// node` processes and a gateway (HTTP and HTTPS listeners, domain
// frost.localhost so that the development certificate's wildcard is valid)
// on loopback, with fresh temporary directories, and stops and removes
// them at the end, also on failure or interrupt.
//
//  1. Gateway overhead: wrk at hello-c straight at the app's node vs
//     through the gateway (and through a bare Go reverse proxy, for what
//     any Go proxy costs on the machine; with -nginx, through nginx, for
//     what a reverse proxy written in C costs), rounds alternating;
//     medians, the throughput ratio and the latency the gateway adds,
//     against the targets.
//  2. SNI pre-warm: a frozen heavy-init app's first request over a new TLS
//     connection when the TLS server name names the app (the gateway has
//     the node wake it during the handshake) vs when it names none, and
//     the same request to the app live (the floor).
//  3. Failover: kill -9 of the app's node under load through the
//     gateway: how long until the gateway drops it from its member list,
//     and which requests failed; the node restarts between runs.
//  4. The same with the node frozen (SIGSTOP) instead: it closes
//     nothing, and the requests it holds wait until the gateway takes it
//     for lost.
//  5. With -only e2b (not in the default list: the nodes need runsc,
//     given with -node-flags, and -e2b the pinned SDK): E2B's SDK
//     straight at a sandbox node vs through the gateway, alternating
//     (e2e/e2bsdk/gateway-bench.mjs).
//
// Usage:
//
//	go run ./bench/cluster -frost bin/frost -etcd "$(bash scripts/etcd.sh | tail -1)" -guests build/guests \
//		-nginx "$(bash scripts/nginx.sh | tail -1)"
//
// By default wrk, the gateway and the nodes share the machine's cores, so
// the overhead's throughputs say who got the cores; its CPU per request
// bounds what a gateway on cores of its own would forward. Two flags give
// them the same CPU instead: -cpus pins each role to cores of its own (a
// machine with many), -cpu-quota caps the gateway and each node at the
// same CPU time in cgroups of their own (any machine, as root), each
// with GOMAXPROCS at its whole CPUs, at least 1, unless the bench's own
// environment sets GOMAXPROCS.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/frostdev/frost/bench/internal/stats"
)

func main() {
	frost := flag.String("frost", "bin/frost", "the frost binary")
	etcdBin := flag.String("etcd", "", "the etcd binary (bash scripts/etcd.sh | tail -1)")
	guests := flag.String("guests", "build/guests", "directory of the guest modules (scripts/build-guests.sh)")
	nodes := flag.Int("nodes", 3, "nodes in the cluster")
	rounds := flag.Int("rounds", 3, "wrk rounds of each kind (gateway overhead)")
	duration := flag.Duration("duration", 10*time.Second, "length of one wrk round")
	warmup := flag.Duration("warmup", 2*time.Second, "wrk warm-up of each kind before the rounds (0: none)")
	threads := flag.Int("threads", 2, "wrk threads")
	conns := flag.Int("conns", 16, "wrk connections")
	loads := flag.String("loads", "", "wrk loads to measure the overhead at, THREADSxCONNS comma-separated (e.g. 1x1,2x16,8x128; default: -threads x -conns; none: only -h2load's)")
	cpus := flag.String("cpus", "", "CPUs by role, e.g. wrk=0-5,gateway=6-10,node=11-15 (etcd=... too); a role left out shares every CPU")
	cpuQuota := flag.String("cpu-quota", "", "CPU time by role, e.g. gateway=0.5,node=0.5: the gateway and each node in a cgroup capped at that many CPUs (needs root and the cgroup cpu controller)")
	plainServe := flag.String("serve-plain-proxy", "", "internal: serve the plain proxy to this node address")
	plain := flag.Bool("plain-proxy", true, "also run wrk through a bare Go reverse proxy to the node (a baseline for the gateway)")
	nginx := flag.String("nginx", "", "also run wrk through this nginx binary as a reverse proxy to the node (a second baseline; bash scripts/nginx.sh | tail -1)")
	h2loadBin := flag.String("h2load", "", "also measure the overhead over TLS and HTTP/2 with this h2load binary, straight at the node's HTTPS listener and through the gateway's (bash scripts/h2load.sh | tail -1)")
	h2Loads := flag.String("h2-loads", "16x1,16x8", "with -h2load: CONNSxSTREAMS comma-separated, h2load's connections and requests at once on each")
	samples := flag.Int("samples", 30, "frozen → first response samples of each kind (SNI pre-warm)")
	mode := flag.String("mode", "", "mode heavy is deployed in for the pre-warm figure (\"\": the server's default, request)")
	pause := flag.Duration("pause", 400*time.Millisecond, "pause before every pre-warm sample (at least 350ms: A samples must be over a second apart)")
	rtt := flag.Duration("rtt", 2*time.Millisecond, "also measure the pre-warm with the client this far away (emulated; 0: loopback only)")
	failovers := flag.Int("failovers", 3, "kill -9 runs (failover)")
	clients := flag.Int("clients", 4, "goroutines of GETs during a failover run")
	before := flag.Duration("before", time.Second, "load before the kill in a failover run")
	after := flag.Duration("after", time.Second, "load after the killed node leaves the member list")
	only := flag.String("only", "overhead,prewarm,failover,freeze", "sections to run")
	gatewayFlags := flag.String("gateway-flags", "", "extra flags for the gateway's frost server, space-separated (e.g. --cpuprofile FILE)")
	nodeFlags := flag.String("node-flags", "", "extra flags for the nodes' frost servers, space-separated (section e2b: --runsc RUNSC --rootfs DIR)")
	e2bDir := flag.String("e2b", "", "section e2b: directory with the E2B SDK installed and gateway-bench.mjs (scripts/bench.sh prepares it)")
	e2bN := flag.Int("e2b-n", 20, "section e2b: samples of each operation")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("cluster bench: ")
	if *plainServe != "" {
		log.Fatal(servePlainProxy(*plainServe))
	}
	pins, err := parsePins(*cpus)
	if err != nil {
		log.Fatal(err)
	}
	quotas, err := parseQuotas(*cpuQuota)
	if err != nil {
		log.Fatal(err)
	}
	wrkLoads := []wrkOptions{{threads: *threads, conns: *conns, duration: *duration, pins: pins}}
	if *loads != "" {
		wrkLoads = nil
		for _, l := range splitList(*loads) {
			if l == "none" {
				continue
			}
			t, c, ok := strings.Cut(l, "x")
			tn, err1 := strconv.Atoi(t)
			cn, err2 := strconv.Atoi(c)
			if !ok || err1 != nil || err2 != nil || tn < 1 || cn < tn {
				log.Fatalf("-loads: %q is not THREADSxCONNS with CONNS ≥ THREADS ≥ 1", l)
			}
			wrkLoads = append(wrkLoads, wrkOptions{threads: tn, conns: cn, duration: *duration, pins: pins})
		}
	}
	if *h2loadBin != "" {
		for _, l := range splitList(*h2Loads) {
			c, m, ok := strings.Cut(l, "x")
			cn, err1 := strconv.Atoi(c)
			mn, err2 := strconv.Atoi(m)
			if !ok || err1 != nil || err2 != nil || cn < 1 || mn < 1 {
				log.Fatalf("-h2-loads: %q is not CONNSxSTREAMS with both ≥ 1", l)
			}
			wrkLoads = append(wrkLoads, wrkOptions{threads: min(2, cn), conns: cn, duration: *duration, pins: pins, h2load: *h2loadBin, streams: mn})
		}
	}
	if *pause < 350*time.Millisecond {
		log.Fatal("-pause must be at least 350ms: the gateway prewarms an app at most once a second")
	}
	if *etcdBin == "" {
		log.Fatal("give -etcd (bash scripts/etcd.sh | tail -1 prints its path)")
	}
	if _, err := exec.LookPath("wrk"); err != nil && slices.Contains(splitList(*only), "overhead") {
		log.Fatal("wrk not found: run scripts/deps.sh")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	if slices.Contains(splitList(*only), "e2b") && (*e2bDir == "" || !strings.Contains(*nodeFlags, "--runsc")) {
		log.Fatal("section e2b needs -e2b DIR and -node-flags with --runsc and --rootfs")
	}
	c, err := startCluster(ctx, *frost, *etcdBin, *nodes, strings.Fields(*nodeFlags), strings.Fields(*gatewayFlags), pins, quotas)
	if err != nil {
		log.Fatalf("start the cluster: %v", err)
	}
	defer c.stop() // on a panic; every other way out stops it itself
	// An interrupt stops the cluster before the bench exits.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		log.Printf("%v: stopping the cluster", s)
		c.stop()
		os.Exit(1)
	}()
	err = run(ctx, c, config{
		guests: *guests, only: splitList(*only),
		wrk:    wrkLoads,
		warmup: *warmup, rounds: *rounds, plain: *plain, nginx: *nginx,
		samples: *samples, mode: *mode, pause: *pause, rtt: *rtt,
		failovers: *failovers, clients: *clients, before: *before, after: *after,
		e2bDir: *e2bDir, e2bN: *e2bN,
	})
	if err != nil {
		log.Printf("%v\nlast lines of the cluster's logs:\n%s", err, c.logTails())
		c.stop()
		os.Exit(1)
	}
	c.stop()
	log.Printf("done in %s", time.Since(began).Round(time.Second))
}

// config is what run measures.
type config struct {
	guests        string
	only          []string
	wrk           []wrkOptions // one overhead table each
	warmup        time.Duration
	rounds        int
	plain         bool
	nginx         string // the nginx binary, "" for none
	samples       int
	mode          string
	pause         time.Duration
	rtt           time.Duration
	failovers     int
	clients       int
	before, after time.Duration
	e2bDir        string
	e2bN          int
}

// run measures each section on the running cluster and prints its report.
func run(ctx context.Context, c *cluster, cfg config) error {
	fmt.Println("### Cluster")
	fmt.Println()
	fmt.Printf("A real etcd, %d nodes (`frost server --role node`) and a gateway (`--role gateway`, HTTP and HTTPS, `--domain %s`), each its own process on loopback.\n\n", len(c.nodes), domain)
	if err := c.deploy("hello", filepath.Join(cfg.guests, "hello-c.wasm"), "--idle", "1h", "--concurrency", "1024"); err != nil {
		return err
	}
	if slices.Contains(cfg.only, "overhead") {
		for _, o := range cfg.wrk {
			r, err := measureOverhead(ctx, c, o, cfg.warmup, cfg.rounds, cfg.plain, cfg.nginx)
			if err != nil {
				return fmt.Errorf("gateway overhead: %w", err)
			}
			r.print()
		}
	}
	if slices.Contains(cfg.only, "prewarm") {
		rtts := []time.Duration{0}
		if cfg.rtt > 0 {
			rtts = append(rtts, cfg.rtt)
		}
		for _, rtt := range rtts {
			r, err := measurePrewarm(ctx, c, filepath.Join(cfg.guests, "heavy.wasm"), cfg.mode, cfg.samples, cfg.pause, rtt)
			if err != nil {
				return fmt.Errorf("SNI pre-warm: %w", err)
			}
			r.print()
		}
	}
	for _, s := range []struct {
		name string
		sig  syscall.Signal
	}{{"failover", syscall.SIGKILL}, {"freeze", syscall.SIGSTOP}} {
		if !slices.Contains(cfg.only, s.name) {
			continue
		}
		r, err := measureFailover(ctx, c, s.sig, cfg.failovers, cfg.clients, cfg.before, cfg.after)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		r.print()
	}
	if slices.Contains(cfg.only, "e2b") {
		if err := measureE2B(c, cfg.e2bDir, cfg.e2bN); err != nil {
			return fmt.Errorf("E2B SDK through the gateway: %w", err)
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// median returns the median of f over xs (the mean of the middle two for
// an even count).
func median[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	return stats.Median(v)
}

// pctDur returns the p-th percentile of f over xs: the median for 50,
// else the nearest rank below.
func pctDur[T any](xs []T, p int, f func(T) time.Duration) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	v := make([]time.Duration, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	if p == 50 {
		return time.Duration(median(v, func(d time.Duration) float64 { return float64(d) }))
	}
	return v[(len(v)-1)*p/100]
}

func us(d time.Duration) string { return strconv.FormatFloat(float64(d.Nanoseconds())/1e3, 'f', 0, 64) }

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d.Nanoseconds())/1e6, 'f', 1, 64) }
