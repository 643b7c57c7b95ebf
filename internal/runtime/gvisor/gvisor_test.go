package gvisor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/agent"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/testbox"
	"github.com/frostdev/frost/internal/testtool"
)

// newRuntime returns a runtime on real runsc, or skips saying why runsc
// cannot run here; tweaks change its configuration.
func newRuntime(t testing.TB, tweaks ...func(*Config)) (*Runtime, string) {
	t.Helper()
	env := testbox.Need(t)
	dir := t.TempDir()
	cfg := Config{Runsc: env.Runsc, StateDir: dir, Agent: env.Agent}
	for _, tweak := range tweaks {
		tweak(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testbox.Cleanup(env.Runsc, filepath.Join(dir, "state"))
		r.Close()
	})
	return r, env.RootFS
}

func run(t *testing.T, b runtime.Box, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return execIn(t, b, runtime.Cmd{Args: args, Cwd: "/root"}, stdin)
}

// agentVerb runs `frost agent ARGS` raw in b, as the host runs the
// agent's verbs.
func agentVerb(t *testing.T, b runtime.Box, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return execIn(t, b, runtime.Cmd{Args: append([]string{AgentPath, "agent"}, args...), Raw: true}, stdin)
}

// execIn runs cmd in b with stdin ("": none) and returns its stdout,
// stderr and exit code.
func execIn(t *testing.T, b runtime.Box, cmd runtime.Cmd, stdin string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	cmd.Stdout, cmd.Stderr = &out, &errb
	code, err := b.Exec(ctx, cmd)
	if err != nil {
		t.Fatalf("exec %v: %v", cmd.Args, err)
	}
	return out.String(), errb.String(), code
}

// bootBox boots box id from rootfs with 512 MiB, one CPU and 256 pids,
// killed when the test ends.
func bootBox(t testing.TB, r *Runtime, rootfs, id string) (runtime.Box, runtime.BoxSpec) {
	t.Helper()
	spec := runtime.BoxSpec{ID: id, RootFS: rootfs, Limits: registry.SandboxLimits{MemoryBytes: 512 << 20, CPUs: 1, Pids: 256}}
	b, err := r.Boot(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Kill(context.Background()) })
	return b, spec
}

// checkpointRestore checkpoints b and restores it as a new box, killed
// when the test ends.
func checkpointRestore(t *testing.T, r *Runtime, b runtime.Box, spec runtime.BoxSpec) runtime.Box {
	t.Helper()
	ctx := context.Background()
	img := t.TempDir()
	if err := b.Checkpoint(ctx, img); err != nil {
		t.Fatal(err)
	}
	b2, err := r.Restore(ctx, spec, img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b2.Kill(ctx) })
	return b2
}

