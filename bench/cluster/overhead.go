package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// wrkResult is what one wrk run reports.
type wrkResult struct {
	rps      float64
	p50, p99 time.Duration
	errors   int   // non-2xx/3xx responses and socket errors
	requests int64 // answered in the run

	// CPU time the app's node and the proxy in front of it (none for
	// direct) used during the run, from /proc.
	nodeCPU, proxyCPU time.Duration
}

// wrkOptions are wrk's load settings, or h2load's.
type wrkOptions struct {
	threads, conns int
	duration       time.Duration
	pins           pins // wrk runs on pins["wrk"]

	// h2load, when set, is the h2load binary to load the HTTPS
	// listeners with instead (TLS, HTTP/2), streams requests at once on
	// each connection.
	h2load  string
	streams int
}

// wrk runs wrk (or h2load) against addr with Host host and parses its
// report.
func wrk(ctx context.Context, o wrkOptions, addr, host string, d time.Duration) (wrkResult, error) {
	if o.h2load != "" {
		return h2load(ctx, o, addr, host, d)
	}
	cmd := exec.CommandContext(ctx, "wrk", "-t"+strconv.Itoa(o.threads), "-c"+strconv.Itoa(o.conns),
		"-d"+strconv.Itoa(int(d.Round(time.Second)/time.Second))+"s", "--latency", "-H", "Host: "+host, "http://"+addr+"/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := o.pins.start("wrk", cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v: %s", err, out.Bytes())
	}
	return parseWrk(out.String())
}

// parseWrk reads wrk --latency output: Requests/sec, the 50% and 99%
// latencies, and errors (non-2xx/3xx responses and socket errors).
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var haveRPS, have50, have99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk: %q: %v", sc.Text(), err)
			}
			r.rps, haveRPS = v, true
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			r.requests, _ = strconv.ParseInt(f[0], 10, 64)
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			d, err := wrkDuration(f[1])
			if err != nil {
				return r, err
			}
			if f[0] == "50%" {
				r.p50, have50 = d, true
			} else {
				r.p99, have99 = d, true
			}
		case len(f) == 5 && f[0] == "Non-2xx":
			n, _ := strconv.Atoi(f[4])
			r.errors += n
		case len(f) >= 2 && f[0] == "Socket" && f[1] == "errors:":
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 3; i < len(f); i += 2 {
				n, _ := strconv.Atoi(strings.TrimSuffix(f[i], ","))
				r.errors += n
			}
		}
	}
	if !haveRPS || !have50 || !have99 {
		return r, fmt.Errorf("wrk output without Requests/sec or latency percentiles:\n%s", out)
	}
	return r, nil
}

// wrkDuration parses wrk's latencies: 52.00us, 1.23ms, 2.00s, 1.00m.
func wrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("wrk latency %q: %v", s, err)
			}
			return time.Duration(f * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("wrk latency %q: unknown unit", s)
}

// overhead is section 1's figures.
type overhead struct {
	node    member        // the app's node
	kinds   []string      // "direct", "gateway", then the baselines: "plain proxy", "nginx"
	results [][]wrkResult // by kind, by round
	rounds  int
	opts    wrkOptions
	quotas  *quotas
	host    string
	nginx   string // what the nginx baseline's binary says it is
}

