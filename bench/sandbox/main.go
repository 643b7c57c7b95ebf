// Command sandbox measures agent sandboxes on a real frost server (real
// runsc) and prints a Markdown report: create from scratch (boot) vs from
// a built template (restore); pause; resume; first exec after resume; exec
// round trip of `true` against running `true` on the host in the same run;
// the process calls (background exec, list, signal) and the metrics call
// against a file stat; fork and snapshot against pause and resume;
// lines typed at cat on a terminal against on pipes;
// file upload and download throughput. Each create and resume comes -gap
// after the previous step, as on a node that is not saturated: the runtime
// has had time to create its spare container (internal/runtime/gvisor,
// spares.go); resume is also measured right after a pause, before the
// spare is ready. Medians and 99th percentiles (with
// few samples the p99 is the worst). With -e2b DIR (the pinned E2B SDK
// installed with e2e/e2bsdk's scripts), also the E2B SDK against Frost's
// own API for the same operations (DIR/bench.mjs).
//
//	go run ./bench/sandbox -frost bin/frost -runsc RUNSC -rootfs DIR -n 10 [-e2b SDKDIR]
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/frostdev/frost/api"
)

func main() {
	frost := flag.String("frost", "bin/frost", "the frost binary")
	runsc := flag.String("runsc", "", "runsc binary (scripts/runsc.sh)")
	rootfs := flag.String("rootfs", "", "base root file system (scripts/rootfs.sh)")
	n := flag.Int("n", 10, "samples of each lifecycle step")
	gap := flag.Duration("gap", time.Second, "pause before each create and resume")
	execs := flag.Int("execs", 50, "samples of the exec round trip")
	fileMiB := flag.Int("file-mib", 64, "size of the file for the throughput figure")
	spares := flag.Int("spares", 0, "frost server --sandbox-spares (0: its default)")
	e2bDir := flag.String("e2b", "", "directory with the E2B SDK installed and bench.mjs (optional)")
	procs := flag.Bool("processes", true, "measure the process calls (a frost from before them has none)")
	withMetrics := flag.Bool("metrics", true, "with -processes, measure the metrics call too (a frost from before it has none)")
	forks := flag.Bool("forks", true, "measure fork and snapshot (a frost from before them has none)")
	typing := flag.Bool("terminal", true, "measure lines typed at a command on a terminal (a frost from before terminals has none)")
	network := flag.String("network", "", "frost server --sandbox-network (\"\": its default; leave it out for a frost from before sandbox networks)")
	ports := flag.Bool("ports", true, "measure requests to a sandbox's ports")
	uploads := flag.Int("uploads", 0, "E2B uploads of two 8 MiB files to send at once, for the server's memory (0: none; needs a frost with E2B's envd route)")
	treeDir := flag.String("tree", "", "a local directory to copy into a sandbox and out as a tree, against tar through an exec (\"\": none; a frost from before trees has no tree routes)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("sandbox bench: ")
	if *runsc == "" || *rootfs == "" {
		log.Fatal("give -runsc and -rootfs")
	}
	ctx := context.Background()
	c, srv, stop, err := start(*frost, *runsc, *rootfs, *spares, *network)
	if err != nil {
		log.Fatal(err)
	}
	defer stop()

	tpl, err := c.BuildTemplate(ctx, api.TemplateBuildRequest{Name: "bench", FromRootFS: *rootfs, Run: []string{"mkdir -p /root/work", "git config --global init.defaultBranch main"}})
	if err != nil {
		log.Fatal(err)
	}
	_ = tpl
	var cold, fromTpl, pause, resume, resumeNow, firstExec, execTrue, hostTrue []time.Duration
	var ids []string
	for i := 0; i < *n; i++ {
		for _, template := range []string{"base", "bench"} {
			time.Sleep(*gap)
			t0 := time.Now()
			sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Template: template, Timeout: api.Duration(time.Hour)})
			if err != nil {
				log.Fatal(err)
			}
			d := time.Since(t0)
			if template == "base" {
				cold = append(cold, d)
			} else {
				fromTpl = append(fromTpl, d)
				if sb.Boot != "restore" {
					log.Fatalf("a sandbox from the built template booted %q, want restore", sb.Boot)
				}
			}
			ids = append(ids, sb.ID)
		}
	}
	// Lifecycle on one sandbox holding a 16 MiB file and a running process.
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Hour)})
	if err != nil {
		log.Fatal(err)
	}
	ids = append(ids, sb.ID)
	data := make([]byte, 16<<20)
	rand.Read(data)
	if _, err := c.WriteFile(ctx, sb.ID, "/root/work/data.bin", 0o644, bytes.NewReader(data)); err != nil {
		log.Fatal(err)
	}
	run(ctx, c, sb.ID, "bash", "-c", "nohup python3 -c 'import time\nwhile True: time.sleep(0.1)' >/dev/null 2>&1 &")
	for i := 0; i < *n; i++ {
		t0 := time.Now()
		if _, err := c.PauseSandbox(ctx, sb.ID); err != nil {
			log.Fatal(err)
		}
		pause = append(pause, time.Since(t0))
		time.Sleep(*gap)
		t0 = time.Now()
		if _, err := c.ResumeSandbox(ctx, sb.ID); err != nil {
			log.Fatal(err)
		}
		resume = append(resume, time.Since(t0))
		t0 = time.Now()
		run(ctx, c, sb.ID, "true")
		firstExec = append(firstExec, time.Since(t0))
		// And resumed the moment the pause returns.
		if _, err := c.PauseSandbox(ctx, sb.ID); err != nil {
			log.Fatal(err)
		}
		t0 = time.Now()
		if _, err := c.ResumeSandbox(ctx, sb.ID); err != nil {
			log.Fatal(err)
		}
		resumeNow = append(resumeNow, time.Since(t0))
	}
	var fk forkFigures
	if *forks {
		fk = measureForks(ctx, c, sb.ID, *n, *gap)
	}
	for i := 0; i < *execs; i++ {
		t0 := time.Now()
		run(ctx, c, sb.ID, "true")
		execTrue = append(execTrue, time.Since(t0))
		t0 = time.Now()
		if err := exec.Command("true").Run(); err != nil {
			log.Fatal(err)
		}
		hostTrue = append(hostTrue, time.Since(t0))
	}
	var pr processFigures
	if *procs {
		pr = measureProcesses(ctx, c, sb.ID, *execs, *withMetrics)
	}
	var pf portFigures
	if *ports {
		pf = measurePorts(ctx, c, srv, sb.ID, sb.Token, *execs)
	}
	var tf treeFigures
	if *treeDir != "" {
		tf = measureTrees(ctx, c, sb.ID, *treeDir, *execs)
	}
	var uf uploadFigures
	if *uploads > 0 {
		// A sandbox of its own, with room for the uploads in flight:
		// its files are its memory.
		up, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Hour), MemoryBytes: 2 << 30})
		if err != nil {
			log.Fatal(err)
		}
		ids = append(ids, up.ID)
		uf = measureUploadMemory(srv, up.ID, up.Token, *uploads)
	}
	var ty typingFigures
	if *typing {
		ty = measureTyping(ctx, c, sb.ID, *execs)
	}
	big := make([]byte, *fileMiB<<20)
	rand.Read(big)
	var up, down []float64
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		if _, err := c.WriteFile(ctx, sb.ID, "/root/work/big.bin", 0o644, bytes.NewReader(big)); err != nil {
			log.Fatal(err)
		}
		up = append(up, float64(len(big))/(1<<20)/time.Since(t0).Seconds())
		t0 = time.Now()
		var got bytes.Buffer
		if err := c.ReadFile(ctx, sb.ID, "/root/work/big.bin", &got); err != nil || !bytes.Equal(got.Bytes(), big) {
			log.Fatalf("download: %d bytes, %v", got.Len(), err)
		}
		down = append(down, float64(len(big))/(1<<20)/time.Since(t0).Seconds())
	}
	for _, id := range ids {
		c.KillSandbox(ctx, id)
	}

	ms := func(d []time.Duration) string {
		slices.Sort(d)
		return fmt.Sprintf("%.0f / %.0f", float64(d[len(d)/2].Microseconds())/1e3, float64(d[(len(d)-1)*99/100].Microseconds())/1e3)
	}
	med := func(d []time.Duration) float64 { slices.Sort(d); return float64(d[len(d)/2]) }
	fmt.Println("### Agent sandboxes (gVisor, systrap, no KVM)")
	fmt.Println()
	fmt.Printf("%d samples per lifecycle step, each create and resume %v after the step before; %d exec round trips; ms, p50 / p99.\n\n", *n, *gap, *execs)
	fmt.Println("| step | p50 / p99 ms |")
	fmt.Println("|---|---|")
	fmt.Printf("| create from scratch (boot the base root file system) | %s |\n", ms(cold))
	fmt.Printf("| create from a built template (restore its checkpoint) | %s |\n", ms(fromTpl))
	fmt.Printf("| pause (checkpoint to the snapshot store; 16 MiB file, a python process) | %s |\n", ms(pause))
	fmt.Printf("| resume (verify, restore) | %s |\n", ms(resume))
	fmt.Printf("| resume the moment the pause returns (no spare container yet) | %s |\n", ms(resumeNow))
	fmt.Printf("| first exec after resume (`true`) | %s |\n", ms(firstExec))
	fmt.Printf("| exec round trip (`true`, API → runsc exec → init → back) | %s |\n", ms(execTrue))
	fmt.Printf("| baseline: `true` run on the host by the bench | %s |\n", ms(hostTrue))
	fmt.Println()
	fmt.Printf("Create from template vs from scratch: **%.2f×** the time (p50). Exec round trip: %.0f× the host's `true`.\n\n", med(fromTpl)/med(cold), med(execTrue)/med(hostTrue))
	// rows prints a row per sample set (none for an empty one): its p50 /
	// p99 and its p50 over base.
	type row struct {
		name string
		d    []time.Duration
	}
	rows := func(base float64, rs ...row) {
		for _, r := range rs {
			if len(r.d) > 0 {
				fmt.Printf("| %s | %s | %.2f× |\n", r.name, ms(r.d), med(r.d)/base)
			}
		}
	}
	if *procs {
		fmt.Println("Process calls on the same sandbox, alternating with the exec round trip above and a file stat (one `runsc exec` of the agent, the cost of every call that goes into the sandbox); ms, p50 / p99:")
		fmt.Println()
		fmt.Println("| call | p50 / p99 ms | p50 vs stat |")
		fmt.Println("|---|---|---|")
		fmt.Printf("| stat a file (baseline) | %s | 1.00× |\n", ms(pr.stat))
		rows(med(pr.stat),
			row{"exec `true` (full round trip)", pr.exec},
			row{"exec `sleep 600` in the background (answer with its pid)", pr.background},
			row{"list the processes (init's table)", pr.list},
			row{"signal one (KILL)", pr.signal},
			row{"metrics (the sandbox's cgroup, no exec)", pr.metrics})
		fmt.Println()
	}
	if *forks {
		fmt.Println("Fork and snapshot of the same sandbox (16 MiB file, a python process; each fork killed after), against its pause and resume in the same run; ms, p50 / p99:")
		fmt.Println()
		fmt.Println("| step | p50 / p99 ms | p50 vs pause + resume |")
		fmt.Println("|---|---|---|")
		base := med(pause) + med(resume)
		fmt.Printf("| pause + resume (baseline, the medians above) | %.0f | 1.00× |\n", base/1e6)
		rows(base,
			row{"fork one (running: pause, read the checkpoint, resume, restore a new sandbox)", fk.one},
			row{"fork four", fk.four},
			row{"snapshot as a template (running)", fk.snapshot},
			row{"create from that template", fk.fromSnapshot})
		fmt.Println()
	}
	if *ports {
		fmt.Printf("Requests to the sandbox's ports through Frost's HTTP listener (the port proxy), from one client keeping its connection alive, alternating; the servers (HTTP/1.1) answered that %d requests came from %s on %d connections, and from %s on %d; ms, p50 / p99:\n\n", *execs, pf.allFrom, pf.allConns, pf.loopbackFrom, pf.loopbackConns)
		// Sub-millisecond figures: two decimals.
		ms2 := func(d []time.Duration) string {
			slices.Sort(d)
			return fmt.Sprintf("%.2f / %.2f", float64(d[len(d)/2].Microseconds())/1e3, float64(d[(len(d)-1)*99/100].Microseconds())/1e3)
		}
		base, baseName := pf.loopback, "loopback"
		if len(pf.direct) > 0 {
			base, baseName = pf.direct, "straight"
		}
		fmt.Printf("| port | p50 / p99 ms | p50 vs %s |\n", baseName)
		fmt.Println("|---|---|---|")
		for _, r := range []row{
			{"a server on every address, straight to the sandbox's address (no proxy)", pf.direct},
			{"the same through the port proxy", pf.all},
			{"a server on 127.0.0.1 only (the proxy through the agent's relay, a runsc exec a connection)", pf.loopback},
		} {
			if len(r.d) > 0 {
				fmt.Printf("| %s | %s | %.2f× |\n", r.name, ms2(r.d), med(r.d)/med(base))
			}
		}
		fmt.Println()
	}
	if *treeDir != "" {
		fmt.Printf("A directory tree (%s: %d files, %.1f MiB) copied into the sandbox and out, %d times each way, alternating with the same through an exec (a tar stream as the exec's input or output); ms, p50 / p99:\n\n", *treeDir, tf.files, float64(tf.bytes)/(1<<20), *execs)
		fmt.Println("| copy | p50 / p99 ms | p50 vs exec |")
		fmt.Println("|---|---|---|")
		fmt.Printf("| in: `tar x` through an exec (baseline) | %s | 1.00× |\n", ms(tf.inExec))
		fmt.Printf("| in: PUT .../files/archive (staged, whole or nothing) | %s | %.2f× |\n", ms(tf.in), med(tf.in)/med(tf.inExec))
		fmt.Printf("| out: `tar c` through an exec (baseline) | %s | 1.00× |\n", ms(tf.outExec))
		fmt.Printf("| out: GET .../files/archive | %s | %.2f× |\n", ms(tf.out), med(tf.out)/med(tf.outExec))
		fmt.Println()
	}
	if *uploads > 0 {
		uf.print()
	}
	if *typing {
		us := func(d []time.Duration) string {
			slices.Sort(d)
			return fmt.Sprintf("%.0f / %.0f", float64(d[len(d)/2].Microseconds()), float64(d[(len(d)-1)*99/100].Microseconds()))
		}
		fmt.Println("A line typed at `cat` running in the sandbox, through one exec whose input streams (the exec's request body, as `frost sandbox exec -t` sends keys), until it comes back; alternating, on pipes and on a terminal, and at `cat` on the host through a pipe; µs, p50 / p99:")
		fmt.Println()
		fmt.Println("| round trip | p50 / p99 µs | p50 vs pipes |")
		fmt.Println("|---|---|---|")
		fmt.Printf("| sandbox, pipes: the line back from cat | %s | 1.00× |\n", us(ty.pipe))
		fmt.Printf("| sandbox, terminal: its echo | %s | %.2f× |\n", us(ty.echo), med(ty.echo)/med(ty.pipe))
		fmt.Printf("| sandbox, terminal: the line back from cat | %s | %.2f× |\n", us(ty.terminal), med(ty.terminal)/med(ty.pipe))
		fmt.Printf("| host, pipes (baseline) | %s | %.2f× |\n", us(ty.host), med(ty.host)/med(ty.pipe))
		fmt.Println()
	}
	slices.Sort(up)
	slices.Sort(down)
	fmt.Printf("Files, %d MiB of random bytes, median of 3: upload %.0f MiB/s, download %.0f MiB/s (checked byte for byte).\n\n", *fileMiB, up[1], down[1])
	if *e2bDir != "" {
		e2bBench(*e2bDir, srv)
	}
}

