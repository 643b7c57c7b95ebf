package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/tree"
)

// sandbox runs `frost sandbox SUBVERB`.
func (r *runner) sandbox(ctx context.Context, args []string) int {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "create":
		return r.sandboxCreate(ctx, args[1:])
	case "exec":
		return r.sandboxExec(ctx, args[1:])
	case "ls", "list":
		return r.sandboxList(ctx, args[1:])
	case "show":
		return r.sandboxShow(ctx, args[1:])
	case "kill":
		return r.sandboxKill(ctx, args[1:])
	case "pause":
		return r.sandboxPause(ctx, args[1:])
	case "resume":
		return r.sandboxResume(ctx, args[1:])
	case "timeout":
		return r.sandboxTimeout(ctx, args[1:])
	case "network":
		return r.sandboxNetwork(ctx, args[1:])
	case "cp":
		return r.sandboxCopy(ctx, args[1:])
	case "ps":
		return r.sandboxPs(ctx, args[1:])
	case "metrics", "stats":
		return r.sandboxMetrics(ctx, args[1:])
	case "fork":
		return r.sandboxFork(ctx, args[1:])
	case "snapshot":
		return r.sandboxSnapshot(ctx, args[1:])
	case "attach":
		return r.sandboxAttach(ctx, args[1:])
	case "signal":
		return r.sandboxSignal(ctx, args[1:])
	case "stdin":
		return r.sandboxStdin(ctx, args[1:])
	case "resize":
		return r.sandboxResize(ctx, args[1:])
	case "files":
		return r.sandboxFiles(ctx, args[1:])
	case "help", "-h", "-help", "--help":
		r.sandboxUsage(r.stdout)
		return exitOK
	case "":
		fmt.Fprintln(r.stderr, "frost sandbox: missing sub-command")
	default:
		fmt.Fprintf(r.stderr, "frost sandbox: unknown sub-command %q\n", sub)
	}
	r.sandboxUsage(r.stderr)
	return exitUsage
}

func (r *runner) sandboxUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  frost sandbox create [flags]            start a sandbox and print its ID
  frost sandbox exec ID [flags] CMD...    run a command in it; exit with its exit code
                                          (--background: print its pid and leave it running;
                                          -t: on a terminal, as exec -t ID bash)
  frost sandbox ps ID                     list the commands running in it
  frost sandbox metrics ID [--since D]    CPU and memory it used, every 5 s (the last hour)
  frost sandbox attach ID PID             follow a running command's output; exit with its code
  frost sandbox signal ID PID [SIGNAL]    signal a running command (default TERM)
  frost sandbox stdin ID PID [--close]    send stdin to a running command's input
  frost sandbox resize ID PID COLSxROWS   resize the terminal of a command run with --tty
  frost sandbox ls                        list sandboxes
  frost sandbox show ID                   show a sandbox: limits, timeout, port URL, token
  frost sandbox pause ID                  checkpoint a sandbox to storage and stop it
  frost sandbox fork ID [-n N]            start N new sandboxes where it is now; print their IDs
  frost sandbox snapshot ID NAME          make template NAME of it as it is now (files, memory, processes)
  frost sandbox resume ID                 bring a paused sandbox back
  frost sandbox timeout ID DURATION       make a sandbox expire DURATION from now
  frost sandbox network ID [--offline] [--allow-out CIDR]... [--deny-out CIDR]...
                                          replace what it may connect to
  frost sandbox kill ID...                stop and delete sandboxes, with their files
  frost sandbox cp LOCAL ID:/PATH         copy a file into a sandbox (LOCAL - is stdin)
  frost sandbox cp ID:/PATH LOCAL         copy a file out of a sandbox (LOCAL - is stdout)
  frost sandbox files ls ID [DIR]         list a directory (default /root)
  frost sandbox files mkdir ID DIR        make a directory and its parents
  frost sandbox files rm ID PATH...       remove files or directory trees
  frost sandbox files watch ID DIR        print changes under a directory until Ctrl-C

An agent sandbox is a Linux machine of its own (gVisor) for running code
you do not trust, such as an AI agent's. A running sandbox is paused (or,
with --on-timeout kill, killed) when its timeout passes; exec, cp and files
resume a paused one. Paths in a sandbox are absolute.
Run `+"`frost sandbox SUBVERB -h`"+` for flags.
`)
}

// sandboxCreate runs `frost sandbox create`.
func (r *runner) sandboxCreate(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox create", "[--template NAME] [--timeout DURATION] [--memory SIZE] [flags]", `
Start an agent sandbox and print its ID, alone on a line, so that
ID=$(frost sandbox create) works. Limits left out take the server's defaults.
When its timeout passes, a running sandbox is paused (checkpointed to
storage, to come back on resume, exec, cp or files) or, with --on-timeout
kill, killed.

On a server that gives sandboxes a network (--sandbox-network), a sandbox
reaches the internet unless --offline cuts it off; --allow-out and
--deny-out let through or drop addresses and ranges (allow wins).`)
	var (
		template  string
		timeout   time.Duration
		onTimeout string
		memory    sizeFlag
		cpus      float64
		pids      int
		env       = envFlag{}
		meta      = envFlag{}
	)
	c.fs.StringVar(&template, "template", "", "start from the template `NAME`: yours, else the admin's; TENANT/NAME names a tenant's (default: base)")
	c.fs.DurationVar(&timeout, "timeout", 0, "how long it may run before --on-timeout applies, a `DURATION` such as 30m (default: the server's, 5m)")
	c.fs.StringVar(&onTimeout, "on-timeout", "", "what its timeout does, an `ACTION`: pause (the default) or kill")
	c.fs.Var(&memory, "memory", "memory limit, a `SIZE` such as 512MiB")
	c.fs.Float64Var(&cpus, "cpus", 0, "CPU limit in cores, `N` such as 1.5")
	c.fs.IntVar(&pids, "pids", 0, "at most `N` processes and threads")
	c.fs.Var(env, "env", "set environment variable `K=V` for every process (repeatable)")
	c.fs.Var(meta, "meta", "attach metadata `K=V`, returned as given (repeatable)")
	network := networkFlags(c)
	asJSON := c.fs.Bool("json", false, "print the JSON object the control API returns instead of the ID")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	n, err := network()
	if err != nil {
		return c.usageError("%v", err)
	}
	switch {
	case timeout < 0:
		return c.usageError("--timeout %v is negative", timeout)
	case cpus < 0:
		return c.usageError("--cpus %v is negative", cpus)
	case pids < 0:
		return c.usageError("--pids %d is negative", pids)
	}
	switch onTimeout {
	case "", "pause", "kill":
	default:
		return c.usageError("--on-timeout %q: want pause or kill", onTimeout)
	}
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	req := api.SandboxCreateRequest{
		Template:    template,
		Timeout:     api.Duration(timeout),
		OnTimeout:   onTimeout,
		MemoryBytes: int64(memory),
		CPUs:        cpus,
		Pids:        pids,
	}
	if len(env) > 0 {
		req.Env = env
	}
	if len(meta) > 0 {
		req.Metadata = meta
	}
	req.Network = n
	s, err := cl.CreateSandbox(ctx, req)
	if err != nil {
		return c.failSandbox(err, "")
	}
	if *asJSON {
		return c.printJSON(s)
	}
	fmt.Fprintln(r.stdout, s.ID)
	return exitOK
}

// sandboxExec runs `frost sandbox exec ID CMD...`.
func (r *runner) sandboxExec(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox exec", "ID [--cwd DIR] [--env K=V]... [--timeout DURATION] [-t|--tty] [--background [--open-stdin]] [--tag T] [--] CMD...", `
Run CMD in sandbox ID, resuming it if it is paused. Its output streams to
this terminal's stdout and stderr as it comes, and frost exits with its exit
code (1, or 2 for a usage error, with a message on stderr, when it could
not run; 124, as for timeout(1), when --timeout killed it and it has none).
CMD is not run by a shell: write bash -lc '...' for one.