// measureOverhead finds hello's node and runs wrk straight at it and
// through the gateway (and, with plain, through a bare Go reverse proxy;
// with nginx, the path of an nginx binary, through nginx), alternating,
// rounds times.
func measureOverhead(ctx context.Context, c *cluster, o wrkOptions, warmup time.Duration, rounds int, plain bool, nginx string) (*overhead, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, body, err := get(ctx, hc, c.gw.http, "hello")
	if err != nil {
		return nil, err
	}
	name := resp.Header.Get("Frost-Node")
	if resp.StatusCode != http.StatusOK || name == "" {
		return nil, fmt.Errorf("hello through the gateway: %s, Frost-Node %q: %q", resp.Status, name, body)
	}
	list, err := c.members(ctx)
	if err != nil {
		return nil, err
	}
	r := &overhead{rounds: rounds, opts: o, quotas: c.quotas, host: "hello." + domain}
	for _, m := range list {
		if m.Name == name {
			r.node = m
		}
	}
	if r.node.HTTPAddr == "" {
		return nil, fmt.Errorf("node %s (Frost-Node of hello) is not in /v1/nodes %v", name, list)
	}
	var nodePID int
	addrs := []string{r.node.HTTPAddr, c.gw.http}
	for _, p := range c.nodes {
		if p.name == name {
			nodePID = p.cmd.Process.Pid
			if o.h2load != "" {
				addrs[0] = p.https
			}
		}
	}
	if o.h2load != "" {
		// The node's and the gateway's own TLS listeners; the baselines
		// speak plain HTTP/1.1 only.
		addrs[1] = c.gw.https
		plain, nginx = false, ""
	}
	proxies := []int{0, c.gw.cmd.Process.Pid}
	r.kinds = []string{"direct", "gateway"}
	// The baselines, each a proxy process of its own on the gateway's CPUs.
	for _, b := range []struct {
		kind  string
		on    bool
		start func() (string, int, func(), error)
	}{
		{"plain proxy", plain, func() (string, int, func(), error) {
			return startPlainProxy(ctx, r.node.HTTPAddr, o.pins, c.quotas)
		}},
		{"nginx", nginx != "", func() (string, int, func(), error) {
			r.nginx = nginxVersion(nginx)
			return startNginx(ctx, nginx, r.node.HTTPAddr, o.pins, c.quotas)
		}},
	} {
		if !b.on {
			continue
		}
		addr, pid, stop, err := b.start()
		if err != nil {
			return nil, err
		}
		defer stop()
		addrs = append(addrs, addr)
		proxies = append(proxies, pid)
		r.kinds = append(r.kinds, b.kind)
	}
	for i, addr := range addrs {
		resp, body, err := get(ctx, hc, addr, "hello")
		if o.h2load != "" {
			resp, body, err = getTLS(ctx, addr, "hello")
		}
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Frost-Node") != name {
			return nil, fmt.Errorf("hello %s: %s, Frost-Node %q (want %s): %q", r.kinds[i], resp.Status, resp.Header.Get("Frost-Node"), name, body)
		}
		if warmup > 0 {
			if _, err := wrk(ctx, o, addr, r.host, warmup); err != nil {
				return nil, err
			}
		}
	}
	r.results = make([][]wrkResult, len(addrs))
	for range rounds {
		for i, addr := range addrs {
			node0, proxy0 := cpuTime(nodePID), cpuTime(proxies[i])
			w, err := wrk(ctx, o, addr, r.host, o.duration)
			if err != nil {
				return nil, err
			}
			w.nodeCPU, w.proxyCPU = cpuTime(nodePID)-node0, cpuTime(proxies[i])-proxy0
			r.results[i] = append(r.results[i], w)
		}
	}
	// Every request went to the app's node: the gateway did not spill it.
	// The requests of wrk's last moments may still be on their way to the
	// node, and bounded loads would rightly spill this one while they
	// are: first wait for them to end.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if list, err := c.members(ctx); err == nil && !slices.ContainsFunc(list, func(m member) bool { return m.InFlight > 0 }) {
			break
		}
	}
	resp, _, err = get(ctx, hc, c.gw.http, "hello")
	if err == nil && resp.Header.Get("Frost-Node") != name {
		// The gateway's view, to tell a node that left the ring from one
		// it spilled from.
		list, lerr := c.members(ctx)
		return nil, fmt.Errorf("hello moved from %s to %s during the runs (the gateway's nodes and their requests in flight: %+v %v)", name, resp.Header.Get("Frost-Node"), list, lerr)
	}
	return r, nil
}