// forkFigures are fork's and snapshot's latencies.
type forkFigures struct {
	one, four, snapshot, fromSnapshot []time.Duration
}

// measureForks forks sandbox id n times alone and n times by four, and
// snapshots it n times (creating a sandbox from each), killing what they
// made; gap apart, as the lifecycle steps are.
func measureForks(ctx context.Context, c *api.Client, id string, n int, gap time.Duration) forkFigures {
	var f forkFigures
	kill := func(list []api.Sandbox) {
		for _, s := range list {
			c.KillSandbox(ctx, s.ID)
		}
	}
	for i := 0; i < n; i++ {
		for _, count := range []int{1, 4} {
			time.Sleep(gap)
			t0 := time.Now()
			forks, err := c.ForkSandbox(ctx, id, count, 0)
			if err != nil || len(forks) != count {
				log.Fatalf("fork %d: %d, %v", count, len(forks), err)
			}
			if count == 1 {
				f.one = append(f.one, time.Since(t0))
			} else {
				f.four = append(f.four, time.Since(t0))
			}
			kill(forks)
		}
		time.Sleep(gap)
		name := fmt.Sprintf("bench-snap-%d", i)
		t0 := time.Now()
		if _, err := c.SnapshotSandbox(ctx, id, name); err != nil {
			log.Fatal(err)
		}
		f.snapshot = append(f.snapshot, time.Since(t0))
		time.Sleep(gap)
		t0 = time.Now()
		sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Template: name})
		if err != nil {
			log.Fatal(err)
		}
		f.fromSnapshot = append(f.fromSnapshot, time.Since(t0))
		kill([]api.Sandbox{sb})
		if err := c.DeleteTemplate(ctx, name); err != nil {
			log.Fatal(err)
		}
	}
	return f
}

