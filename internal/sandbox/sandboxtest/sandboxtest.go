// Package sandboxtest is a fake runtime.BoxRuntime for unit tests of the
// logic around sandboxes (the manager, the E2B compatibility layer): its
// boxes keep files in memory, answer the agent's read, write and stat, echo
// other commands (those named missing* are not found), keep a process
// table as init does (ps, attach, signal, stdin), serve ports with a
// handler of the test's, and checkpoint their files and table as JSON.
// Real sandboxes (runsc) are tested in internal/runtime/gvisor and e2e.
package sandboxtest

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/agent"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/registry/bolt"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/sandbox"
	"github.com/frostdev/frost/internal/snapshot"
)

// New returns an empty fake runtime.
func New() *Runtime { return &Runtime{Live: map[string]*Box{}} }

// Runtime is the fake runtime; Live holds its running boxes by ID.
type Runtime struct {
	mu    sync.Mutex
	Boots int
	Live  map[string]*Box
	pids  atomic.Int32
	// Port, if set, answers connections to every box's ports (Dial);
	// Dials counts them.
	Port  http.Handler
	Dials atomic.Int32
}

func (f *Runtime) Name() string         { return "fake" }
func (f *Runtime) ImageVersion() string { return "fake/1" }

func (f *Runtime) Boot(ctx context.Context, spec runtime.BoxSpec) (runtime.Box, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Boots++
	b := &Box{rt: f, id: spec.ID, files: map[string]string{}, procs: map[int]api.Process{}, Egress: spec.Egress}
	f.Live[spec.ID] = b
	return b, nil
}

// Running says whether box id runs (not killed, paused or never made).
func (f *Runtime) Running(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Live[id] != nil
}

func (f *Runtime) Restore(ctx context.Context, spec runtime.BoxSpec, dir string) (runtime.Box, error) {
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, err
	}
	b := &Box{rt: f, id: spec.ID, files: st.Files, procs: st.Procs, Egress: spec.Egress}
	if b.procs == nil {
		b.procs = map[int]api.Process{}
	}
	f.mu.Lock()
	f.Live[spec.ID] = b
	f.mu.Unlock()
	return b, nil
}

// state is what a fake checkpoint holds.
type state struct {
	Files map[string]string   `json:"files"`
	Procs map[int]api.Process `json:"procs,omitempty"`
}

type Box struct {
	rt    *Runtime
	id    string
	mu    sync.Mutex
	files map[string]string
	// procs is the table of commands init would keep: each exec's from
	// its start to its end, a detached one's until Block lets it end.
	procs map[int]api.Process
	// Block, if set, holds every command (and every attach) until
	// closed.
	Block chan struct{}
	// blocked counts the execs Block holds now.
	blocked atomic.Int32
	// Detached and Stopped count the execs Block held whose context
	// ended: with runtime.ErrDetach as its cause (the command would run
	// on), or otherwise (it would be killed).
	Detached, Stopped atomic.Int32
	// Egress is what its spec said it may reach.
	Egress registry.Egress
	// usage is what Stats reports (SetUsage).
	usage runtime.BoxStats
	// Untars counts the trees written into it.
	Untars int
	// died says why it ended on its own (Die); "" while it runs.
	died string
}

// Die ends the box as the host would (out of memory, say): its calls
// fail, and Ended says why.
func (b *Box) Die(why string) {
	b.mu.Lock()
	b.died = why
	b.mu.Unlock()
}

// Ended implements runtime.Ender.
func (b *Box) Ended(context.Context) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.died, b.died != ""
}

// dead is the error of a call on a box that died.
func (b *Box) dead() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.died != "" {
		return errors.New("urpc method \"containerManager.WaitPID\" failed: EOF")
	}
	return nil
}

// SetEgress implements runtime.EgressSetter.
func (b *Box) SetEgress(e registry.Egress) error {
	b.mu.Lock()
	b.Egress = e
	b.mu.Unlock()
	return nil
}

// SetUsage sets what the box reports it uses.
func (b *Box) SetUsage(st runtime.BoxStats) {
	b.mu.Lock()
	b.usage = st
	b.mu.Unlock()
}

// Stats implements runtime.Stater.
func (b *Box) Stats() (runtime.BoxStats, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.usage, nil
}

// Blocked returns how many execs Block holds now.
func (b *Box) Blocked() int { return int(b.blocked.Load()) }

// WaitBlocked waits until Block holds n execs or more.
func (b *Box) WaitBlocked(n int) {
	for b.Blocked() < n {
		time.Sleep(time.Millisecond)
	}
}

