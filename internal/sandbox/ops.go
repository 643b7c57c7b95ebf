package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/agent"
	"github.com/frostdev/frost/internal/runtime"
)

// More errors, checked with errors.Is.
var (
	// ErrNoFile: the path does not exist in the sandbox.
	ErrNoFile = errors.New("no such file in the sandbox")
	// ErrPortClosed: nothing listens on the port inside the sandbox.
	ErrPortClosed = errors.New("nothing listens on that port in the sandbox")
	// ErrNoProcess: no command with that pid runs in the sandbox.
	ErrNoProcess = errors.New("no such command running in the sandbox")
	// ErrInputClosed: the command's standard input is closed.
	ErrInputClosed = errors.New("the command's input is closed")
	// ErrNoTerminal: the command does not run on a terminal.
	ErrNoTerminal = errors.New("the command does not run on a terminal")
	// ErrNoSpace: the sandbox's disk is full. Its files are memory; the
	// runtime caps them (gvisor.OverlayBytes) so that a full disk is
	// this error and not the whole sandbox killed for memory.
	ErrNoSpace = errors.New("the sandbox's disk is full")
)

// Stdio is a command's standard streams (nil: empty input, output
// dropped), and Started, called with its pid in the sandbox once it runs,
// before any of its output.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
	Started  func(pid int)
}

// Exec runs a command in the sandbox (resuming it if paused), streaming
// its output, and returns its exit code; timedOut reports that
// req.Timeout killed it. While it runs it is in the sandbox's process
// table (Processes), which outlives the call: if the sandbox is paused
// meanwhile, the call ends and the command runs on after the resume.
func (m *Manager) Exec(ctx context.Context, id string, req api.ExecRequest, stdio Stdio) (exit int, timedOut bool, err error) {
	if len(req.Cmd) == 0 || req.Cmd[0] == "" {
		return 0, false, fmt.Errorf("%w: exec needs a command: \"cmd\": [\"bash\", \"-lc\", \"...\"]", ErrInvalid)
	}
	if req.Cwd != "" && !path.IsAbs(req.Cwd) {
		return 0, false, fmt.Errorf("%w: cwd %q must be an absolute path", ErrInvalid, req.Cwd)
	}
	for k, v := range req.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return 0, false, fmt.Errorf("%w: environment variable %q: names must be non-empty without '=' or NUL, values without NUL", ErrInvalid, k)
		}
	}
	if req.Timeout < 0 {
		return 0, false, fmt.Errorf("%w: negative timeout", ErrInvalid)
	}
	if req.TTY != nil {
		if err := req.TTY.Check(); err != nil {
			return 0, false, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	box, ctx, release, err := m.use(ctx, id)
	if err != nil {
		return 0, false, err
	}
	defer release()
	// The sandbox's environment travels with every command: a sandbox
	// restored from a template's snapshot has the template's init.
	rec, err := m.record(ctx, id)
	if err != nil {
		return 0, false, err
	}
	env := maps.Clone(rec.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, req.Env)
	runCtx := ctx
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, time.Duration(req.Timeout))
		defer cancel()
	}
	cwd := req.Cwd
	if cwd == "" {
		cwd = "/root"
	}
	exit, err = box.Exec(runCtx, runtime.Cmd{Args: req.Cmd, Cwd: cwd, Env: env, Tag: req.Tag, TTY: req.TTY, Stdin: stdio.In, Stdout: stdio.Out, Stderr: stdio.Err, Started: stdio.Started})
	if err != nil && ctx.Err() == nil && runCtx.Err() != nil {
		return exit, true, nil
	}
	return exit, false, m.failed(ctx, id, box, interrupted(ctx, err))
}

// agentRun runs `frost agent ARGS` in the sandbox and maps its failures.
func (m *Manager) agentRun(ctx context.Context, id string, stdin io.Reader, stdout io.Writer, args ...string) error {
	box, ctx, release, err := m.use(ctx, id)
	if err != nil {
		return err
	}
	defer release()
	return m.failed(ctx, id, box, interrupted(ctx, runAgent(ctx, box, stdin, stdout, args...)))
}