// processFigures are the process calls' latencies.
type processFigures struct {
	stat, exec, background, list, signal, metrics []time.Duration
}

// measureProcesses times the process calls n times each, interleaved
// with a stat and an exec round trip.
func measureProcesses(ctx context.Context, c *api.Client, id string, n int, metrics bool) processFigures {
	var f processFigures
	timed := func(into *[]time.Duration, fn func() error) {
		t0 := time.Now()
		if err := fn(); err != nil {
			log.Fatal(err)
		}
		*into = append(*into, time.Since(t0))
	}
	for i := 0; i < n; i++ {
		timed(&f.stat, func() error { _, err := c.StatFile(ctx, id, "/root/work/data.bin"); return err })
		timed(&f.exec, func() error { run(ctx, c, id, "true"); return nil })
		var pid int
		timed(&f.background, func() error {
			var err error
			pid, err = c.ExecBackground(ctx, id, api.ExecRequest{Cmd: []string{"sleep", "600"}})
			return err
		})
		timed(&f.list, func() error {
			list, err := c.Processes(ctx, id)
			if err == nil && !slices.ContainsFunc(list, func(p api.Process) bool { return p.Pid == pid }) {
				err = fmt.Errorf("the background command %d is not listed: %+v", pid, list)
			}
			return err
		})
		timed(&f.signal, func() error { return c.Signal(ctx, id, pid, "KILL") })
		if metrics {
			timed(&f.metrics, func() error {
				list, err := c.SandboxMetrics(ctx, id, time.Time{}, time.Time{})
				if err == nil && (len(list) == 0 || list[len(list)-1].MemUsed <= 0) {
					err = fmt.Errorf("metrics of a running sandbox: %+v", list)
				}
				return err
			})
		}
	}
	return f
}