func (b *Box) Exec(ctx context.Context, c runtime.Cmd) (int, error) {
	if err := b.dead(); err != nil {
		return 0, err
	}
	if len(c.Args) >= 3 && c.Args[0] == sandbox.AgentPath && c.Args[1] == "agent" {
		return b.agent(ctx, c)
	}
	if strings.HasPrefix(c.Args[0], "missing") { // as init answers a command it cannot find
		fmt.Fprintf(orDiscard(c.Stderr), "frost: %s: command not found\n", c.Args[0])
		return 127, nil
	}
	pid := int(b.rt.pids.Add(1)) + 100
	b.mu.Lock()
	b.procs[pid] = api.Process{Pid: pid, Tag: c.Tag, Cmd: c.Args, Cwd: c.Cwd, Env: c.Env, Stdin: c.Stdin != nil || c.TTY != nil, TTY: c.TTY}
	b.mu.Unlock()
	if c.Started != nil {
		c.Started(pid)
	}
	if c.Stdin != nil { // taken as a command would, kept as stdin:PID
		go func() {
			data, _ := io.ReadAll(c.Stdin)
			b.mu.Lock()
			b.files["stdin:"+strconv.Itoa(pid)] += string(data)
			b.mu.Unlock()
		}()
	}
	if err := b.hold(ctx, c); err != nil {
		if !runtime.Detached(ctx, c) {
			b.end(pid)
		}
		return -1, err
	}
	b.end(pid)
	fmt.Fprintf(orDiscard(c.Stdout), "ran %s env=%s cwd=%s", strings.Join(c.Args, " "), c.Env["K"], c.Cwd)
	return 0, nil
}

// hold waits for Block, if set, or for ctx to end.
func (b *Box) hold(ctx context.Context, c runtime.Cmd) error {
	if b.Block == nil {
		return nil
	}
	b.blocked.Add(1)
	defer b.blocked.Add(-1)
	select {
	case <-b.Block:
		return nil
	case <-ctx.Done():
		if runtime.Detached(ctx, c) {
			b.Detached.Add(1)
		} else {
			b.Stopped.Add(1)
		}
		return ctx.Err()
	}
}

// end takes a command out of the table; it reports whether it was there.
func (b *Box) end(pid int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.procs[pid]
	delete(b.procs, pid)
	return ok
}

// Processes returns the box's process table.
func (b *Box) Processes() []api.Process {
	b.mu.Lock()
	defer b.mu.Unlock()
	var list []api.Process
	for _, p := range b.procs {
		list = append(list, p)
	}
	return list
}

// agent answers the agent's verbs as `frost agent` would.
func (b *Box) agent(ctx context.Context, c runtime.Cmd) (int, error) {
	out, errw := orDiscard(c.Stdout), orDiscard(c.Stderr)
	verb := c.Args[2]
	var pid int
	if len(c.Args) > 3 {
		pid, _ = strconv.Atoi(c.Args[3])
	}
	noProcess := func() (int, error) {
		fmt.Fprintf(errw, `{"code":"not_found","message":"no running command with pid %d"}`, pid)
		return agent.ExitNoProcess, nil
	}
	switch verb {
	case "ps":
		list := b.Processes()
		slices.SortFunc(list, func(x, y api.Process) int { return x.Pid - y.Pid })
		if list == nil {
			list = []api.Process{}
		}
		json.NewEncoder(out).Encode(list)
		return 0, nil
	case "attach":
		b.mu.Lock()
		p, ok := b.procs[pid]
		b.mu.Unlock()
		if !ok {
			return noProcess()
		}
		frame(out, 'P', []byte(strconv.Itoa(pid)))
		if err := b.hold(ctx, c); err != nil {
			return -1, err
		}
		if b.end(pid) {
			frame(out, 'O', []byte("ran "+strings.Join(p.Cmd, " ")))
		}
		frame(out, 'X', []byte(`{"code":0}`))
		return 0, nil
	case "signal":
		if !b.end(pid) {
			return noProcess()
		}
		return 0, nil
	case "stdin":
		data, _ := io.ReadAll(c.Stdin)
		b.mu.Lock()
		defer b.mu.Unlock()
		p, ok := b.procs[pid]
		if !ok {
			return noProcess()
		}
		if !p.Stdin {
			fmt.Fprintf(errw, `{"code":"conflict","message":"the input of command %d is closed"}`, pid)
			return agent.ExitInputClosed, nil
		}
		closeIn := slices.Contains(c.Args, "--close")
		if closeIn && p.TTY != nil {
			fmt.Fprintf(errw, `{"code":"conflict","message":"command %d runs on a terminal, whose input does not close"}`, pid)
			return agent.ExitInputClosed, nil
		}
		b.files["stdin:"+strconv.Itoa(pid)] += string(data)
		if closeIn {
			p.Stdin = false
			b.procs[pid] = p
		}
		return 0, nil
	case "resize":
		b.mu.Lock()
		defer b.mu.Unlock()
		p, ok := b.procs[pid]
		if !ok {
			return noProcess()
		}
		if len(c.Args) != 5 || p.TTY == nil {
			fmt.Fprintf(errw, `{"code":"conflict","message":"command %d does not run on a terminal"}`, pid)
			return agent.ExitNoTerminal, nil
		}
		size, _ := api.ParseTTY(c.Args[4])
		p.TTY = &size
		b.procs[pid] = p
		return 0, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(c.Args) >= 4 {
		verb, p := c.Args[2], c.Args[3]
		switch verb {
		case "write":
			in := c.Stdin
			if c.Args[len(c.Args)-1] == "--framed" {
				in = agent.ReadUpload(in)
			}
			data, err := io.ReadAll(in)
			if err != nil {
				fmt.Fprintf(errw, `{"code":"internal","message":%q}`, err.Error())
				return agent.ExitFailure, nil
			}
			b.files[p] = string(data)
			return 0, nil
		case "untar": // each file of the archive under p, or none
			in := c.Stdin
			if c.Args[len(c.Args)-1] == "--framed" {
				in = agent.ReadUpload(in)
			}
			got := map[string]string{}
			var st api.ArchiveStats
			tr := tar.NewReader(in)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					fmt.Fprintf(errw, `{"code":"invalid_request","message":%q}`, err.Error())
					return agent.ExitUsage, nil
				}
				data, _ := io.ReadAll(tr)
				got[path.Join(p, h.Name)] = string(data)
				st.Files++
				st.Bytes += int64(len(data))
			}
			maps.Copy(b.files, got)
			b.Untars++
			json.NewEncoder(out).Encode(st)
			return 0, nil
		case "read":
			v, ok := b.files[p]
			if !ok {
				fmt.Fprintf(errw, `{"code":"not_found","message":"no %s"}`, p)
				return agent.ExitNotFound, nil
			}
			io.WriteString(out, v)
			return 0, nil
		case "stat":
			v, ok := b.files[p]
			if !ok {
				return agent.ExitNotFound, nil
			}
			json.NewEncoder(out).Encode(api.FileInfo{Path: p, Name: filepath.Base(p), Type: "file", Size: int64(len(v))})
			return 0, nil
		}
	}
	return agent.ExitUsage, nil
}