Flags go between ID and CMD: from CMD's first word on, every argument is
the command's, flags too (frost sandbox exec ID ls -la). "--" may mark
where CMD begins.

When stdin is not a terminal (a pipe or a file), it is sent as the command's
input: echo hi | frost sandbox exec ID cat. --no-stdin leaves stdin unread,
for scripts that read their own stdin in a loop.

With -t (--tty), CMD runs on a terminal in the sandbox, the size of this
one (80x24 when stdout is not a terminal): frost sandbox exec -t ID bash
is an interactive shell. This terminal is put in raw mode meanwhile, so
that every key (Ctrl-C, Ctrl-D included) goes to CMD, and a resize of this
window resizes CMD's terminal. Its output comes as a terminal's (to
stdout: \r\n line ends, the input echoed); $TERM goes with it.

With --background, frost prints the command's pid and leaves it running:
frost sandbox ps, attach, signal and stdin reach it later, across pauses
(--open-stdin keeps its input open for frost sandbox stdin).`)
	var (
		cwd        string
		env        = envFlag{}
		timeout    time.Duration
		noStdin    bool
		background bool
		openStdin  bool
		tag        string
		tty        bool
	)
	c.fs.BoolVar(&tty, "tty", false, "run CMD on a terminal (interactive programs: bash, python, vim)")
	c.fs.BoolVar(&tty, "t", false, "short for --tty")
	c.fs.BoolVar(&background, "background", false, "print the command's pid and leave it running")
	c.fs.BoolVar(&openStdin, "open-stdin", false, "with --background: keep the command's input open")
	c.fs.StringVar(&tag, "tag", "", "name the command `T` in frost sandbox ps")
	c.fs.StringVar(&cwd, "cwd", "", "run in the directory `DIR` (default /root)")
	c.fs.Var(env, "env", "add environment variable `K=V` for this command (repeatable)")
	c.fs.DurationVar(&timeout, "timeout", 0, "kill the command after this `DURATION` (default: only the sandbox's own timeout)")
	c.fs.BoolVar(&noStdin, "no-stdin", false, "do not send stdin, even when it is not a terminal")
	head, cmd := splitCommand(c.fs, args)
	pos, code, ok := c.parse(head, 1, 1)
	if !ok {
		return code
	}
	id := pos[0]
	switch {
	case len(cmd) == 0:
		return c.usageError("missing the command to run, such as: frost sandbox exec %s -- ls -la /", id)
	case cwd != "" && !path.IsAbs(cwd):
		return c.usageError("--cwd %q must be an absolute path, such as /root/%s", cwd, cwd)
	case timeout < 0:
		return c.usageError("--timeout %v is negative", timeout)
	case background && timeout != 0:
		return c.usageError("--background takes no --timeout: stop the command with frost sandbox signal")
	case openStdin && !background:
		return c.usageError("--open-stdin goes with --background")
	}
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	req := api.ExecRequest{Cmd: cmd, Cwd: cwd, Timeout: api.Duration(timeout), Tag: tag}
	if len(env) > 0 {
		req.Env = env
	}
	if tty {
		size := r.terminalSize()
		req.TTY = &size
		// As ssh does: the program draws for this terminal's kind.
		if term := r.getenv("TERM"); term != "" && env["TERM"] == "" {
			if req.Env == nil {
				req.Env = map[string]string{}
			}
			req.Env["TERM"] = term
		}
	}
	if background {
		req.Stdin = openStdin
		pid, err := cl.ExecBackground(ctx, id, req)
		if err != nil {
			return c.failSandbox(err, id)
		}
		fmt.Fprintln(r.stdout, pid)
		return exitOK
	}
	stdio := api.Stdio{Out: r.stdout, Err: r.stderr}
	if tty {
		var err error
		var done func()
		if stdio, done, err = r.localTerminal(ctx, cl, id, noStdin); err != nil {
			return c.failMsg(err.Error())
		}
		defer done()
	} else if !noStdin {
		stdio.In = r.execStdin()
	}
	exit, err := cl.ExecStdio(ctx, id, req, stdio)
	switch {
	case errors.Is(err, api.ErrExecTimeout):
		c.failMsg(err.Error())
		if exit <= 0 || exit > 255 {
			return 124 // as timeout(1) does
		}
		return exit
	case err != nil:
		return c.failSandbox(err, id)
	case exit < 0 || exit > 255:
		return c.failMsg(fmt.Sprintf("the command ended with exit code %d, which a process cannot return", exit))
	}
	return exit
}

// sandboxPs runs `frost sandbox ps ID`.
func (r *runner) sandboxPs(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox ps", "ID", "List the commands running in sandbox ID (started by an exec, Frost's or E2B's), resuming it if it is paused.")
	asJSON := c.fs.Bool("json", false, "print the JSON the control API returns")
	id, cl, code, ok := c.sandboxClient(args)
	if !ok {
		return code
	}
	list, err := cl.Processes(ctx, id)
	if err != nil {
		return c.failSandbox(err, id)
	}
	if *asJSON {
		return c.printJSON(list)
	}
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PID\tTAG\tSTDIN\tTTY\tCOMMAND")
	for _, p := range list {
		in, tty := "closed", "-"
		if p.Stdin {
			in = "open"
		}
		if p.TTY != nil {
			tty = p.TTY.String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", p.Pid, cmp.Or(p.Tag, "-"), in, tty, strings.Join(p.Cmd, " "))
	}
	tw.Flush()
	return exitOK
}

// sandboxMetrics runs `frost sandbox metrics`.
func (r *runner) sandboxMetrics(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox metrics", "ID [--since DURATION] [-f]", `
Print what sandbox ID used while it ran: its node samples the CPU and
memory of every running sandbox every 5 s and keeps the last hour; the
last line is now, if it runs. CPU is the share of the CPUs it may use
since the line before; memory counts its processes, its files (a
sandbox's writable layer is memory) and the runtime's own share. With
-f the samples keep coming as they are taken, until Ctrl-C (none while
it is paused).`)
	since := c.fs.Duration("since", 0, "only the samples of the last DURATION (0: all)")
	asJSON := c.fs.Bool("json", false, "print the JSON the control API returns (with -f: one sample a line)")
	follow := c.fs.Bool("f", false, "follow: print samples as they are taken, until interrupted")
	every := c.fs.Duration("every", time.Second, "with -f, how often to ask for new samples")
	id, cl, code, ok := c.sandboxClient(args)
	if !ok {
		return code
	}
	if *since < 0 {
		return c.usageError("--since %v: want a positive duration", *since)
	}
	if *every <= 0 {
		return c.usageError("--every %v: want a positive duration", *every)
	}
	var from time.Time
	if *since > 0 {
		from = time.Now().Add(-*since)
	}
	list, err := cl.SandboxMetrics(ctx, id, from, time.Time{})
	if err != nil {
		return c.failSandbox(err, id)
	}
	if *asJSON && !*follow {
		return c.printJSON(list)
	}
	show := func(m api.SandboxMetric) {
		if *asJSON {
			json.NewEncoder(r.stdout).Encode(m)
			return
		}
		fmt.Fprintf(r.stdout, "%8s  %6.1f  %4g  %9s  %9s  %9s  %9s  %9s\n", m.Time.Local().Format("15:04:05"), m.CPUUsedPct, m.CPUCount,
			humanSize(m.MemUsed), humanSize(m.MemCache), humanSize(m.MemTotal), humanSize(m.NetIn), humanSize(m.NetOut))
	}
	if !*asJSON {
		fmt.Fprintf(r.stdout, "%8s  %6s  %4s  %9s  %9s  %9s  %9s  %9s\n", "TIME", "CPU %", "CPUS", "MEMORY", "CACHE", "OF", "NET IN", "NET OUT")
	}
	var last time.Time
	for _, m := range list {
		show(m)
		last = m.Time
	}
	for *follow {
		select {
		case <-ctx.Done():
			return exitOK
		case <-time.After(*every):
		}
		if !last.IsZero() {
			from = last.Add(time.Nanosecond)
		}
		list, err := cl.SandboxMetrics(ctx, id, from, time.Time{})
		if ctx.Err() != nil {
			return exitOK
		} else if err != nil {
			return c.failSandbox(err, id)
		}
		for _, m := range list {
			if m.Time.After(last) {
				show(m)
				last = m.Time
			}
		}
	}
	return exitOK
}

// processArgs parses ID PID and the rest, at least min and at most max
// more.
func (c *command) processArgs(args []string, min, max int) (id string, pid int, rest []string, cl *api.Client, code int, ok bool) {
	pos, code, ok := c.parse(args, 2+min, 2+max)
	if !ok {
		return "", 0, nil, nil, code, false
	}
	pid, err := strconv.Atoi(pos[1])
	if err != nil || pid <= 0 {
		return "", 0, nil, nil, c.usageError("PID %q is not a process id: frost sandbox ps %s lists them", pos[1], pos[0]), false
	}
	cl, err = c.client()
	if err != nil {
		return "", 0, nil, nil, c.failMsg(err.Error()), false
	}
	return pos[0], pid, pos[2:], cl, exitOK, true
}

// sandboxAttach runs `frost sandbox attach ID PID`.
func (r *runner) sandboxAttach(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox attach", "ID PID", `
Follow a command running in sandbox ID: its output from now on streams to
this terminal, and frost exits with its exit code when it ends. Ctrl-C
leaves it running.`)
	id, pid, _, cl, code, ok := c.processArgs(args, 0, 0)
	if !ok {
		return code
	}
	exit, err := cl.Attach(ctx, id, pid, r.stdout, r.stderr)
	switch {
	case err != nil:
		return c.failProcess(err, id)
	case exit < 0 || exit > 255:
		return c.failMsg(fmt.Sprintf("the command ended with exit code %d, which a process cannot return", exit))
	}
	return exit
}

// sandboxSignal runs `frost sandbox signal ID PID [SIGNAL]`.
func (r *runner) sandboxSignal(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox signal", "ID PID [SIGNAL]", "Send SIGNAL (a name such as TERM, KILL, INT, or a number; default TERM) to a command running in sandbox ID and to all it started.")
	id, pid, rest, cl, code, ok := c.processArgs(args, 0, 1)
	if !ok {
		return code
	}
	sig := "TERM"
	if len(rest) == 1 {
		sig = rest[0]
	}
	if err := cl.Signal(ctx, id, pid, sig); err != nil {
		return c.failProcess(err, id)
	}
	return exitOK
}

// sandboxResize runs `frost sandbox resize ID PID COLSxROWS`.
func (r *runner) sandboxResize(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox resize", "ID PID COLSxROWS", "Resize the terminal of a command running in sandbox ID on one (started with exec --tty), such as 120x40; the command is told (SIGWINCH).")
	id, pid, rest, cl, code, ok := c.processArgs(args, 1, 1)
	if !ok {
		return code
	}
	size, err := api.ParseTTY(rest[0])
	if err != nil {
		return c.usageError("%v", err)
	}
	if err := cl.Resize(ctx, id, pid, size); err != nil {
		return c.failProcess(err, id)
	}
	return exitOK
}

// sandboxStdin runs `frost sandbox stdin ID PID [--close]`.
func (r *runner) sandboxStdin(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox stdin", "ID PID [--close]", "Send this terminal's stdin to the input of a command running in sandbox ID (one started with exec --background --open-stdin); --close then closes its input.")
	closeIn := c.fs.Bool("close", false, "close the command's input after sending")
	id, pid, _, cl, code, ok := c.processArgs(args, 0, 0)
	if !ok {
		return code
	}
	if err := cl.Input(ctx, id, pid, r.input(), *closeIn); err != nil {
		return c.failProcess(err, id)
	}
	return exitOK
}

// splitCommand splits exec's arguments where the command begins: after
// "--", or at the first positional argument after the first (the ID).
func splitCommand(fs *flag.FlagSet, args []string) (head, cmd []string) {
	positionals := 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return args[:i], args[i+1:]
		}
		if len(a) < 2 || a[0] != '-' {
			if positionals++; positionals == 2 {
				return args[:i], args[i:]
			}
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // parse reports it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		i++ // the flag's value
	}
	return args, nil
}

// input is the runner's stdin: r.stdin, or os.Stdin.
func (r *runner) input() io.Reader {
	if r.stdin != nil {
		return r.stdin
	}
	return os.Stdin
}

// execStdin is the input exec sends: the runner's stdin unless it is a
// terminal (nil then).
func (r *runner) execStdin() io.Reader {
	in := r.input()
	if f, ok := in.(*os.File); ok {
		fi, err := f.Stat()
		if err != nil || fi.Mode()&os.ModeCharDevice != 0 {
			return nil
		}
	}
	return in
}

// sandboxList runs `frost sandbox ls`.
func (r *runner) sandboxList(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox ls", "[--json]", "List every sandbox, newest first, with its template, state, limits, when it expires and when it was created. A paused sandbox does not expire.")
	asJSON := c.fs.Bool("json", false, "print the JSON array the control API returns")
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return code
	}
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	list, err := cl.Sandboxes(ctx)
	if err != nil {
		return c.failSandbox(err, "")
	}
	if list == nil {
		list = []api.Sandbox{}
	}
	sort.Slice(list, func(i, j int) bool {
		if !list[i].CreatedAt.Equal(list[j].CreatedAt) {
			return list[i].CreatedAt.After(list[j].CreatedAt)
		}
		return list[i].ID < list[j].ID
	})
	if *asJSON {
		return c.printJSON(list)
	}
	if len(list) == 0 {
		fmt.Fprintln(r.stdout, "No sandboxes. Start one with `frost sandbox create`.")
		return exitOK
	}
	now := r.now()
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTEMPLATE\tSTATE\tMEMORY\tCPUS\tEXPIRES\tCREATED")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, dash(s.Template), dash(s.State),
			sizeOrDash(s.Limits.MemoryBytes), cpusOrDash(s.Limits.CPUs), expires(now, s), ago(now, s.CreatedAt))
	}
	tw.Flush()
	return exitOK
}

// sandboxShow runs `frost sandbox show ID`.
func (r *runner) sandboxShow(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox show", "ID [--json]", `
Show sandbox ID: its state, limits, timeout, environment keys (never values),
metadata, and where its ports answer: port P at the port URL with {port}
replaced by P, to requests that carry the token in the header
X-Frost-Sandbox-Token or the query parameter frost_token.`)
	asJSON := c.fs.Bool("json", false, "print the JSON object the control API returns")
	id, cl, code, ok := c.sandboxClient(args)
	if !ok {
		return code
	}
	s, err := cl.Sandbox(ctx, id)
	if err != nil {
		return c.failSandbox(err, id)
	}
	if *asJSON {
		return c.printJSON(s)
	}
	r.printSandbox(r.stdout, s)
	return exitOK
}

func (r *runner) printSandbox(w io.Writer, s api.Sandbox) {
	now := r.now()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\n", s.ID)
	state := dash(s.State)
	switch {
	case s.State == api.SandboxRunning:
		state += ", expires " + expires(now, s)
	case s.State == api.SandboxPaused:
		state += " (resume it with `frost sandbox resume " + s.ID + "`, or just use it)"
	}
	fmt.Fprintf(tw, "  state\t%s\n", state)
	fmt.Fprintf(tw, "  template\t%s\n", dash(s.Template))
	if s.Node != "" {
		fmt.Fprintf(tw, "  node\t%s\n", s.Node)
	}
	fmt.Fprintf(tw, "  limits\t%s\n", formatSandboxLimits(s.Limits))
	fmt.Fprintf(tw, "  timeout\t%s, then %s\n", time.Duration(s.Timeout), dash(s.OnTimeout))
	fmt.Fprintf(tw, "  network\t%s\n", formatNetwork(s.Network))
	env := "none"
	if len(s.EnvKeys) > 0 {
		keys := append([]string(nil), s.EnvKeys...)
		sort.Strings(keys)
		env = strings.Join(keys, ", ")
	}
	fmt.Fprintf(tw, "  env\t%s\n", env)
	if len(s.Metadata) > 0 {
		var kv []string
		for _, k := range keysOf(s.Metadata) {
			kv = append(kv, k+"="+s.Metadata[k])
		}
		fmt.Fprintf(tw, "  metadata\t%s\n", strings.Join(kv, ", "))
	}
	if s.Boot != "" {
		fmt.Fprintf(tw, "  boot\t%s\n", s.Boot)
	}
	fmt.Fprintf(tw, "  pauses\t%d\n", s.Pauses)
	if sn := s.Snapshot; sn != nil {
		where := ""
		if sn.Shared {
			where = ", in shared storage"
		}
		fmt.Fprintf(tw, "  snapshot\t%s, taken %s%s\n", humanSize(sn.Size), ago(now, sn.Created), where)
	}
	fmt.Fprintf(tw, "  port URL\t%s\n", dash(s.PortURL))
	if s.Token != "" {
		fmt.Fprintf(tw, "  token\t%s\n", s.Token)
	}
	fmt.Fprintf(tw, "  created\t%s\n", ago(now, s.CreatedAt))
	tw.Flush()
}

// sandboxKill runs `frost sandbox kill ID...`.
func (r *runner) sandboxKill(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox kill", "ID...", "Stop sandboxes and delete them with their files and checkpoints. There is no undo.")
	ids, code, ok := c.parse(args, 1, -1)
	if !ok {
		return code
	}
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	code = exitOK
	for _, id := range ids {
		if err := cl.KillSandbox(ctx, id); err != nil {
			code = c.failSandbox(err, id)
			if errors.Is(err, context.Canceled) {
				break
			}
			continue
		}
		fmt.Fprintf(r.stdout, "Killed %s.\n", id)
	}
	return code
}

// sandboxPause runs `frost sandbox pause ID`.
func (r *runner) sandboxPause(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox pause", "ID", "Checkpoint sandbox ID to storage and stop it: its memory, processes and files come back on resume (or on the next exec, cp or files). A paused sandbox does not expire.")
	id, cl, code, ok := c.sandboxClient(args)
	if !ok {
		return code
	}
	s, err := cl.PauseSandbox(ctx, id)
	if err != nil {
		return c.failSandbox(err, id)
	}
	snap := ""
	if s.Snapshot != nil {
		snap = fmt.Sprintf(" (checkpoint %s)", humanSize(s.Snapshot.Size))
	}
	fmt.Fprintf(r.stdout, "Paused %s%s.\n", s.ID, snap)
	return exitOK
}

// sandboxFork runs `frost sandbox fork ID`.
func (r *runner) sandboxFork(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox fork", "ID [-n N] [--timeout DURATION]", `
Start N new sandboxes where sandbox ID is now: its files, its memory and
its running processes, with its limits, environment and metadata. A
running sandbox pauses for the moment its checkpoint takes and runs on;
a paused one stays paused. Prints the new IDs, one a line, so that
FORKS=$(frost sandbox fork $ID -n 3) works.`)
	n := c.fs.Int("n", 1, "how many (1-16)")
	timeout := c.fs.Duration("timeout", 0, "the forks' timeout (0: the sandbox's)")
	asJSON := c.fs.Bool("json", false, "print the JSON the control API returns")
	id, cl, code, ok := c.sandboxClient(args)
	if !ok {
		return code
	}
	forks, err := cl.ForkSandbox(ctx, id, *n, *timeout)
	if err != nil {
		return c.failSandbox(err, id)
	}
	if *asJSON {
		return c.printJSON(forks)
	}
	for _, f := range forks {
		fmt.Fprintln(r.stdout, f.ID)
	}
	return exitOK
}

// sandboxSnapshot runs `frost sandbox snapshot ID NAME`.
func (r *runner) sandboxSnapshot(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox snapshot", "ID NAME", `
Make template NAME of sandbox ID as it is now: its files, its memory and
its running processes. `+"`frost sandbox create --template NAME`"+` then starts
there. A running sandbox pauses for the moment its checkpoint takes and
runs on. Templates are the admin's: the command needs the admin token.`)
	pos, cl, code, ok := c.clientArgs(args, 2, 2)
	if !ok {
		return code
	}
	start := time.Now()
	t, err := cl.SnapshotSandbox(ctx, pos[0], pos[1])
	if err != nil {
		return c.failSandbox(err, pos[0])
	}
	fmt.Fprintf(r.stdout, "Template %s from %s in %s (checkpoint %s).\n", t.Name, pos[0], time.Since(start).Round(time.Millisecond), checkpointSize(t))
	return exitOK
}