func TestBootExecCheckpointRestore(t *testing.T) {
	r, rootfs := newRuntime(t)
	ctx := context.Background()
	spec := runtime.BoxSpec{ID: "t1box", RootFS: rootfs, Limits: registry.SandboxLimits{MemoryBytes: 512 << 20, CPUs: 1, Pids: 256}, Env: map[string]string{"GREETING": "hi"}}
	b, err := r.Boot(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Kill(ctx)
	var outb, errb bytes.Buffer
	code, err := b.Exec(ctx, runtime.Cmd{Args: []string{"bash", "-c", `echo "$GREETING out from $PWD"; echo err >&2; exit 3`}, Cwd: "/tmp", Env: map[string]string{"GREETING": "hi"}, Stdout: &outb, Stderr: &errb})
	if err != nil || outb.String() != "hi out from /tmp\n" || errb.String() != "err\n" || code != 3 {
		t.Fatalf("exec: %q %q %d %v", outb.String(), errb.String(), code, err)
	}
	if out, _, _ := run(t, b, "piped input", "cat"); out != "piped input" {
		t.Fatalf("stdin: %q", out)
	}
	// A file and a background process with state.
	data := strings.Repeat("0123456789abcdef", 4096)
	if _, e, code := run(t, b, data, "/.frost/frost", "agent", "write", "/root/work/data.txt"); code != 0 {
		t.Fatalf("agent write: %d %s", code, e)
	}
	if _, e, code := run(t, b, "", "bash", "-c", "nohup python3 -c 'import os, time\ni=0\nwhile True:\n    i+=1\n    open(\"/tmp/count.new\",\"w\").write(str(i))\n    os.replace(\"/tmp/count.new\", \"/tmp/count\")\n    time.sleep(0.05)' </dev/null >/dev/null 2>&1 &"); code != 0 {
		t.Fatalf("background: %d %s", code, e)
	}
	time.Sleep(300 * time.Millisecond)
	img := t.TempDir()
	start := time.Now()
	if err := b.Checkpoint(ctx, img); err != nil {
		t.Fatal(err)
	}
	t.Logf("checkpoint in %v", time.Since(start))
	entries, _ := os.ReadDir(img)
	if len(entries) == 0 {
		t.Fatal("checkpoint wrote no files")
	}
	b2, err := r.Restore(ctx, spec, img)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Kill(ctx)
	t.Logf("checkpoint+restore in %v", time.Since(start))
	out, _, _ := run(t, b2, "", "/.frost/frost", "agent", "read", "/root/work/data.txt")
	if out != data {
		t.Fatalf("after restore the file has %d bytes, want %d", len(out), len(data))
	}
	c1, _, _ := run(t, b2, "", "cat", "/tmp/count")
	time.Sleep(300 * time.Millisecond)
	c2, _, _ := run(t, b2, "", "cat", "/tmp/count")
	if c1 == "" || c1 == c2 {
		t.Fatalf("the background process is not running after restore: %q then %q", c1, c2)
	}
	// Ports: a server inside, reached through Dial.
	if _, e, code := run(t, b2, "", "bash", "-c", "nohup python3 -m http.server 8000 --directory /root/work >/dev/null 2>&1 &"); code != 0 {
		t.Fatal(e)
	}
	var got string
	for i := 0; i < 50 && !strings.Contains(got, "0123"); i++ {
		time.Sleep(100 * time.Millisecond)
		c, err := b2.Dial(ctx, 8000)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /data.txt HTTP/1.0\r\n\r\n")
		body, _ := io.ReadAll(c)
		c.Close()
		got = string(body)
	}
	if !strings.Contains(got, "200") || !strings.Contains(got, data[:64]) {
		t.Fatalf("port 8000 answered %q", got[:min(len(got), 200)])
	}
}

// TestRestorePatches: the runsc scripts/runsc.sh builds restores as
// Frost wants, which the sentry's debug log shows. It reads and writes a
// checkpoint's pages with twice as many parallel calls as the host has
// cores (gVisor's own 128 took a restore ~70 ms longer on 2 cores): its
// GOMAXPROCS is its base, the host's cores, plus one per reader. It maps
// in the memory file's pages before reading into them, and it decodes
// the checkpoint with the garbage collector off and turns it back on.
func TestRestorePatches(t *testing.T) {
	logs := t.TempDir()
	r, rootfs := newRuntime(t, func(c *Config) { c.Spares, c.DebugLogs = -1, logs })
	ctx := context.Background()
	spec := runtime.BoxSpec{ID: "pages", RootFS: rootfs, Limits: registry.SandboxLimits{MemoryBytes: 512 << 20, Pids: 256}}
	b, err := r.Boot(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, e, code := run(t, b, "", "bash", "-c", "head -c 4M /dev/urandom >/root/pages"); code != 0 {
		t.Fatal(e)
	}
	b2 := checkpointRestore(t, r, b, spec)
	if out, _, _ := run(t, b2, "", "stat", "-c", "%s", "/root/pages"); out != "4194304\n" {
		t.Fatalf("after the restore the file has %q bytes", out)
	}
	var sentry []byte
	files, _ := filepath.Glob(filepath.Join(logs, "*.boot.txt"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		sentry = append(sentry, data...)
	}
	most := 0
	for _, m := range gomaxprocsRE.FindAllSubmatch(sentry, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		most = max(most, n)
	}
	if most == 0 {
		t.Fatalf("no sentry log in %s says what GOMAXPROCS it set", logs)
	}
	const built = " (is runsc built by scripts/runsc.sh?)"
	if cores := goruntime.NumCPU(); most > cores+min(128, 2*cores) {
		t.Fatalf("the sentry raised GOMAXPROCS to %d on %d cores: its pages readers do not fit the host"+built, most, cores)
	}
	populated := 0
	for _, m := range populatedRE.FindAllSubmatch(sentry, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		populated += n
	}
	if populated < 4<<20 {
		t.Fatalf("the sentry populated %d bytes of its memory file before reading the checkpoint's pages, want at least the 4 MiB file's"+built, populated)
	}
	off, on := bytes.Index(sentry, []byte("frost: no garbage collection during the restore")), bytes.Index(sentry, []byte("frost: garbage collection back on after the restore"))
	if off < 0 || on < off {
		t.Fatalf("the sentry's log does not show garbage collection turned off for the restore and back on after it (at %d, %d)"+built, off, on)
	}
}

var (
	gomaxprocsRE = regexp.MustCompile(`Setting GOMAXPROCS to (\d+)`)
	populatedRE  = regexp.MustCompile(`frost: populated (\d+) bytes of the memory file`)
)

// waitSpare waits until a spare for spec's configuration is ready and
// returns the container ID of the one a box would take next.
func waitSpare(t *testing.T, r *Runtime, spec runtime.BoxSpec) string {
	t.Helper()
	ids := waitSpares(t, r, spec, 1)
	return ids[len(ids)-1]
}

// waitSpares waits until n spares for spec's configuration are ready and
// returns their container IDs, the next to take last.
func waitSpares(t *testing.T, r *Runtime, spec runtime.BoxSpec, n int) []string {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		r.spares.mu.Lock()
		var ids []string
		for _, sp := range r.spares.ready[keyOf(spec)] {
			ids = append(ids, sp.id)
		}
		r.spares.mu.Unlock()
		if len(ids) >= n {
			return ids
		}
	}
	t.Fatalf("%d spares did not become ready in a minute", n)
	return nil
}

// wantWeight fails the test unless container id's cgroup has the lowest
// CPU weight (low) or the default; it checks nothing where this host has
// no cgroup cpu controller (the test's own process has none).
func wantWeight(t *testing.T, r *Runtime, id string, low bool, what string) {
	t.Helper()
	if _, err := cpuWeightOf(os.Getpid()); err != nil {
		t.Logf("no CPU weight checks: %v", err)
		return
	}
	w, err := cpuWeightOf(readPid(filepath.Join(r.cfg.StateDir, "bundles", id, "pid")))
	if err != nil {
		t.Fatalf("container %s: %v", id, err)
	}
	want := w.normal
	if low {
		want = w.low
	}
	if v, _ := w.read(); v != want {
		t.Fatalf("%s has CPU weight %s, want %s", what, v, want)
	}
}

// containers lists runsc's containers in the runtime's state directory.
func containers(t *testing.T, r *Runtime) []string {
	t.Helper()
	out, err := exec.Command(r.cfg.Runsc, r.args("list", "--quiet")...).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))
}