// e2bBench runs bench.mjs in dir against the server and prints its table.
func e2bBench(dir string, srv endpoints) {
	cmd := exec.Command("node", "bench.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "E2B_API_URL="+srv.api, "E2B_SANDBOX_URL=http://"+srv.http,
		"E2B_API_KEY=e2b_"+strings.TrimPrefix(srv.token, "frost_"), "FROST_API="+srv.api, "FROST_TOKEN="+srv.token)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		log.Fatalf("E2B SDK bench: %v", err)
	}
	fmt.Println("### The E2B SDK against Frost's own API")
	fmt.Println()
	fmt.Println("The same operations on one server, through the official E2B SDK (2.51.0, unmodified, over E2B_SANDBOX_URL) and through Frost's REST API with fetch from the same Node.js process, alternating:")
	fmt.Println()
	fmt.Print(string(out))
	fmt.Println()
}

// run runs cmd in sandbox id and returns its output; a failure ends the
// benchmark.
func run(ctx context.Context, c *api.Client, id string, cmd ...string) string {
	var out, errb bytes.Buffer
	code, err := c.Exec(ctx, id, api.ExecRequest{Cmd: cmd}, nil, &out, &errb)
	if err != nil || code != 0 {
		log.Fatalf("exec %v: %d %v %s", cmd, code, err, errb.String())
	}
	return out.String()
}