// startPlainProxy runs this program again as a bare
// net/http/httputil.ReverseProxy to node on a loopback port, on the
// gateway's CPUs (and with its CPU quota): what any Go reverse proxy
// costs here.
func startPlainProxy(ctx context.Context, node string, pins pins, quotas *quotas) (string, int, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", 0, nil, err
	}
	cmd := exec.Command(self, "-serve-plain-proxy", node)
	cmd.Env = quotas.env("gateway")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, nil, err
	}
	if err := pins.start("gateway", cmd); err != nil {
		return "", 0, nil, err
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	if err := quotas.cap("gateway", "plain-proxy", cmd.Process.Pid); err != nil {
		stop()
		return "", 0, nil, err
	}
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", 0, nil, fmt.Errorf("plain proxy: %v", err)
	}
	return strings.TrimSpace(addr), cmd.Process.Pid, stop, nil
}

// servePlainProxy is the plain proxy's process: it prints its address
// and serves until killed.
func servePlainProxy(node string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	target := &url.URL{Scheme: "http", Host: node}
	srv := &http.Server{Handler: &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 256},
		ErrorLog:  log.New(io.Discard, "", 0), // wrk cuts requests short at its end
	}}
	return srv.Serve(ln)
}

func (r *overhead) print() {
	fmt.Println("### Gateway overhead: hello-c straight at its node vs through the gateway")
	fmt.Println()
	where := fmt.Sprintf("wrk, gateway and node share the machine's %d cores", runtime.NumCPU())
	if len(r.opts.pins) > 0 {
		where = fmt.Sprintf("of the machine's %d cores, %s", runtime.NumCPU(), r.opts.pins)
	}
	if q := r.quotas.String(); q != "" {
		where += "; " + q
	}
	client, proto := fmt.Sprintf("wrk `-t%d -c%d -d%s --latency`, Host: %s", r.opts.threads, r.opts.conns, r.opts.duration, r.host), "HTTP/1.1 keep-alive"
	if r.opts.h2load != "" {
		client = fmt.Sprintf("h2load `-t%d -c%d -m%d -D%s`, https://%s/ (its TLS server name and :authority)", r.opts.threads, r.opts.conns, r.opts.streams, r.opts.duration, r.host)
		proto = fmt.Sprintf("TLS (each server's development certificate) and HTTP/2, up to %d requests at once on each connection; direct is the node's own `--https` listener", r.opts.streams)
	}
	fmt.Printf("%s, %d rounds, each running %s in turn; the app's node is %s (hello deployed with --concurrency 1024: no request is shed). Loopback, %s; %s.",
		client, r.rounds, strings.Join(r.kinds, ", "), r.node.Name, proto, where)
	for _, kind := range r.kinds[2:] {
		switch kind {
		case "plain proxy":
			fmt.Print(" Plain proxy: a bare `httputil.ReverseProxy` in a process of its own on the gateway's CPUs (keep-alive pool to the node, nothing else), for what any Go reverse proxy costs on this machine.")
		case "nginx":
			fmt.Print(" nginx: " + r.nginx + " (scripts/nginx.sh), one process (`master_process off`), `proxy_pass` to the node with a keep-alive pool, no access log, on the gateway's CPUs: what a reverse proxy written in C costs on this machine.")
		}
	}
	fmt.Print("\n\n")
	fmt.Println("| round | variant | req/s | p50 µs | p99 µs | errors |")
	fmt.Println("|---|---|---|---|---|---|")
	for round := range r.rounds {
		for k, kind := range r.kinds {
			w := r.results[k][round]
			fmt.Printf("| %d | %s | %.0f | %s | %s | %d |\n", round+1, kind, w.rps, us(w.p50), us(w.p99), w.errors)
		}
	}
	type med struct{ rps, p50, p99 float64 }
	meds := make([]med, len(r.kinds))
	for k, kind := range r.kinds {
		rs := r.results[k]
		meds[k] = med{
			median(rs, func(w wrkResult) float64 { return w.rps }),
			median(rs, func(w wrkResult) float64 { return float64(w.p50) }),
			median(rs, func(w wrkResult) float64 { return float64(w.p99) }),
		}
		fmt.Printf("| **median** | **%s** | **%.0f** | **%s** | **%s** | |\n", kind, meds[k].rps, us(time.Duration(meds[k].p50)), us(time.Duration(meds[k].p99)))
	}
	fmt.Println()
	d, g := meds[0], meds[1]
	ratio := g.rps / d.rps
	added50 := time.Duration(g.p50 - d.p50)
	fmt.Printf("Through the gateway: **%.2f×** the direct throughput (target ≥ 0.8×: %s); **%s µs** added at p50 (target ≤ 50 µs: %s), %s µs at p99.",
		ratio, met(ratio >= 0.8), us(added50), met(added50 <= 50*time.Microsecond), us(time.Duration(g.p99-d.p99)))
	for k, kind := range r.kinds[2:] {
		p := meds[k+2]
		fmt.Printf(" %s: %.2f× the direct throughput, %s µs added at p50; the gateway does %.2f× its throughput.",
			baselineName[kind], p.rps/d.rps, us(time.Duration(p.p50-d.p50)), g.rps/p.rps)
	}
	fmt.Print("\n\n")
	r.printCPU()
}