func runAgent(ctx context.Context, box runtime.Box, stdin io.Reader, stdout io.Writer, args ...string) error {
	var stderr bytes.Buffer
	code, err := box.Exec(ctx, runtime.Cmd{Args: append([]string{AgentPath, "agent"}, args...), Raw: true, Stdin: stdin, Stdout: stdout, Stderr: runtime.Head(&stderr, 64<<10)})
	if err != nil {
		return fmt.Errorf("sandbox agent: %w", err)
	}
	if code == agent.ExitOK {
		return nil
	}
	var ae api.Error
	msg := strings.TrimSpace(stderr.String())
	if json.Unmarshal(stderr.Bytes(), &ae) == nil && ae.Message != "" {
		msg = ae.Message
	}
	switch code {
	case agent.ExitNotFound:
		return fmt.Errorf("%w: %s", ErrNoFile, msg)
	case agent.ExitRefused:
		return fmt.Errorf("%w: %s", ErrPortClosed, msg)
	case agent.ExitNoProcess:
		return fmt.Errorf("%w: %s", ErrNoProcess, msg)
	case agent.ExitInputClosed:
		return fmt.Errorf("%w: %s", ErrInputClosed, msg)
	case agent.ExitNoTerminal:
		return fmt.Errorf("%w: %s", ErrNoTerminal, msg)
	case agent.ExitNoSpace:
		return fmt.Errorf("%w: %s (its files are memory: its root file system holds at most half of its memory limit, /tmp a quarter; remove some, or create it with more memory)", ErrNoSpace, msg)
	case agent.ExitUsage, agent.ExitIsDir, agent.ExitNotDir, agent.ExitExists:
		return fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	return fmt.Errorf("sandbox agent exited %d: %s", code, msg)
}

// Processes lists the commands running in the sandbox, by pid.
func (m *Manager) Processes(ctx context.Context, id string) ([]api.Process, error) {
	var list []api.Process
	if err := m.agentJSON(ctx, id, &list, "ps"); err != nil {
		return nil, err
	}
	return list, nil
}

// Attach follows a running command: stdio.Started is called once it is
// attached, its output from now on goes to stdio.Out and stdio.Err, and
// its exit code is returned when it ends. Ending ctx leaves it running.
func (m *Manager) Attach(ctx context.Context, id string, pid int, stdio Stdio) (int, error) {
	p, err := pidArg(pid)
	if err != nil {
		return 0, err
	}
	frames := &agent.Output{Stdout: stdio.Out, Stderr: stdio.Err, Started: stdio.Started}
	if err := m.agentRun(ctx, id, nil, frames, "attach", p); err != nil {
		return 0, err
	}
	code, _, ok := frames.Exit()
	if !ok {
		return 0, errors.New("sandbox agent: the command's stream ended before its exit")
	}
	return code, nil
}

// Signal sends sig to a running command and all it started (its process
// group).
func (m *Manager) Signal(ctx context.Context, id string, pid int, sig syscall.Signal) error {
	p, err := pidArg(pid)
	if err != nil {
		return err
	}
	return m.agentRun(ctx, id, nil, io.Discard, "signal", p, strconv.Itoa(int(sig)))
}

// Input writes what r holds to a running command's standard input, then
// closes it if closeIn is set.
func (m *Manager) Input(ctx context.Context, id string, pid int, r io.Reader, closeIn bool) error {
	p, err := pidArg(pid)
	if err != nil {
		return err
	}
	args := []string{"stdin", p}
	if closeIn {
		args = append(args, "--close")
	}
	if r == nil {
		r = strings.NewReader("")
	}
	return m.agentRun(ctx, id, r, io.Discard, args...)
}

// Resize sets the size of the terminal a running command runs on (one
// started with ExecRequest.TTY); the command is told (SIGWINCH).
func (m *Manager) Resize(ctx context.Context, id string, pid int, size api.TTY) error {
	p, err := pidArg(pid)
	if err != nil {
		return err
	}
	if err := size.Check(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return m.agentRun(ctx, id, nil, io.Discard, "resize", p, size.String())
}

// pidArg is pid as the agent's argument; no command has a pid under 1.
func pidArg(pid int) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("%w: pid %d", ErrNoProcess, pid)
	}
	return strconv.Itoa(pid), nil
}

// checkPath refuses paths the agent should not be handed.
func checkPath(p string) error {
	if !path.IsAbs(p) || strings.ContainsRune(p, 0) {
		return fmt.Errorf("%w: path %q must be absolute", ErrInvalid, p)
	}
	return nil
}

// ReadFile streams a file of the sandbox to w.
func (m *Manager) ReadFile(ctx context.Context, id, p string, w io.Writer) error {
	if err := checkPath(p); err != nil {
		return err
	}
	return m.agentRun(ctx, id, nil, w, "read", p)
}

// WriteFile replaces a file of the sandbox (creating its parents) with
// what r holds, atomically.
func (m *Manager) WriteFile(ctx context.Context, id, p string, mode uint32, r io.Reader) (api.FileInfo, error) {
	if err := checkPath(p); err != nil {
		return api.FileInfo{}, err
	}
	if mode == 0 {
		mode = 0o644
	}
	if mode > 0o7777 {
		return api.FileInfo{}, fmt.Errorf("%w: mode %o is not permission bits", ErrInvalid, mode)
	}
	// Framed, so that a body that fails part way (its client gone, cut for
	// stalling) leaves the file as it was: the runtime would end the
	// command's input the same way for both.
	in := agent.NewUpload(r)
	err := m.agentRun(ctx, id, in, io.Discard, "write", p, strconv.FormatUint(uint64(mode), 8), "--framed")
	if in.Err() != nil { // the client's: the body ended early, or stopped coming
		return api.FileInfo{}, fmt.Errorf("%w: the upload's body: %w; the file is as it was", ErrInvalid, in.Err())
	}
	if err != nil {
		return api.FileInfo{}, err
	}
	return m.Stat(ctx, id, p)
}