// frame writes one frame of the agent's run and attach output: a type
// byte, a 4-byte big-endian length, the payload.
func frame(w io.Writer, typ byte, p []byte) {
	var h [5]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(len(p)))
	w.Write(append(h[:], p...))
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// Dial serves the connection with the runtime's Port handler, if set,
// over an in-memory pipe, and counts it in Dials; the box's end is never
// closed by the box going away, as a real box's is not (its network
// stack is gone without a FIN).
func (b *Box) Dial(ctx context.Context, port int) (net.Conn, error) {
	if err := b.dead(); err != nil {
		return nil, err
	}
	b.rt.mu.Lock()
	h := b.rt.Port
	b.rt.mu.Unlock()
	if h == nil {
		return nil, errors.New("no ports in the fake")
	}
	b.rt.Dials.Add(1)
	client, server := net.Pipe()
	go serveHTTP(server, h)
	return client, nil
}

// serveHTTP answers HTTP/1.1 requests on c with h, keeping the
// connection alive, until the other end closes it.
func serveHTTP(c net.Conn, h http.Handler) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		io.Copy(io.Discard, req.Body)
		resp := rec.Result()
		resp.Request = req // no body for a HEAD
		resp.ContentLength = int64(rec.Body.Len())
		if resp.Write(c) != nil {
			return
		}
	}
}

func (b *Box) Checkpoint(ctx context.Context, dir string) error {
	if err := b.dead(); err != nil {
		return err
	}
	b.mu.Lock()
	data, _ := json.Marshal(state{Files: b.files, Procs: b.procs})
	b.mu.Unlock()
	if err := os.WriteFile(filepath.Join(dir, "state.json"), data, 0o600); err != nil {
		return err
	}
	return b.Kill(ctx)
}

func (b *Box) Kill(ctx context.Context) error {
	b.rt.mu.Lock()
	delete(b.rt.Live, b.id)
	b.rt.mu.Unlock()
	return nil
}

// Manager is a sandbox manager over a fake runtime, for tests: its
// registry (bbolt), checkpoint store and scratch space in Dir.
type Manager struct {
	*sandbox.Manager
	Reg   *bolt.Store
	Snaps *snapshot.Store
	Dir   string
}

// NewManager returns a manager over rt with a fresh registry and store in
// a test directory (closed when the test ends); opts adjust its Config
// (a clock, an ID tag) before it starts.
func NewManager(t testing.TB, rt *Runtime, opts ...func(*sandbox.Config)) *Manager {
	t.Helper()
	dir := t.TempDir()
	reg, err := bolt.Open(filepath.Join(dir, "reg.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	snaps, err := snapshot.Open(filepath.Join(dir, "snaps"), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := sandbox.DefaultConfig()
	cfg.Dir = filepath.Join(dir, "scratch")
	cfg.BaseRootFS = dir // any directory
	cfg.Key = []byte("0123456789abcdef0123456789abcdef")
	for _, o := range opts {
		o(&cfg)
	}
	m, err := sandbox.New(cfg, reg, snaps, rt)
	if err != nil {
		t.Fatal(err)
	}
	return &Manager{Manager: m, Reg: reg, Snaps: snaps, Dir: dir}
}