// sandboxResume runs `frost sandbox resume ID`.
func (r *runner) sandboxResume(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox resume", "ID", "Bring paused sandbox ID back from its checkpoint; its timeout starts again. Resuming a running sandbox does nothing.")
	id, cl, code, ok := c.sandboxClient(args)
	if !ok {
		return code
	}
	s, err := cl.ResumeSandbox(ctx, id)
	if err != nil {
		return c.failSandbox(err, id)
	}
	fmt.Fprintf(r.stdout, "Resumed %s; it expires %s, then %s.\n", s.ID, expires(r.now(), s), dash(s.OnTimeout))
	return exitOK
}

// sandboxTimeout runs `frost sandbox timeout ID DURATION`.
func (r *runner) sandboxTimeout(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox timeout", "ID DURATION", "Set sandbox ID's timeout to DURATION (such as 30m or 2h), counted from now: it expires DURATION from now, and DURATION after every resume.")
	pos, code, ok := c.parse(args, 2, 2)
	if !ok {
		return code
	}
	id := pos[0]
	d, err := time.ParseDuration(pos[1])
	if err != nil {
		return c.usageError("DURATION %q: write a number with a unit, such as 90s, 30m or 2h", pos[1])
	}
	if d <= 0 {
		return c.usageError("DURATION %v must be positive", d)
	}
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	s, err := cl.SetSandboxTimeout(ctx, id, d)
	if err != nil {
		return c.failSandbox(err, id)
	}
	fmt.Fprintf(r.stdout, "%s now expires %s, then %s.\n", s.ID, expires(r.now(), s), dash(s.OnTimeout))
	return exitOK
}