// printCPU writes the CPU each variant cost per request, the node's and
// its proxy's: what a gateway on as many cores as its node can carry,
// on any machine, busy or not. Saturated on cores of its own, a proxy
// that costs k times the node's CPU per request forwards 1/k of what the
// node alone answers.
func (r *overhead) printCPU() {
	perReq := func(d time.Duration, w wrkResult) float64 {
		if w.requests == 0 {
			return 0
		}
		return float64(d) / float64(time.Microsecond) / float64(w.requests)
	}
	fmt.Println("CPU per request, µs (from /proc/PID/stat, over each run; medians of the rounds):")
	fmt.Println()
	fmt.Println("| variant | the app's node | the proxy | both |")
	fmt.Println("|---|---|---|---|")
	node := make([]float64, len(r.kinds))
	proxy := make([]float64, len(r.kinds))
	for k, kind := range r.kinds {
		rs := r.results[k]
		node[k] = median(rs, func(w wrkResult) float64 { return perReq(w.nodeCPU, w) })
		proxy[k] = median(rs, func(w wrkResult) float64 { return perReq(w.proxyCPU, w) })
		both := median(rs, func(w wrkResult) float64 { return perReq(w.nodeCPU+w.proxyCPU, w) })
		p := fmt.Sprintf("%.1f", proxy[k])
		if k == 0 {
			p = "–"
		}
		fmt.Printf("| %s | %.1f | %s | %.1f |\n", kind, node[k], p, both)
	}
	fmt.Println()
	if node[0] > 0 && proxy[1] > 0 {
		k := proxy[1] / node[0]
		fmt.Printf("The gateway's CPU per request is **%.2f×** the node's: on as many cores as the node, it would forward at most **%.2f×** what the node answers direct (≥ 0.8× needs ≤ 1.25×).", k, min(1, 1/k))
		for k, kind := range r.kinds[2:] {
			if proxy[k+2] > 0 {
				fmt.Printf(" %s: %.2f× the node's.", baselineName[kind], proxy[k+2]/node[0])
			}
		}
		fmt.Print("\n\n")
	}
}

// cpuTime is the CPU time process pid has used so far (user and system,
// all its threads; /proc/PID/stat counts clock ticks of 10 ms), 0 for
// pid 0 or a process gone.
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing one. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is the kernel's USER_HZ, what /proc/PID/stat counts in: 100
// on every Linux architecture Go runs on.
const clockTicks = 100

// baselineName names a baseline kind at the start of a sentence.
var baselineName = map[string]string{"plain proxy": "The plain Go proxy", "nginx": "nginx"}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}
