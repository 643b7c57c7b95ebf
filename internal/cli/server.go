package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"time"

	"github.com/frostdev/frost/internal/front"
	"github.com/frostdev/frost/internal/maxprocs"
	"github.com/frostdev/frost/internal/sandbox"
	"github.com/frostdev/frost/internal/server"
)

// version is set at build time with -ldflags "-X github.com/frostdev/frost/internal/cli.version=…".
var version = "dev"

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// DefaultSandboxNetwork is where sandboxes get their addresses unless
// --sandbox-network says otherwise: a /30 each, 16,384 sandboxes.
const DefaultSandboxNetwork = "10.213.0.0/16"

// serverCmd runs `frost server` until ctx is cancelled (SIGINT/SIGTERM), then drains.
func serverCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := server.DefaultConfig()
	fs := flag.NewFlagSet("frost server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.DataDir, "data", DefaultDataDir(), "directory for all state: registry, blobs, compile cache, admin token")
	fs.StringVar(&cfg.HTTPAddr, "http", cfg.HTTPAddr, "address for app traffic (apps answer at http://NAME.DOMAIN:PORT/)")
	fs.StringVar(&cfg.APIAddr, "api", cfg.APIAddr, "address for the control API")
	fs.StringVar(&cfg.Domain, "domain", cfg.Domain, "domain apps answer under")
	fs.DurationVar(&cfg.DrainTimeout, "drain", cfg.DrainTimeout, "how long shutdown waits for in-flight requests")
	fs.DurationVar(&cfg.Idle, "idle", cfg.Idle, "default time without requests before an app is frozen to zero (frost deploy --idle overrides)")
	snapCap := sizeFlag(cfg.SnapshotCap)
	fs.Var(&snapCap, "snapshot-cap", "cap on DATA/snapshots; least recently used snapshots are evicted past it (0: none)")
	fs.DurationVar(&cfg.SnapshotTTL, "snapshot-ttl", cfg.SnapshotTTL, "remove snapshots unused for this long (0: never)")
	fs.IntVar(&cfg.LongRunners, "long-runners", cfg.LongRunners, "guest calls that may run past 2ms at once (0: as many as there are cores; -1: no limit)")
	fs.StringVar(&cfg.Runsc, "runsc", "", "gVisor runsc binary: enables agent sandboxes (scripts/runsc.sh installs a pinned one)")
	fs.DurationVar(&cfg.SandboxMetricsEvery, "sandbox-metrics-every", sandbox.DefaultMetricsEvery, "how often each running sandbox's CPU and memory are sampled (frost sandbox metrics, E2B's getMetrics); the last hour is kept")
	fs.IntVar(&cfg.SandboxSpares, "sandbox-spares", 0, "runsc containers kept created ahead of need, ~60 MB each: one per sandbox configuration in recent use, a second for the one in use last when there is room (0: 2; -1: none)")
	network := fs.String("sandbox-network", DefaultSandboxNetwork, "IPv4 range sandboxes get addresses in, a /30 each: they reach the internet through this machine (masqueraded), and their ports are dialled directly; off: no network, ports through the agent")
	fs.StringVar(&cfg.RootFS, "rootfs", "", "root file system of the \"base\" sandbox template (scripts/rootfs.sh builds one)")
	fs.StringVar(&cfg.HTTPSAddr, "https", "", "address for app traffic over TLS too (apps at https://NAME.DOMAIN:PORT/, sandbox ports, E2B's data plane)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "certificate file (PEM) for --https; without it and --tls-key, a development certificate signed by DATA/tls/ca.pem")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "key file (PEM) for --tls-cert")
	fs.DurationVar(&cfg.TLSReload, "tls-reload", cfg.TLSReload, "with --https: look this often for --tls-cert/--tls-key files written anew (a renewal), and serve them without a restart; the development certificate is renewed before it expires (0: never)")
	fs.StringVar(&cfg.Role, "role", cfg.Role, "all (one machine), node (a cluster member serving apps) or gateway (routes a cluster's traffic to its nodes)")
	etcdURLs := fs.String("etcd", "", "comma-separated etcd client URLs: the cluster's registry (roles node and gateway)")
	fs.StringVar(&cfg.Name, "name", "", "this node's name in the cluster (role node; default node-PORT)")
	fs.StringVar(&cfg.Advertise, "advertise", "", "role node: the host other cluster processes reach this node at (needed when it listens on all addresses)")
	fs.DurationVar(&cfg.MembershipTTL, "lease", cfg.MembershipTTL, "role node: the node stays a member this long after its last heartbeat to etcd (sent every third of it; whole seconds): shorter takes a dead node out of the ring sooner, longer rides out etcd's pauses")
	hopFlag := fs.Bool("hop", true, "gateway: send requests to nodes that take them over hop connections, many at once on each (false: HTTP/1.1, one at a time a connection)")
	fs.Float64Var(&cfg.LoadFactor, "load-factor", 1.25, "gateway: no node gets more than this times the average in-flight load (bounded-load consistent hashing); higher keeps hot apps on fewer nodes")
	fs.StringVar(&cfg.S3, "s3", "", "shared storage for a cluster's releases and snapshots: http[s]://HOST[:PORT]/BUCKET[/PREFIX][?region=R], credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	blobCache := sizeFlag(cfg.BlobCache)
	fs.Var(&blobCache, "blob-cache", "with --s3: cap on DATA/blobs, then a cache of the shared storage (0: none)")
	fs.DurationVar(&cfg.BodyTimeout, "body-timeout", front.DefaultBodyTimeout, fmt.Sprintf("cut a request body (app traffic, uploads to the control API) that goes this long without a byte, or that comes slower than %d bytes a second past its first %v of waiting, with 408 (nginx's client_body_timeout)", front.MinBodyRate, front.BodyGrace))
	fs.DurationVar(&cfg.StallTimeout, "stall-timeout", front.DefaultStallTimeout, "app traffic: close a connection whose client takes none of its answer for this long (nginx's send_timeout)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (for performance work)")
	traceFile := fs.String("trace", "", "write an execution trace of the whole run to this file (for latency work: go tool trace)")
	var deploys multiFlag
	fs.Var(&deploys, "deploy", "deploy NAME=FILE.wasm at start (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: frost server [--data DIR] [--http ADDR] [--https ADDR] [--api ADDR] [--domain DOMAIN] [--deploy NAME=FILE.wasm]...\n       frost server --role node|gateway --etcd URLS [--name NODE] [--s3 URL] ...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "frost server: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg.NoHop = !*hopFlag
	if *network != "off" {
		p, err := netip.ParsePrefix(*network)
		if err != nil || !p.Addr().Is4() || p.Bits() > 28 || p.Bits() < 8 {
			fmt.Fprintf(stderr, "frost server: --sandbox-network %q: want an IPv4 range from /8 to /28, such as %s, or off\n", *network, DefaultSandboxNetwork)
			return 2
		}
		cfg.SandboxNetwork = p.Masked()
	}
	if cfg.TLSReload < 0 {
		fmt.Fprintf(stderr, "frost server: --tls-reload %v: must not be negative (0: never)\n", cfg.TLSReload)
		return 2
	}
	for name, d := range map[string]time.Duration{"--body-timeout": cfg.BodyTimeout, "--stall-timeout": cfg.StallTimeout, "--lease": cfg.MembershipTTL} {
		if d <= 0 {
			fmt.Fprintf(stderr, "frost server: %s %v: must be positive\n", name, d)
			return 2
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "frost server: --log-level %q: use debug, info, warn or error\n", *logLevel)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Deploy = deploys
	if *etcdURLs != "" {
		cfg.Etcd = strings.Split(*etcdURLs, ",")
	}
	cfg.SnapshotCap = int64(snapCap)
	cfg.BlobCache = int64(blobCache)
	cfg.Version = version

	// Half a CPU runs one processor, not Go's two (package maxprocs).
	if limit, changed := maxprocs.Set(); changed {
		cfg.Logger.Info("GOMAXPROCS from the cgroup CPU limit", "cpus", limit, "gomaxprocs", runtime.GOMAXPROCS(0))
	}

	// While guest calls run long, one processor more than the cores: they
	// may hold one per core, and the spare one polls the network
	// (internal/runtime/wasm/fair.go). Not when GOMAXPROCS is set.
	cfg.SpareProcessor = os.Getenv("GOMAXPROCS") == ""
	for _, p := range []struct {
		flag, path string
		start      func(io.Writer) error
		stop       func()
	}{
		{"--cpuprofile", *cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile},
		{"--trace", *traceFile, trace.Start, trace.Stop},
	} {
		if p.path == "" {
			continue
		}
		f, err := os.Create(p.path)
		if err == nil {
			err = p.start(f)
		}
		if err != nil {
			fmt.Fprintf(stderr, "frost server: %s: %v\n", p.flag, err)
			return 1
		}
		defer f.Close()
		defer p.stop()
	}
	s, err := server.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "frost server: %v\n", err)
		return 1
	}
	role := ""
	if cfg.Role != server.RoleAll {
		role = " as " + cfg.Role
		if cfg.Role == server.RoleNode {
			role += " " + s.Name()
		}
	}
	fmt.Fprintf(stdout, "frost %s serving%s\n  apps:        http://NAME.%s%s/\n  control API: http://%s (token in %s)\n",
		version, role, cfg.Domain, portSuffix(s.HTTPAddr()), s.APIAddr(), strings.TrimSuffix(cfg.DataDir, "/")+"/"+AdminTokenFile)
	if s.HTTPSAddr() != "" {
		fmt.Fprintf(stdout, "  apps (TLS):  https://NAME.%s%s/\n", cfg.Domain, portSuffix(s.HTTPSAddr()))
		if s.CAFile != "" {
			fmt.Fprintf(stdout, "  development certificate: trust %s (curl --cacert, NODE_EXTRA_CA_CERTS)\n", s.CAFile)
			if !strings.Contains(cfg.Domain, ".") {
				fmt.Fprintf(stdout, "  note: TLS clients refuse a wildcard for *.%s; use a --domain with a dot (e.g. frost.localhost) for https://NAME.DOMAIN\n", cfg.Domain)
			}
		}
	}
	if s.Node != nil {
		apps, _ := s.Node.Apps(ctx)
		for _, a := range apps {
			fmt.Fprintf(stdout, "  app %-10s curl %s\n", a.Name, a.URL)
		}
	}
	if f, ok := stdout.(*os.File); ok {
		f.Sync()
	}
	<-ctx.Done()
	fmt.Fprintln(stderr, "frost server: draining")
	start := time.Now()
	if err := s.Shutdown(context.Background()); err != nil {
		fmt.Fprintf(stderr, "frost server: shutdown: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "frost server: stopped after %s\n", time.Since(start).Round(time.Millisecond))
	return 0
}

func portSuffix(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 && addr[i+1:] != "80" && addr[i+1:] != "443" {
		return addr[i:]
	}
	return ""
}