// networkFlags adds --offline, --allow-out and --deny-out to c; the
// function it returns reads them (nil: none given, the internet).
func networkFlags(c *command) func() (*api.SandboxNetwork, error) {
	var allowOut, denyOut multiFlag
	offline := c.fs.Bool("offline", false, "no network connections out but to --allow-out's addresses")
	c.fs.Var(&allowOut, "allow-out", "let connections to `CIDR` (an IPv4 range or address) or to a host name's addresses once looked up (pypi.org, *.github.com) through (repeatable)")
	c.fs.Var(&denyOut, "deny-out", "drop connections to `CIDR` (an IPv4 range or address), unless --allow-out lets them (repeatable)")
	return func() (*api.SandboxNetwork, error) {
		for _, s := range allowOut {
			if _, err := api.ParseEgress(s); err != nil {
				if _, ok := api.HostPattern(s); !ok {
					return nil, fmt.Errorf("--allow-out %q: want an IPv4 address, a CIDR range or a host name", s)
				}
			}
		}
		for _, s := range denyOut {
			if _, err := api.ParseEgress(s); err != nil {
				return nil, fmt.Errorf("--deny-out: %v", err)
			}
		}
		if !*offline && len(allowOut) == 0 && len(denyOut) == 0 {
			return nil, nil
		}
		return &api.SandboxNetwork{Offline: *offline, AllowOut: allowOut, DenyOut: denyOut}, nil
	}
}