// TestSpares: after a checkpoint the runtime creates a spare container for
// the box's configuration; a restore loads the checkpoint into it (state
// intact) and a boot starts it; the box is found by its sandbox ID after a
// restart (Attach) and swept by it; a spare that died is done without; and
// Close removes the spares.
func TestSpares(t *testing.T) {
	r, rootfs := newRuntime(t)
	ctx := context.Background()
	spec := runtime.BoxSpec{ID: "sp1", RootFS: rootfs, Limits: registry.SandboxLimits{MemoryBytes: 512 << 20, CPUs: 1, Pids: 256}}
	b, err := r.Boot(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, e, code := run(t, b, "kept", "/.frost/frost", "agent", "write", "/root/kept.txt"); code != 0 {
		t.Fatal(e)
	}
	if _, e, code := run(t, b, "", "bash", "-c", "nohup python3 -c 'import os, time\ni=0\nwhile True:\n    i+=1\n    open(\"/tmp/count.new\",\"w\").write(str(i))\n    os.replace(\"/tmp/count.new\", \"/tmp/count\")\n    time.sleep(0.05)' </dev/null >/dev/null 2>&1 &"); code != 0 {
		t.Fatal(e)
	}
	time.Sleep(200 * time.Millisecond)
	img := t.TempDir()
	if err := b.Checkpoint(ctx, img); err != nil {
		t.Fatal(err)
	}
	// The configuration in use gets two: a restore right after another
	// finds the second while the first's replacement waits.
	two := waitSpares(t, r, spec, hotSpares)
	if len(two) != hotSpares || two[0] == two[1] {
		t.Fatalf("spares of the configuration in use: %v", two)
	}
	spare := two[1]
	// Spares wait at the lowest CPU weight; the box started in one runs
	// at the default.
	for _, id := range two {
		wantWeight(t, r, id, true, "spare "+id)
	}

	b2, err := r.Restore(ctx, spec, img)
	if err != nil {
		t.Fatal(err)
	}
	if got := b2.(*box).id; got != spare {
		t.Fatalf("restored into container %q, want the spare %q", got, spare)
	}
	wantWeight(t, r, spare, false, "the box restored into a spare")
	if out, _, _ := run(t, b2, "", "cat", "/root/kept.txt"); out != "kept" {
		t.Fatalf("after a restore into a spare the file holds %q", out)
	}
	c1, _, _ := run(t, b2, "", "cat", "/tmp/count")
	time.Sleep(200 * time.Millisecond)
	if c2, _, _ := run(t, b2, "", "cat", "/tmp/count"); c1 == "" || c1 == c2 {
		t.Fatalf("the process is not running after a restore into a spare: %q then %q", c1, c2)
	}

	// A restarted frost finds the box by its sandbox ID.
	r2, err := New(Config{Runsc: r.cfg.Runsc, StateDir: r.cfg.StateDir, Agent: r.cfg.Agent, Spares: -1})
	if err != nil {
		t.Fatal(err)
	}
	attached, ok := r2.Attach(ctx, spec.ID)
	if !ok || attached.(*box).id != spare {
		t.Fatalf("Attach(%s) after a restart: %v", spec.ID, ok)
	}
	if out, _, _ := run(t, attached, "", "cat", "/root/kept.txt"); out != "kept" {
		t.Fatalf("through the attached box: %q", out)
	}

	// A boot takes the next spare (the second, already there) and only
	// starts it.
	next := waitSpare(t, r, spec)
	if next != two[0] {
		t.Fatalf("the next spare is %s, want the second one made, %s", next, two[0])
	}
	boot := spec
	boot.ID = "sp2"
	b3, err := r.Boot(ctx, boot)
	if err != nil {
		t.Fatal(err)
	}
	if got := b3.(*box).id; got != next {
		t.Fatalf("booted in container %q, want the spare %q", got, next)
	}
	wantWeight(t, r, next, false, "the box booted in a spare")
	if out, _, code := run(t, b3, "", "cat", "/root/kept.txt"); code == 0 || out != "" {
		t.Fatalf("a box booted in a spare sees another's file: %q", out)
	}
	b3.Kill(ctx)

	// Sweeping what no sandbox claims removes sp1's box and its name, and
	// keeps the runtime's own spares.
	spares := waitSpares(t, r, spec, hotSpares)
	third := spares[len(spares)-1]
	r.Sweep(func(string) bool { return false })
	if got := containers(t, r); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(spares))) {
		t.Fatalf("after the sweep runsc runs %v, want only the spares %v", got, spares)
	}
	if id := r.runscID(spec.ID); id != spec.ID {
		t.Fatalf("the swept sandbox still names container %s", id)
	}

	// A spare that died behind the runtime's back: the restore does
	// without it.
	r.runsc(ctx, "delete", "--force", third)
	b4, err := r.Restore(ctx, spec, img)
	if err != nil {
		t.Fatal(err)
	}
	if out, _, _ := run(t, b4, "", "cat", "/root/kept.txt"); out != "kept" || b4.(*box).id != spec.ID {
		t.Fatalf("restore without the dead spare: container %s, file %q", b4.(*box).id, out)
	}
	waitSpare(t, r, spec)
	b4.Kill(ctx)
	r.Close()
	if got := containers(t, r); len(got) != 0 {
		t.Fatalf("after Close runsc still runs %v", got)
	}
}