var (
	apiRE  = regexp.MustCompile(`control API: (http://\S+)`)
	httpRE = regexp.MustCompile(`apps:\s+http://NAME\.\S+?:(\d+)/`)
)

// endpoints are where a started server listens, and its admin token.
type endpoints struct {
	api, http, token string
	pid              int // the server's
}

// start runs frost server with sandboxes on loopback ports and a fresh
// data directory.
func start(bin, runsc, rootfs string, spares int, network string) (*api.Client, endpoints, func(), error) {
	var srv endpoints
	data, err := os.MkdirTemp("", "frost-sbbench-")
	if err != nil {
		return nil, srv, nil, err
	}
	cmd := exec.Command(bin, "server", "--data", data, "--http", "127.0.0.1:0", "--api", "127.0.0.1:0", "--log-level", "warn", "--runsc", runsc, "--rootfs", rootfs, "--sandbox-spares", strconv.Itoa(spares))
	if network != "" {
		cmd.Args = append(cmd.Args, "--sandbox-network", network)
	}
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, srv, nil, err
	}
	srv.pid = cmd.Process.Pid
	stop := func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		os.RemoveAll(data)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := httpRE.FindStringSubmatch(sc.Text()); m != nil {
			srv.http = "127.0.0.1:" + m[1]
		}
		if m := apiRE.FindStringSubmatch(sc.Text()); m != nil {
			go io.Copy(io.Discard, out)
			tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
			if err != nil {
				stop()
				return nil, srv, nil, err
			}
			srv.api, srv.token = m[1], strings.TrimSpace(string(tok))
			return api.NewClient(srv.api, srv.token), srv, stop, nil
		}
	}
	stop()
	return nil, srv, nil, fmt.Errorf("frost server exited before it was ready")
}