// formatNetwork says what a sandbox may connect to.
func formatNetwork(n *api.SandboxNetwork) string {
	if n == nil {
		return "the internet"
	}
	var parts []string
	if n.Offline {
		parts = append(parts, "offline")
	} else {
		parts = append(parts, "the internet")
	}
	if len(n.AllowOut) > 0 {
		parts = append(parts, "allow "+strings.Join(n.AllowOut, " "))
	}
	if len(n.DenyOut) > 0 {
		parts = append(parts, "deny "+strings.Join(n.DenyOut, " "))
	}
	return strings.Join(parts, "; ")
}

// sandboxNetwork runs `frost sandbox network ID [flags]`.
func (r *runner) sandboxNetwork(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox network", "ID [--offline] [--allow-out CIDR]... [--deny-out CIDR]...", `
Replace what sandbox ID may connect to, at once if it runs (connections
already open stay), from its resume if it is paused. No flags: the
internet, unlimited. --offline cuts it off but for --allow-out's addresses;
--deny-out drops addresses and ranges (--allow-out wins).`)
	network := networkFlags(c)
	pos, code, ok := c.parse(args, 1, 1)
	if !ok {
		return code
	}
	n, err := network()
	if err != nil {
		return c.usageError("%v", err)
	}
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	s, err := cl.SetSandboxNetwork(ctx, pos[0], n)
	if err != nil {
		return c.failSandbox(err, pos[0])
	}
	fmt.Fprintf(r.stdout, "%s may connect to: %s.\n", s.ID, formatNetwork(s.Network))
	return exitOK
}

// sandboxCopy runs `frost sandbox cp SRC DST`.
func (r *runner) sandboxCopy(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox cp", "LOCAL ID:/PATH | ID:/PATH LOCAL", `
Copy a file or a directory tree into or out of a sandbox. LOCAL - is
stdin (in) or stdout (out). Copying in creates the file's parent
directories and keeps the local file's permission bits (0644 from
stdin); copying out keeps the sandbox file's, less write for group and
others. A PATH ending in / or a LOCAL that is a directory names the
directory to copy into.