// WriteTree unpacks the tar stream r into directory dir of the sandbox
// (made, with its parents, if missing), merging it with what is there:
// nothing in dir changes unless the whole archive came and every entry
// can take its place (tree.Unpack, run by the agent in the sandbox).
func (m *Manager) WriteTree(ctx context.Context, id, dir string, r io.Reader) (api.ArchiveStats, error) {
	var st api.ArchiveStats
	if err := checkPath(dir); err != nil {
		return st, err
	}
	in := agent.NewUpload(r) // framed, as WriteFile's: a cut body is told from a whole one
	var out bytes.Buffer
	err := m.agentRun(ctx, id, in, &out, "untar", dir, "--framed")
	if in.Err() != nil {
		return st, fmt.Errorf("%w: the upload's body: %w; nothing in %s changed", ErrInvalid, in.Err(), dir)
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		return st, fmt.Errorf("sandbox agent answered %q: %w", out.String(), err)
	}
	return st, nil
}

// ReadTree streams the tree under directory dir of the sandbox to w as
// a tar stream (tree.Pack: directories, files and symbolic links).
func (m *Manager) ReadTree(ctx context.Context, id, dir string, w io.Writer) error {
	if err := checkPath(dir); err != nil {
		return err
	}
	return m.agentRun(ctx, id, nil, w, "tar", dir)
}

// Stat describes a file of the sandbox.
func (m *Manager) Stat(ctx context.Context, id, p string) (api.FileInfo, error) {
	var info api.FileInfo
	return info, m.agentJSON(ctx, id, &info, "stat", p)
}

// ListDir describes the entries of a directory of the sandbox.
func (m *Manager) ListDir(ctx context.Context, id, p string) ([]api.FileInfo, error) {
	var list []api.FileInfo
	return list, m.agentJSON(ctx, id, &list, "ls", p)
}

// Mkdir creates a directory and its parents.
func (m *Manager) Mkdir(ctx context.Context, id, p string) (api.FileInfo, error) {
	var info api.FileInfo
	return info, m.agentJSON(ctx, id, &info, "mkdir", p)
}

// Move renames a file or directory, creating the destination's parents.
func (m *Manager) Move(ctx context.Context, id, src, dst string) (api.FileInfo, error) {
	var info api.FileInfo
	return info, m.agentJSON(ctx, id, &info, "mv", src, dst)
}

// Remove deletes a file, or a directory and everything in it.
func (m *Manager) Remove(ctx context.Context, id, p string) error {
	if err := checkPath(p); err != nil {
		return err
	}
	if p == "/" {
		return fmt.Errorf("%w: refusing to remove /", ErrInvalid)
	}
	return m.agentRun(ctx, id, nil, io.Discard, "rm", p)
}

// agentJSON runs an agent verb on one or more paths and decodes its JSON
// answer into v.
func (m *Manager) agentJSON(ctx context.Context, id string, v any, verb string, paths ...string) error {
	for _, p := range paths {
		if err := checkPath(p); err != nil {
			return err
		}
	}
	var out bytes.Buffer
	if err := m.agentRun(ctx, id, nil, &out, append([]string{verb}, paths...)...); err != nil {
		return err
	}
	if err := json.Unmarshal(out.Bytes(), v); err != nil {
		return fmt.Errorf("sandbox agent answered %q: %w", out.String(), err)
	}
	return nil
}

// Watch calls fn for every change under directory p until ctx ends or fn
// fails. The first call is an event with Op "ready": changes from then on
// are reported.
func (m *Manager) Watch(ctx context.Context, id, p string, fn func(api.FileEvent) error) error {
	if err := checkPath(p); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		err := m.agentRun(ctx, id, nil, pw, "watch", p)
		pw.CloseWithError(err)
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var ferr error
	for sc.Scan() {
		var ev api.FileEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			ferr = fmt.Errorf("sandbox agent watch answered %q: %w", sc.Text(), err)
			break
		}
		if ferr = fn(ev); ferr != nil {
			break
		}
	}
	cancel()
	pr.Close()
	err := <-done
	if ferr != nil {
		return ferr
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Dial connects to a TCP port inside the sandbox, resuming it if paused.
// The connection does not hold the sandbox running: a pause or a kill
// ends it, as it would end a connection to a machine that went away.
func (m *Manager) Dial(ctx context.Context, id string, port int) (net.Conn, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("%w: port %d", ErrInvalid, port)
	}
	box, ctx, release, err := m.use(ctx, id)
	if err != nil {
		return nil, err
	}
	defer release()
	conn, err := box.Dial(ctx, port)
	if err != nil {
		return nil, m.failed(ctx, id, box, interrupted(ctx, err))
	}
	// A box that goes away takes its end of the connection with it
	// without a word (no FIN: its network stack is gone), so the
	// connection is closed here when a pause or kill begins: a reader
	// sees it end at once, and a pool of idle connections (Ports) never
	// hands out one that leads nowhere.
	users := m.state(id).usersCtx()
	return &boxConn{Conn: conn, stop: context.AfterFunc(users, func() { conn.Close() })}, nil
}

// boxConn is a connection into a sandbox that Dial closes when the
// sandbox is paused or killed.
type boxConn struct {
	net.Conn
	stop func() bool
}

func (c *boxConn) Close() error {
	c.stop()
	return c.Conn.Close()
}