// TestQuota: each configuration wanted recently gets a spare, the one
// wanted last a second when Config.Spares leaves room.
func TestQuota(t *testing.T) {
	a, b, c := spareKey{rootfs: "a"}, spareKey{rootfs: "b"}, spareKey{rootfs: "c"}
	for _, tc := range []struct {
		spares int
		recent []spareKey // as wantSpare keeps it: Spares at most
		want   []int      // quotas of a, b, c
	}{
		{2, []spareKey{b, c}, []int{0, 1, 1}},
		{2, []spareKey{c}, []int{0, 0, 2}},
		{3, []spareKey{b, c}, []int{0, 1, 2}},
		{3, []spareKey{a, b, c}, []int{1, 1, 1}},
		{4, []spareKey{a, b, c}, []int{1, 1, 2}},
		{1, []spareKey{c}, []int{0, 0, 1}},
	} {
		r := &Runtime{cfg: Config{Spares: tc.spares}}
		r.spares.recent = tc.recent
		var got []int
		for _, k := range []spareKey{a, b, c} {
			got = append(got, r.quota(k))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Spares %d: quotas %v, want %v", tc.spares, got, tc.want)
		}
	}
}

// TestSpareWaitsWhileBusy: a spare's creation waits spareDelay, and again
// while a boot, restore or checkpoint runs or ended less than spareSettle
// ago (at most maxSpareWaits times); it is given up when the runtime
// closes.
func TestSpareWaitsWhileBusy(t *testing.T) {
	calls := make(chan struct{}) // a wait begins
	ticks := make(chan time.Time)
	r := &Runtime{after: func(time.Duration) <-chan time.Time { calls <- struct{}{}; return ticks }}
	quiet := func(done chan struct{}) chan bool {
		res := make(chan bool, 1)
		go func() { res <- r.quiet(done) }()
		return res
	}
	waits := func(res chan bool, what string) {
		t.Helper()
		select {
		case <-calls:
		case got := <-res:
			t.Fatalf("%s: quiet returned %v instead of waiting", what, got)
		}
	}

	r.busy.Store(1)
	res := quiet(make(chan struct{}))
	waits(res, "first delay")
	ticks <- time.Time{}
	waits(res, "a restore is running")
	r.busy.Store(0)
	ticks <- time.Time{}
	if !<-res {
		t.Fatal("quiet after the restore ended: false")
	}

	// A checkpoint that ended a moment ago: the user's next step is
	// likely on its way, so it waits once more.
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	r.working()()
	res = quiet(make(chan struct{}))
	waits(res, "first delay after a checkpoint")
	clock = clock.Add(spareSettle / 2)
	ticks <- time.Time{}
	waits(res, "a checkpoint ended spareSettle/2 ago")
	clock = clock.Add(spareSettle)
	ticks <- time.Time{}
	if !<-res {
		t.Fatal("quiet once settled: false")
	}

	r.busy.Store(1)
	res = quiet(make(chan struct{}))
	for i := range maxSpareWaits {
		waits(res, fmt.Sprintf("busy, wait %d", i))
		ticks <- time.Time{}
	}
	if !<-res {
		t.Fatal("quiet after maxSpareWaits: false")
	}

	done := make(chan struct{})
	res = quiet(done)
	close(done)
	<-calls
	if <-res {
		t.Fatal("quiet after the runtime closed: true")
	}
}