A directory is copied as cp -r does: into DEST/NAME when DEST is a
directory already, else as DEST; SRC/. copies what SRC holds into DEST.
Its files, directories and symbolic links travel with their modes and
times, as one tar stream, and land whole or not at all: an existing file
of the same name is replaced, a directory merged, the rest left as it
is. Out to - the tree is written to stdout as a tar stream.`)
	pos, code, ok := c.parse(args, 2, 2)
	if !ok {
		return code
	}
	srcID, srcPath, srcRemote := splitRemote(pos[0])
	dstID, dstPath, dstRemote := splitRemote(pos[1])
	switch {
	case srcRemote && dstRemote:
		return c.usageError("both %s and %s are in sandboxes: copy to a local file first", pos[0], pos[1])
	case !srcRemote && !dstRemote:
		return c.usageError("neither %s nor %s is in a sandbox: write one as ID:/PATH", pos[0], pos[1])
	case srcRemote:
		if code, ok := c.sandboxPathArg(srcPath); !ok {
			return code
		}
	default:
		if code, ok := c.sandboxPathArg(dstPath); !ok {
			return code
		}
	}
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	if srcRemote {
		return c.copyOut(ctx, cl, srcID, srcPath, pos[1])
	}
	return c.copyIn(ctx, cl, pos[0], dstID, dstPath)
}

// copyIn copies local (or stdin) to id:dst.
func (c *command) copyIn(ctx context.Context, cl *api.Client, local, id, dst string) int {
	var (
		in   io.Reader
		mode os.FileMode
	)
	if local == "-" {
		in = c.r.input()
	} else {
		f, err := os.Open(local)
		if err != nil {
			return c.failMsg(fmt.Sprintf("%v: give the path of a local file, or - for stdin", err))
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return c.failMsg(err.Error())
		}
		if fi.IsDir() {
			return c.copyTreeIn(ctx, cl, local, id, dst)
		}
		in, mode = f, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
		if strings.HasSuffix(dst, "/") {
			dst += filepath.Base(local)
		}
	}
	if strings.HasSuffix(dst, "/") {
		return c.usageError("%s:%s is a directory: name the file to write from stdin, such as %s:%sstdin.txt", id, dst, id, dst)
	}
	info, err := cl.WriteFile(ctx, id, dst, mode, in)
	if err != nil {
		return c.failFile(err, id)
	}
	fmt.Fprintf(c.r.stdout, "Copied %s to %s:%s.\n", humanSize(info.Size), id, info.Path)
	return exitOK
}

// copyOut copies id:src to local (or stdout). A local file is written
// whole or not at all: to a temporary file, renamed into place at the end.
func (c *command) copyOut(ctx context.Context, cl *api.Client, id, src, local string) int {
	info, err := cl.StatFile(ctx, id, src)
	if err != nil {
		return c.failFile(err, id)
	}
	if info.Type == "dir" {
		return c.copyTreeOut(ctx, cl, id, src, local)
	}
	if local == "-" {
		if err := cl.ReadFile(ctx, id, src, c.r.stdout); err != nil {
			return c.failFile(err, id)
		}
		return exitOK
	}
	if fi, err := os.Stat(local); err == nil && fi.IsDir() {
		local = filepath.Join(local, path.Base(src))
	}
	perm := os.FileMode(0o644)
	if m, err := strconv.ParseUint(info.Mode, 8, 32); err == nil && info.Mode != "" {
		perm = os.FileMode(m) & 0o755
	}
	tmp, err := os.CreateTemp(filepath.Dir(local), "."+filepath.Base(local)+".frost-*")
	if err != nil {
		return c.failMsg(fmt.Sprintf("%v: can the directory of %s be written?", err, local))
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	err = cl.ReadFile(ctx, id, src, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return c.failFile(err, id)
	}
	if err := os.Chmod(tmp.Name(), perm); err != nil {
		return c.failMsg(err.Error())
	}
	if err := os.Rename(tmp.Name(), local); err != nil {
		return c.failMsg(err.Error())
	}
	fi, err := os.Stat(local)
	if err != nil {
		return c.failMsg(err.Error())
	}
	fmt.Fprintf(c.r.stdout, "Copied %s from %s:%s to %s.\n", humanSize(fi.Size()), id, src, local)
	return exitOK
}

// copyTreeIn copies the local directory tree src into id's dst, as cp -r
// does (dst/NAME when dst is a directory there, src/. for its contents),
// packed as it is sent (tree.Pack) and unpacked whole or not at all.
func (c *command) copyTreeIn(ctx context.Context, cl *api.Client, src, id, dst string) int {
	target := dst
	if !isDotDir(src) {
		if info, err := cl.StatFile(ctx, id, dst); strings.HasSuffix(dst, "/") || err == nil && info.Type == "dir" {
			target = path.Join(dst, filepath.Base(filepath.Clean(src)))
		}
	}
	pr, pw := io.Pipe()
	packed := make(chan error, 1)
	go func() {
		_, err := tree.Pack(src, pw)
		pw.CloseWithError(err) // a failed pack cuts the upload: nothing lands
		packed <- err
	}()
	st, err := cl.WriteTree(ctx, id, target, pr)
	pr.CloseWithError(errors.New("the upload ended"))
	if perr := <-packed; perr != nil {
		return c.failMsg(fmt.Sprintf("%v: nothing was changed in %s:%s", perr, id, target))
	}
	if err != nil {
		return c.failFile(err, id)
	}
	fmt.Fprintf(c.r.stdout, "Copied %s to %s:%s.\n", treeSummary(st.Files, st.Dirs, st.Symlinks, st.Bytes), id, path.Clean(target))
	return exitOK
}

// copyTreeOut copies id's directory src to local, as cp -r does, or to
// stdout as a tar stream (local -): unpacked whole or not at all.
func (c *command) copyTreeOut(ctx context.Context, cl *api.Client, id, src, local string) int {
	rc, err := cl.ReadTree(ctx, id, src)
	if err != nil {
		return c.failFile(err, id)
	}
	defer rc.Close()
	if local == "-" {
		if _, err := io.Copy(c.r.stdout, rc); err != nil {
			return c.failMsg(fmt.Sprintf("%s:%s: %v", id, src, err))
		}
		return exitOK
	}
	target := local
	if fi, err := os.Stat(local); err == nil && fi.IsDir() && !isDotDir(src) {
		target = filepath.Join(local, path.Base(path.Clean(src)))
	}
	st, err := tree.Unpack(target, rc)
	if err != nil {
		return c.failMsg(fmt.Sprintf("%s:%s: %v; nothing was changed in %s", id, src, err, target))
	}
	// The tar's end blocks, which tar's reader leaves: read as the server
	// sends them, rather than cut the transfer short.
	io.Copy(io.Discard, rc)
	fmt.Fprintf(c.r.stdout, "Copied %s from %s:%s to %s.\n", treeSummary(st.Files, st.Dirs, st.Symlinks, st.Bytes), id, src, target)
	return exitOK
}

// isDotDir says whether p names a directory's contents: it ends in /.
func isDotDir(p string) bool {
	return strings.HasSuffix(filepath.ToSlash(p), "/.") || p == "."
}

// treeSummary says what a tree held: "12 files, 3 directories, 1 link (4.2 MiB)".
func treeSummary(files, dirs, links int, bytes int64) string {
	plural := func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %s", n, many)
	}
	s := plural(files, "file", "files") + ", " + plural(dirs, "directory", "directories")
	if links > 0 {
		s += ", " + plural(links, "link", "links")
	}
	return s + " (" + humanSize(bytes) + ")"
}

// splitRemote splits "ID:/PATH" into its parts; ok is false for a local
// path. As for scp, a ':' after a '/' is part of a local path
// (./a:b is local).
func splitRemote(s string) (id, p string, ok bool) {
	id, p, ok = strings.Cut(s, ":")
	if !ok || id == "" || strings.ContainsAny(id, `/\`) {
		return "", "", false
	}
	return id, p, true
}

// sandboxFiles runs `frost sandbox files SUBVERB`.
func (r *runner) sandboxFiles(ctx context.Context, args []string) int {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "ls", "list":
		return r.filesList(ctx, args[1:])
	case "mkdir":
		return r.filesMkdir(ctx, args[1:])
	case "rm":
		return r.filesRemove(ctx, args[1:])
	case "watch":
		return r.filesWatch(ctx, args[1:])
	case "help", "-h", "-help", "--help":
		r.sandboxUsage(r.stdout)
		return exitOK
	case "":
		fmt.Fprintln(r.stderr, "frost sandbox files: missing sub-command: ls, mkdir, rm or watch")
	default:
		fmt.Fprintf(r.stderr, "frost sandbox files: unknown sub-command %q: want ls, mkdir, rm or watch\n", sub)
	}
	r.sandboxUsage(r.stderr)
	return exitUsage
}

// filesList runs `frost sandbox files ls ID [DIR]`.
func (r *runner) filesList(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox files ls", "ID [DIR] [--json]", "List directory DIR (default /root) of sandbox ID: each entry's type, permission bits, size, modification time and name.")
	asJSON := c.fs.Bool("json", false, "print the JSON array the control API returns")
	pos, code, ok := c.parse(args, 1, 2)
	if !ok {
		return code
	}
	id, dir := pos[0], "/root"
	if len(pos) == 2 {
		dir = pos[1]
	}
	if code, ok := c.sandboxPathArg(dir); !ok {
		return code
	}
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	list, err := cl.ListDir(ctx, id, dir)
	if err != nil {
		return c.failFile(err, id)
	}
	if list == nil {
		list = []api.FileInfo{}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	if *asJSON {
		return c.printJSON(list)
	}
	if len(list) == 0 {
		fmt.Fprintf(r.stdout, "%s is empty.\n", dir)
		return exitOK
	}
	now := r.now()
	tw := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tMODE\tSIZE\tMODIFIED\tNAME")
	for _, f := range list {
		name := f.Name
		switch f.Type {
		case "dir":
			name += "/"
		case "symlink":
			name += " -> " + f.Target
		}
		size := humanSize(f.Size)
		if f.Type == "dir" {
			size = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", dash(f.Type), dash(f.Mode), size, ago(now, f.ModTime), name)
	}
	tw.Flush()
	return exitOK
}

// filesMkdir runs `frost sandbox files mkdir ID DIR`.
func (r *runner) filesMkdir(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox files mkdir", "ID DIR", "Make directory DIR in sandbox ID, with its parents. An existing directory is not an error.")
	pos, code, ok := c.parse(args, 2, 2)
	if !ok {
		return code
	}
	id, dir := pos[0], pos[1]
	if code, ok := c.sandboxPathArg(dir); !ok {
		return code
	}
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	info, err := cl.Mkdir(ctx, id, dir)
	if err != nil {
		return c.failFile(err, id)
	}
	fmt.Fprintf(r.stdout, "Made %s:%s.\n", id, info.Path)
	return exitOK
}

// filesRemove runs `frost sandbox files rm ID PATH...`.
func (r *runner) filesRemove(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox files rm", "ID PATH...", "Remove files, or directories with everything under them, from sandbox ID. There is no undo.")
	pos, code, ok := c.parse(args, 2, -1)
	if !ok {
		return code
	}
	id, paths := pos[0], pos[1:]
	for _, p := range paths {
		if code, ok := c.sandboxPathArg(p); !ok {
			return code
		}
	}
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	code = exitOK
	for _, p := range paths {
		if err := cl.RemoveFile(ctx, id, p); err != nil {
			code = c.failFile(err, id)
			if errors.Is(err, context.Canceled) {
				break
			}
			continue
		}
		fmt.Fprintf(r.stdout, "Removed %s:%s.\n", id, p)
	}
	return code
}

// filesWatch runs `frost sandbox files watch ID DIR`.
func (r *runner) filesWatch(ctx context.Context, args []string) int {
	c := r.newCommand("sandbox files watch", "ID DIR [--json]", `