// TestExecDetach: a call whose context ends with runtime.ErrDetach as its
// cause returns and leaves its command running; one that ends otherwise
// stops it.
func TestExecDetach(t *testing.T) {
	r, rootfs := newRuntime(t)
	ctx := context.Background()
	b, _ := bootBox(t, r, rootfs, "t1detach")
	counter := func(file string) string {
		return "i=0; while true; do i=$((i+1)); echo $i >" + file + ".new && mv " + file + ".new " + file + "; sleep 0.05; done"
	}
	count := func(file string) string {
		out, _, _ := run(t, b, "", "sh", "-c", "cat "+file+" 2>/dev/null")
		return out
	}
	for _, c := range []struct {
		file  string
		cause error
		runs  bool
	}{{"/tmp/detached", runtime.ErrDetach, true}, {"/tmp/stopped", context.Canceled, false}} {
		cctx, cancel := context.WithCancelCause(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := b.Exec(cctx, runtime.Cmd{Args: []string{"sh", "-c", counter(c.file)}})
			done <- err
		}()
		for i := 0; count(c.file) == ""; i++ {
			if i > 100 {
				t.Fatalf("%s: the command never started", c.file)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel(c.cause)
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("%s: the call ended by %v returned no error", c.file, c.cause)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the call did not return after its context ended (%v)", c.file, c.cause)
		}
		time.Sleep(200 * time.Millisecond) // a stopped command is gone by now
		c1 := count(c.file)
		time.Sleep(300 * time.Millisecond)
		c2 := count(c.file)
		if runs := c1 != c2; runs != c.runs {
			t.Errorf("%s: after the call ended by %v the counter went %q → %q; want running: %v", c.file, c.cause, c1, c2, c.runs)
		}
	}
}

// TestProcessTableAcrossRestore: a command started through Exec reports
// its pid before its output, is detached, and is still in init's table
// after a checkpoint and a restore (as on another node): listed with its
// tag, fed through `agent stdin`, followed through `agent attach` to its
// exit.
func TestProcessTableAcrossRestore(t *testing.T) {
	r, rootfs := newRuntime(t)
	ctx := context.Background()
	b, spec := bootBox(t, r, rootfs, "t1procs")
	cctx, detach := context.WithCancelCause(ctx)
	started := make(chan int, 1)
	var out bytes.Buffer
	done := make(chan error, 1)
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	go func() {
		_, err := b.Exec(cctx, runtime.Cmd{
			Args: []string{"sh", "-c", "echo ready; while read x; do echo got $x; done; echo eof; exit 7"}, Tag: "repl",
			Stdin: stdinR, Stdout: &out, Started: func(pid int) {
				if out.Len() != 0 {
					t.Errorf("output before the pid: %q", out.String())
				}
				started <- pid
			},
		})
		done <- err
	}()
	pid := waitPid(t, started)
	io.WriteString(stdinW, "before\n")
	time.Sleep(300 * time.Millisecond)
	detach(runtime.ErrDetach)
	if err := <-done; err == nil {
		t.Fatal("a detached call returned no error")
	}
	if !strings.Contains(out.String(), "got before") {
		t.Fatalf("output before the detach: %q", out.String())
	}
	b2 := checkpointRestore(t, r, b, spec)
	ps, e, code := agentVerb(t, b2, "", "ps")
	want := fmt.Sprintf(`"pid":%d,"tag":"repl"`, pid)
	if code != 0 || !strings.Contains(ps, want) || !strings.Contains(ps, `"stdin":true`) {
		t.Fatalf("ps after the restore: %d %s %s; want %s with its input open", code, ps, e, want)
	}
	var seen bytes.Buffer
	attached := make(chan int, 1)
	go func() {
		frames := &agent.Output{Stdout: &seen}
		code, err := b2.Exec(ctx, runtime.Cmd{Args: []string{AgentPath, "agent", "attach", strconv.Itoa(pid)}, Raw: true, Stdout: frames})
		x, _, ok := frames.Exit()
		if err != nil || code != 0 || !ok {
			t.Errorf("attach: %d %v, exit seen %v", code, err, ok)
		}
		attached <- x
	}()
	time.Sleep(time.Second) // attached
	if _, e, code := agentVerb(t, b2, "after\n", "stdin", strconv.Itoa(pid), "--close"); code != 0 {
		t.Fatalf("stdin after the restore: %d %s", code, e)
	}
	select {
	case x := <-attached:
		if x != 7 || !strings.Contains(seen.String(), "got after\neof\n") || strings.Contains(seen.String(), "before") {
			t.Fatalf("attached after the restore: exit %d output %q", x, seen.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("attach did not end with the command")
	}
	if ps, _, _ := agentVerb(t, b2, "", "ps"); strings.TrimSpace(ps) != "[]" {
		t.Fatalf("ps after the exit: %s", ps)
	}
	// A command that cannot start: a shell's message and code.
	if _, e, code := run(t, b2, "", "no-such-command"); code != 127 || !strings.Contains(e, "command not found") {
		t.Fatalf("a missing command: %d %q", code, e)
	}
}

// TestTerminalAcrossRestore: a command run with a TTY has a terminal of
// that size in the sandbox (its output a terminal's); after a detach,
// a checkpoint and a restore, ps lists it with its size, and a resize
// reaches it as SIGWINCH, seen by a client attached after the restore.
func TestTerminalAcrossRestore(t *testing.T) {
	r, rootfs := newRuntime(t)
	ctx := context.Background()
	b, spec := bootBox(t, r, rootfs, "t1tty")
	cctx, detach := context.WithCancelCause(ctx)
	started := make(chan int, 1)
	out := &testtool.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		_, err := b.Exec(cctx, runtime.Cmd{
			Args: []string{"bash", "-c", `tty; stty size; trap 'echo winch; stty size' WINCH; echo ready; while :; do sleep 0.1; done`},
			TTY:  &api.TTY{Cols: 100, Rows: 30}, Stdout: out, Started: func(pid int) { started <- pid },
		})
		done <- err
	}()
	pid := waitPid(t, started)
	for i := 0; !strings.Contains(out.String(), "ready\r\n"); i++ {
		if i > 300 {
			t.Fatalf("no output from the terminal: %q", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := out.String(); !strings.HasPrefix(s, "/dev/pts/") || !strings.Contains(s, "\r\n30 100\r\n") {
		t.Fatalf("on its terminal: %q", s)
	}
	detach(runtime.ErrDetach)
	<-done
	b2 := checkpointRestore(t, r, b, spec)
	if ps, e, code := agentVerb(t, b2, "", "ps"); code != 0 || !strings.Contains(ps, fmt.Sprintf(`"pid":%d`, pid)) || !strings.Contains(ps, `"tty":{"cols":100,"rows":30}`) {
		t.Fatalf("ps after the restore: %d %s %s", code, ps, e)
	}
	seen := &testtool.SyncBuffer{}
	attached := make(chan int, 1)
	go func() {
		frames := &agent.Output{Stdout: seen}
		b2.Exec(ctx, runtime.Cmd{Args: []string{AgentPath, "agent", "attach", strconv.Itoa(pid)}, Raw: true, Stdout: frames})
		x, _, _ := frames.Exit()
		attached <- x
	}()
	time.Sleep(time.Second) // attached
	if _, e, code := agentVerb(t, b2, "", "resize", strconv.Itoa(pid), "120x40"); code != 0 {
		t.Fatalf("resize after the restore: %d %s", code, e)
	}
	for i := 0; !strings.Contains(seen.String(), "winch\r\n40 120\r\n"); i++ {
		if i > 100 {
			t.Fatalf("after the resize the command printed %q", seen.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, e, code := agentVerb(t, b2, "", "signal", strconv.Itoa(pid), "KILL"); code != 0 {
		t.Fatalf("signal: %d %s", code, e)
	}
	select {
	case x := <-attached:
		if x != 128+9 {
			t.Fatalf("attached: exit %d", x)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("attach did not end with the command")
	}
}

// waitPid returns the pid an exec's Started sends, failing after 30 s.
func waitPid(t *testing.T, started <-chan int) int {
	t.Helper()
	select {
	case pid := <-started:
		return pid
	case <-time.After(30 * time.Second):
		t.Fatal("no pid")
		return 0
	}
}

// TestDiskFull: a box's files are its memory; past OverlayBytes (half of
// it) a write fails with ENOSPC, and past TmpBytes (a quarter) one in
// /tmp; the box lives on with its files and processes, rather than being
// killed whole by the host's OOM killer when its files reach its memory
// limit. The limits hold across a checkpoint and a restore, and in a box
// started in a spare; a checkpoint from before them restores as it was.
func TestDiskFull(t *testing.T) {
	r, rootfs := newRuntime(t)
	ctx := context.Background()
	spec := runtime.BoxSpec{ID: "diskfull", RootFS: rootfs, Limits: registry.SandboxLimits{MemoryBytes: 256 << 20, CPUs: 1, Pids: 256}}
	b, err := r.Boot(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Kill(ctx) })
	fill := func(b runtime.Box) {
		t.Helper()
		for dir, limit := range map[string]int64{"/root": OverlayBytes(spec.Limits), "/tmp": TmpBytes(spec.Limits)} {
			if _, e, code := run(t, b, "", "sh", "-c", "head -c 300000000 /dev/zero > "+dir+"/fill"); code == 0 || !strings.Contains(e, "No space left on device") {
				t.Fatalf("300 MB into %s of a 256 MiB box: exit %d %q", dir, code, e)
			}
			out, _, code := run(t, b, "", "sh", "-c", "stat -c %s "+dir+"/fill; rm "+dir+"/fill; echo small > "+dir+"/after; cat "+dir+"/after")
			var n int64
			if _, err := fmt.Sscanf(out, "%d\nsmall\n", &n); err != nil || code != 0 || n > limit || n < limit-1<<20 {
				t.Fatalf("after %s filled: exit %d %q (%v), want the file near %d bytes", dir, code, out, err, limit)
			}
		}
	}
	fill(b)
	spare := waitSpare(t, r, spec)
	spec2 := spec
	spec2.ID = "diskfull2"
	b2, err := r.Boot(ctx, spec2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b2.Kill(ctx) })
	if got := b2.(*box).id; got != spare {
		t.Fatalf("booted in container %q, want the spare %q", got, spare)
	}
	fill(b2)
	fill(checkpointRestore(t, r, b, spec))

	// A checkpoint as earlier versions took them: no overlay size, /tmp
	// without one, no size file. It restores (the spec's mounts must
	// match the checkpoint's, the overlay flag need not) with its files,
	// into a box of other limits, and its own checkpoints say the same.
	old := runtime.BoxSpec{ID: "before", RootFS: rootfs, Limits: registry.SandboxLimits{CPUs: 1, Pids: 256}}
	legacy := mounts{agent: r.cfg.Agent}
	dir, err := r.bundle(old, false, legacy)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.runscBox(ctx, old.Limits, "run", "--detach", "--bundle", dir, old.ID); err != nil {
		t.Fatal(err)
	}
	b3 := newBox(r, old.ID, old, legacy)
	t.Cleanup(func() { b3.Kill(ctx) })
	if _, e, code := run(t, b3, "", "sh", "-c", "echo kept > /root/kept; echo tmp > /tmp/kept"); code != 0 {
		t.Fatal(e)
	}
	img := t.TempDir()
	if err := b3.Checkpoint(ctx, img); err != nil {
		t.Fatal(err)
	}
	if m, err := r.mountsOf(img); err != nil || m != legacy {
		t.Fatalf("the checkpoint's mounts: %+v %v", m, err)
	}
	old.Limits = spec.Limits
	b4, err := r.Restore(ctx, old, img)
	if err != nil {
		t.Fatalf("a checkpoint from before: %v", err)
	}
	t.Cleanup(func() { b4.Kill(ctx) })
	if out, _, _ := run(t, b4, "", "sh", "-c", "cat /root/kept /tmp/kept; df -k /tmp | awk 'NR==2 {print ($2 > 1048576)}'"); out != "kept\ntmp\n1\n" {
		t.Fatalf("restored from before: %q", out)
	}
	if m := b4.(*box).mounts; m != legacy {
		t.Fatalf("restored with %+v", m)
	}
	// A template's checkpoint restores into boxes of other memory, with
	// its own sizes (not into the spare made for theirs).
	big := spec
	big.ID, big.Limits.MemoryBytes = "bigger", 1<<30
	img2 := t.TempDir()
	b5, err := r.Boot(ctx, runtime.BoxSpec{ID: "small", RootFS: rootfs, Limits: spec.Limits})
	if err != nil {
		t.Fatal(err)
	}
	if err := b5.Checkpoint(ctx, img2); err != nil {
		t.Fatal(err)
	}
	if m, err := r.mountsOf(img2); err != nil || m != r.mountsFor(spec) {
		t.Fatalf("the checkpoint's mounts: %+v %v, want %+v", m, err, r.mountsFor(spec))
	}
	b6, err := r.Restore(ctx, big, img2)
	if err != nil {
		t.Fatalf("into a box of more memory: %v", err)
	}
	t.Cleanup(func() { b6.Kill(ctx) })
	if out, _, _ := run(t, b6, "", "sh", "-c", "df -k /tmp | awk 'NR==2 {print $2}'"); out != fmt.Sprintf("%d\n", TmpBytes(spec.Limits)>>10) {
		t.Fatalf("its /tmp: %q KiB, want the checkpoint's %d", out, TmpBytes(spec.Limits)>>10)
	}
}

// TestUpgradeKeepsAgent: a checkpoint restores only with the very frost
// binary its init was started from; an upgrade replaces the binary in
// place. Boxes mount a copy kept by content, so a checkpoint made before
// the upgrade restores after it, with its files and its init, while new
// boxes get the new binary.
func TestUpgradeKeepsAgent(t *testing.T) {
	env := testbox.Need(t)
	dir := t.TempDir()
	bin := filepath.Join(t.TempDir(), "frost")
	data, err := os.ReadFile(env.Agent)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Runsc: env.Runsc, StateDir: dir, Agent: bin, Spares: -1}
	t.Cleanup(func() { testbox.Cleanup(env.Runsc, filepath.Join(dir, "state")) })
	r1, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	ctx := context.Background()
	spec := runtime.BoxSpec{ID: "upgraded", RootFS: env.RootFS, Limits: registry.SandboxLimits{MemoryBytes: 256 << 20, CPUs: 1, Pids: 256}}
	b, err := r1.Boot(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, e, code := run(t, b, "", "sh", "-c", "echo kept > /root/kept"); code != 0 {
		t.Fatal(e)
	}
	img := t.TempDir()
	if err := b.Checkpoint(ctx, img); err != nil {
		t.Fatal(err)
	}
	// The upgrade: other content at the same path, the code the old
	// init runs included (zeroed here: no binary would run from it, but
	// the kept copy is what the checkpoint needs).
	upgraded := bytes.Clone(data)
	clear(upgraded[len(upgraded)/10 : len(upgraded)*6/10])
	if err := os.WriteFile(bin, upgraded, 0o755); err != nil {
		t.Fatal(err)
	}
	r2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	b2, err := r2.Restore(ctx, spec, img)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Kill(ctx)
	if out, e, code := run(t, b2, "", "cat", "/root/kept"); code != 0 || out != "kept\n" {
		t.Fatalf("after the upgrade: exit %d %q %q", code, out, e)
	}
	if got, want := r2.mountsFor(spec).agent, b2.(*box).mounts.agent; got == want || got == bin {
		t.Fatalf("a new box would mount %s, the restored one %s: want a copy of the upgrade", got, want)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "agents")); len(entries) != 2 {
		t.Fatalf("agents kept: %d, want 2", len(entries))
	}
}