Print a line for every file created, written or removed under directory DIR
of sandbox ID, as OP PATH SIZE (SIZE is - for a removal), until Ctrl-C. The
watch polls: changes show within about a second, and a file written twice
in between shows once. It ends when the sandbox is paused or killed.`)
	asJSON := c.fs.Bool("json", false, "print each event as the JSON object the control API sends")
	pos, code, ok := c.parse(args, 2, 2)
	if !ok {
		return code
	}
	id, dir := pos[0], pos[1]
	if code, ok := c.sandboxPathArg(dir); !ok {
		return code
	}
	cl, err := c.client()
	if err != nil {
		return c.failMsg(err.Error())
	}
	err = cl.WatchDir(ctx, id, dir, func(ev api.FileEvent) error {
		if ev.Op == api.FileEventReady {
			fmt.Fprintf(r.stderr, "Watching %s:%s; Ctrl-C stops.\n", id, dir)
			return nil
		}
		if *asJSON {
			return c.writeJSONLine(ev)
		}
		size := "-"
		if ev.Op != "remove" {
			size = strconv.FormatInt(ev.Info.Size, 10)
		}
		_, err := fmt.Fprintf(r.stdout, "%s %s %s\n", ev.Op, ev.Path, size)
		return err
	})
	if err != nil {
		return c.failFile(err, id)
	}
	return exitOK
}

// sandboxClient parses exactly one ID argument and returns it with a
// client; on failure ok is false and code is the exit code.
func (c *command) sandboxClient(args []string) (id string, cl *api.Client, code int, ok bool) {
	pos, cl, code, ok := c.clientArgs(args, 1, 1)
	if !ok {
		return "", nil, code, false
	}
	return pos[0], cl, exitOK, true
}

// clientArgs parses min to max positional arguments and makes the client.
func (c *command) clientArgs(args []string, min, max int) (pos []string, cl *api.Client, code int, ok bool) {
	pos, code, ok = c.parse(args, min, max)
	if !ok {
		return nil, nil, code, false
	}
	cl, err := c.client()
	if err != nil {
		return nil, nil, c.failMsg(err.Error()), false
	}
	return pos, cl, exitOK, true
}

// checkpointSize is a template's checkpoint size for reading, "-" if none.
func checkpointSize(t api.Template) string {
	if t.Snapshot == nil {
		return "-"
	}
	return humanSize(t.Snapshot.Size)
}

// sandboxPathArg checks a path in a sandbox; a relative one is a usage error.
func (c *command) sandboxPathArg(p string) (int, bool) {
	if !strings.HasPrefix(p, "/") {
		return c.usageError("%q is not an absolute path: paths in a sandbox start with /, such as /root/%s", p, strings.TrimPrefix(p, "./")), false
	}
	return 0, true
}

// failSandbox is fail for a call about sandbox id ("" for none): a 404
// says which sandbox is missing.
func (c *command) failSandbox(err error, id string) int {
	var se *api.StatusError
	if errors.As(err, &se) && se.Err.Code != "" {
		switch {
		case se.Status == http.StatusNotFound && id != "":
			return c.failMsg(fmt.Sprintf("no sandbox %q (killed, or timed out with --on-timeout kill); list sandboxes with `frost sandbox ls`", id))
		case se.Status == http.StatusNotImplemented:
			return c.failMsg(se.Error()) // says how to enable sandboxes
		}
	}
	return c.fail(err, "")
}

// failFile is fail for a file call in sandbox id: a 404 may be the
// sandbox's or the file's, and the server's message says which.
func (c *command) failFile(err error, id string) int {
	var se *api.StatusError
	if errors.As(err, &se) && se.Err.Code != "" && se.Status == http.StatusNotFound {
		return c.failMsg(fmt.Sprintf("%s; list sandboxes with `frost sandbox ls` and files with `frost sandbox files ls %s DIR`", se.Error(), id))
	}
	return c.failSandbox(err, "")
}

// failProcess is fail for a call about a command in sandbox id: a 404 may
// be the sandbox's or the command's, and the server's message says which.
func (c *command) failProcess(err error, id string) int {
	var se *api.StatusError
	if errors.As(err, &se) && se.Err.Code != "" && se.Status == http.StatusNotFound {
		return c.failMsg(fmt.Sprintf("%s; list sandboxes with `frost sandbox ls` and their commands with `frost sandbox ps %s`", se.Error(), id))
	}
	return c.failSandbox(err, "")
}

// writeJSONLine prints v as one line of JSON.
func (c *command) writeJSONLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.r.stdout, "%s\n", b)
	return err
}

// expires says when a running sandbox expires, rounded to the nearest
// unit ("in 42s", "in 5m", "in 3h", "in 2d"); "-" for a paused one, which
// does not expire.
func expires(now time.Time, s api.Sandbox) string {
	if s.State != api.SandboxRunning || s.ExpiresAt.IsZero() {
		return "-"
	}
	d := s.ExpiresAt.Sub(now).Round(time.Second)
	switch {
	case d <= 0:
		return "now"
	case d < time.Minute:
		return fmt.Sprintf("in %ds", int(d/time.Second))
	case d < time.Hour-30*time.Second:
		return fmt.Sprintf("in %dm", int(d.Round(time.Minute)/time.Minute))
	case d < 48*time.Hour-30*time.Minute:
		return fmt.Sprintf("in %dh", int(d.Round(time.Hour)/time.Hour))
	}
	return fmt.Sprintf("in %dd", int(d.Round(24*time.Hour)/(24*time.Hour)))
}

func formatSandboxLimits(l api.SandboxLimits) string {
	var parts []string
	if l.MemoryBytes > 0 {
		parts = append(parts, "memory "+humanSize(l.MemoryBytes))
	}
	if l.CPUs > 0 {
		parts = append(parts, "cpus "+cpusOrDash(l.CPUs))
	}
	if l.Pids > 0 {
		parts = append(parts, fmt.Sprintf("pids %d", l.Pids))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func sizeOrDash(n int64) string {
	if n <= 0 {
		return "-"
	}
	return humanSize(n)
}

func cpusOrDash(n float64) string {
	if n <= 0 {
		return "-"
	}
	return strconv.FormatFloat(n, 'f', -1, 64)
}
