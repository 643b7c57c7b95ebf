package e2b

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/frostdev/frost/api"
	pb "github.com/frostdev/frost/internal/e2b/envdpb/processpb"
	"github.com/frostdev/frost/internal/e2b/envdpb/processpb/processpbconnect"
	"github.com/frostdev/frost/internal/sandbox"
)

// processService is envd's process.Process over the sandbox service's
// exec. As in envd, a process outlives the stream that started it: the
// client may drop the stream (the SDK's disconnect) and re-attach with
// Connect, by pid or tag, until the process exits or is killed. Pids are
// the commands' own in the sandbox, and the sandbox's init keeps the
// table of them (sandbox.Manager.Processes), so a pause ends the streams
// but not the commands: after the resume, on whichever node, they are
// listed, re-attached, signalled and fed as before.
//
// A command started here and still streaming is served from procTable,
// without a round trip into the sandbox; any other goes to init's table.
//
// A process started with a PTY runs on a terminal in the sandbox (its
// init opens it): its output comes as pty data, SendInput's pty and stdin
// alike go to the terminal, Update resizes it, and its input does not
// close (CloseStdin: failed_precondition).
type processService struct {
	processpbconnect.UnimplementedProcessHandler
	e *Envd
}

// procTable holds the processes started through Start whose call is
// still running, by sandbox and pid.
type procTable struct {
	mu    sync.Mutex
	next  uint32
	procs map[string]map[uint32]*proc
}

// handleBase is where procTable's own handles start, above any pid.
const handleBase = 1 << 30

func newProcTable() *procTable {
	return &procTable{next: handleBase, procs: map[string]map[uint32]*proc{}}
}

// add enters p under pid; pid 0 (an init from before pids, which does
// not report them) gets a handle of the table's own, above any pid.
func (t *procTable) add(id string, p *proc, pid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if pid == 0 {
		t.next++
		pid = int(t.next)
	}
	p.pid = uint32(pid)
	if t.procs[id] == nil {
		t.procs[id] = map[uint32]*proc{}
	}
	t.procs[id][p.pid] = p
}

// remove takes p out; a later command under a reused pid stays.
func (t *procTable) remove(id string, p *proc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.procs[id][p.pid] == p {
		delete(t.procs[id], p.pid)
	}
	if len(t.procs[id]) == 0 {
		delete(t.procs, id)
	}
}

// find returns the process a selector names, or a NotFound error.
func (t *procTable) find(id string, sel *pb.ProcessSelector) (*proc, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.procs[id] {
		switch s := sel.GetSelector().(type) {
		case *pb.ProcessSelector_Pid:
			if p.pid == s.Pid {
				return p, nil
			}
		case *pb.ProcessSelector_Tag:
			if p.tag != "" && p.tag == s.Tag {
				return p, nil
			}
		}
	}
	return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("no running process %v", sel))
}

func (t *procTable) list(id string) []*pb.ProcessInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []*pb.ProcessInfo{}
	for _, p := range t.procs[id] {
		info := &pb.ProcessInfo{Pid: p.pid, Config: p.cfg}
		if p.tag != "" {
			info.Tag = &p.tag
		}
		out = append(out, info)
	}
	return out
}

// proc is one running process and the streams attached to it.
type proc struct {
	pid   uint32 // set before ready closes
	tag   string
	cfg   *pb.ProcessConfig
	stdin *io.PipeWriter // nil without stdin (a PTY's input is always there)
	pty   bool
	kill  context.CancelFunc

	// ready closes once the process runs (pid set, in the table) or its
	// start failed (startErr).
	ready    chan struct{}
	once     sync.Once
	startErr error

	mu     sync.Mutex
	killed bool
	subs   map[*sub]struct{}
	ended  bool
}

// sub is one stream attached to a process: it receives every event from
// its attachment on, the end included. A slow stream slows the process's
// output down rather than losing any of it.
type sub struct {
	events chan item
	gone   chan struct{} // closed when the stream leaves
}

// item is an event for a stream, or the error that ends it.
type item struct {
	ev  *pb.ProcessEvent
	err error
}

// attach adds a stream; it fails once the process has ended.
func (p *proc) attach() (*sub, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return nil, false
	}
	s := &sub{events: make(chan item, 64), gone: make(chan struct{})}
	p.subs[s] = struct{}{}
	return s, true
}

func (p *proc) detach(s *sub) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.subs[s]; ok {
		delete(p.subs, s)
		close(s.gone)
	}
}

// publish delivers it to every attached stream; the last item (end)
// closes the process to new streams.
func (p *proc) publish(it item, last bool) {
	p.mu.Lock()
	subs := make([]*sub, 0, len(p.subs))
	for s := range p.subs {
		subs = append(subs, s)
	}
	if last {
		p.ended = true
	}
	p.mu.Unlock()
	for _, s := range subs {
		select {
		case s.events <- it:
		case <-s.gone:
		}
	}
}

// begin enters the running process in t under pid and releases Start.
func (p *proc) begin(t *procTable, id string, pid int) {
	p.once.Do(func() {
		t.add(id, p, pid)
		close(p.ready)
	})
}

// begun says whether the process was entered in the table.
func (p *proc) begun() bool {
	select {
	case <-p.ready:
		return p.startErr == nil
	default:
		return false
	}
}

func (p *proc) output(t *procTable, id string, s stream) io.Writer {
	return writerFunc(func(b []byte) (int, error) {
		p.begin(t, id, 0) // output before a pid: an init from before pids
		p.publish(item{ev: dataEvent(s, b)}, false)
		return len(b), nil
	})
}

// stream is which of a process's outputs an event carries.
type stream int

const (
	stdout stream = iota
	stderr
	pty // a process on a terminal has only this one
)

// outputs are the streams of a process on a terminal or not.
func outputs(onTerminal bool) (out, err stream) {
	if onTerminal {
		return pty, pty
	}
	return stdout, stderr
}

// dataEvent is an output event carrying a copy of b.
func dataEvent(s stream, b []byte) *pb.ProcessEvent {
	data := &pb.ProcessEvent_DataEvent{}
	switch s {
	case stdout:
		data.Output = &pb.ProcessEvent_DataEvent_Stdout{Stdout: bytes.Clone(b)}
	case stderr:
		data.Output = &pb.ProcessEvent_DataEvent_Stderr{Stderr: bytes.Clone(b)}
	default:
		data.Output = &pb.ProcessEvent_DataEvent_Pty{Pty: bytes.Clone(b)}
	}
	return &pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: data}}
}

// terminalSize reads a PTY's size.
func terminalSize(p *pb.PTY) (*api.TTY, error) {
	size := &api.TTY{Cols: int(p.GetSize().GetCols()), Rows: int(p.GetSize().GetRows())}
	if err := size.Check(); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	return size, nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Start runs a command: the stream carries start (the pid) first, then
// output, keepalives while quiet, and end.
func (s *processService) Start(ctx context.Context, req *connect.Request[pb.StartRequest], stream *connect.ServerStream[pb.StartResponse]) error {
	cfg := req.Msg.Process
	if cfg.GetCmd() == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("StartRequest needs process.cmd"))
	}
	id := sandboxID(ctx)
	ex := api.ExecRequest{Cmd: append([]string{cfg.Cmd}, cfg.Args...), Env: cfg.Envs, Cwd: cfg.GetCwd()}
	if req.Msg.Pty != nil {
		size, err := terminalSize(req.Msg.Pty)
		if err != nil {
			return err
		}
		ex.TTY = size
	}
	// The command's own timeout is the stream's (Connect-Timeout-Ms); the
	// stream ending otherwise does not end the command.
	if d, ok := ctx.Deadline(); ok {
		ex.Timeout = api.Duration(time.Until(d))
	}
	ex.Tag = req.Msg.GetTag()
	p := &proc{tag: req.Msg.GetTag(), cfg: cfg, pty: ex.TTY != nil, subs: map[*sub]struct{}{}, ready: make(chan struct{})}
	var stdin io.Reader
	if req.Msg.GetStdin() || p.pty {
		pr, pw := io.Pipe()
		stdin, p.stdin = pr, pw
	}
	runCtx, kill := context.WithCancel(context.WithoutCancel(ctx))
	p.kill = kill
	first, _ := p.attach()
	go s.run(runCtx, id, p, ex, stdin)
	// The start event carries the pid, which the sandbox gives once the
	// command runs.
	select {
	case <-p.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	if p.startErr != nil {
		p.detach(first)
		return connectError(p.startErr)
	}
	return follow(ctx, p, first, req.Header(), func(ev *pb.ProcessEvent) error { return stream.Send(&pb.StartResponse{Event: ev}) })
}

// run runs p to its end and publishes the end to its streams.
func (s *processService) run(ctx context.Context, id string, p *proc, ex api.ExecRequest, stdin io.Reader) {
	defer p.kill()
	out, errOut := outputs(p.pty)
	code, timedOut, err := s.e.m.Exec(ctx, id, ex, sandbox.Stdio{
		In: stdin, Out: p.output(s.e.procs, id, out), Err: p.output(s.e.procs, id, errOut),
		Started: func(pid int) { p.begin(s.e.procs, id, pid) },
	})
	if p.stdin != nil {
		p.stdin.CloseWithError(io.ErrClosedPipe)
	}
	if !p.begun() && err != nil {
		p.once.Do(func() {
			p.startErr = err
			close(p.ready)
		})
		return
	}
	p.begin(s.e.procs, id, 0) // it ran and ended without a pid (an older init)
	s.e.procs.remove(id, p)
	p.mu.Lock()
	killed := p.killed
	p.mu.Unlock()
	var end *pb.ProcessEvent_EndEvent
	switch {
	case killed, timedOut:
		end = &pb.ProcessEvent_EndEvent{ExitCode: -1, Status: "signal: killed"}
		if timedOut {
			msg := "the command was killed by its timeout"
			end.Error = &msg
		}
	case err != nil:
		p.publish(item{err: connectError(err)}, true)
		return
	default:
		end = &pb.ProcessEvent_EndEvent{ExitCode: int32(code), Exited: true, Status: fmt.Sprintf("exit status %d", code)}
	}
	p.publish(item{ev: &pb.ProcessEvent{Event: &pb.ProcessEvent_End{End: end}}}, true)
}

// follow sends a process's events to one stream, from start to end, with
// keepalives while quiet; if the client goes first, the process runs on.
func follow(ctx context.Context, p *proc, s *sub, h http.Header, send func(*pb.ProcessEvent) error) error {
	defer p.detach(s)
	if err := send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Start{Start: &pb.ProcessEvent_StartEvent{Pid: p.pid}}}); err != nil {
		return err
	}
	tick := time.NewTicker(keepaliveEvery(h, 50*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if err := send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Keepalive{Keepalive: &pb.ProcessEvent_KeepAlive{}}}); err != nil {
				return err
			}
		case it := <-s.events:
			if it.err != nil {
				return it.err
			}
			if err := send(it.ev); err != nil {
				return err
			}
			if it.ev.GetEnd() != nil {
				return nil
			}
		}
	}
}

// keepaliveEvery is the client's Keepalive-Ping-Interval (seconds), or
// def.
func keepaliveEvery(h http.Header, def time.Duration) time.Duration {
	if s, err := strconv.Atoi(h.Get("Keepalive-Ping-Interval")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return def
}

// Connect re-attaches to a running process: start (its pid), then its
// output from now on, then end.
func (s *processService) Connect(ctx context.Context, req *connect.Request[pb.ConnectRequest], stream *connect.ServerStream[pb.ConnectResponse]) error {
	id := sandboxID(ctx)
	send := func(ev *pb.ProcessEvent) error { return stream.Send(&pb.ConnectResponse{Event: ev}) }
	if p, err := s.e.procs.find(id, req.Msg.Process); err == nil {
		if sb, ok := p.attach(); ok {
			return follow(ctx, p, sb, req.Header(), send)
		}
	}
	running, err := s.lookup(ctx, id, req.Msg.Process)
	if err != nil {
		return err
	}
	return s.attachInit(ctx, id, running, req.Header(), send)
}

// attachInit follows a command through the sandbox's init: one started
// elsewhere, or before a pause.
func (s *processService) attachInit(ctx context.Context, id string, running api.Process, h http.Header, send func(*pb.ProcessEvent) error) error {
	pid := running.Pid
	snd := newSender(send)
	kctx, stop := context.WithCancel(ctx)
	defer stop()
	begin := func() {
		snd.sendMsg(&pb.ProcessEvent{Event: &pb.ProcessEvent_Start{Start: &pb.ProcessEvent_StartEvent{Pid: uint32(pid)}}})
		go snd.keepalive(kctx, keepaliveEvery(h, 50*time.Second), &pb.ProcessEvent{Event: &pb.ProcessEvent_Keepalive{Keepalive: &pb.ProcessEvent_KeepAlive{}}})
	}
	data := func(s stream) io.Writer {
		return writerFunc(func(b []byte) (int, error) {
			if err := snd.sendMsg(dataEvent(s, b)); err != nil {
				return 0, err
			}
			return len(b), nil
		})
	}
	// The start event goes once the sandbox's init has the command, so
	// that one not running is a plain not_found.
	out, errOut := outputs(running.TTY != nil)
	code, err := s.e.m.Attach(ctx, id, pid, sandbox.Stdio{Out: data(out), Err: data(errOut), Started: func(int) { begin() }})
	if err != nil {
		return connectError(err)
	}
	end := &pb.ProcessEvent_EndEvent{ExitCode: int32(code), Exited: true, Status: fmt.Sprintf("exit status %d", code)}
	return snd.sendMsg(&pb.ProcessEvent{Event: &pb.ProcessEvent_End{End: end}})
}

// lookup finds the command a selector names in the sandbox's process
// table.
func (s *processService) lookup(ctx context.Context, id string, sel *pb.ProcessSelector) (api.Process, error) {
	if sel.GetPid() == 0 && sel.GetTag() == "" {
		return api.Process{}, connect.NewError(connect.CodeInvalidArgument, errors.New("the process selector needs a pid or a tag"))
	}
	list, err := s.e.m.Processes(ctx, id)
	if err != nil {
		return api.Process{}, connectError(err)
	}
	for _, p := range list {
		if sel.GetPid() != 0 && p.Pid == int(sel.GetPid()) || sel.GetPid() == 0 && p.Tag == sel.GetTag() {
			return p, nil
		}
	}
	return api.Process{}, connect.NewError(connect.CodeNotFound, fmt.Errorf("no running process %v", sel))
}

// resolve finds the pid a selector names in the sandbox's process table
// (a pid: itself, without a look).
func (s *processService) resolve(ctx context.Context, id string, sel *pb.ProcessSelector) (int, error) {
	if pid := sel.GetPid(); pid != 0 {
		return int(pid), nil
	}
	p, err := s.lookup(ctx, id, sel)
	return p.Pid, err
}

// List lists the sandbox's running commands from its init's table, with
// the configuration they were started with here where this server
// started them.
func (s *processService) List(ctx context.Context, _ *connect.Request[pb.ListRequest]) (*connect.Response[pb.ListResponse], error) {
	id := sandboxID(ctx)
	running, err := s.e.m.Processes(ctx, id)
	if err != nil {
		return nil, connectError(err)
	}
	here := map[uint32]*pb.ProcessInfo{}
	for _, info := range s.e.procs.list(id) {
		here[info.Pid] = info
	}
	out := []*pb.ProcessInfo{}
	for _, p := range running {
		if info, ok := here[uint32(p.Pid)]; ok {
			out = append(out, info)
			delete(here, uint32(p.Pid))
			continue
		}
		info := &pb.ProcessInfo{Pid: uint32(p.Pid), Config: &pb.ProcessConfig{Envs: p.Env, Cwd: &p.Cwd}}
		if len(p.Cmd) > 0 {
			info.Config.Cmd, info.Config.Args = p.Cmd[0], p.Cmd[1:]
		}
		if p.Tag != "" {
			info.Tag = &p.Tag
		}
		out = append(out, info)
	}
	for pid, info := range here {
		if pid > handleBase { // a handle of procTable's: init does not list it
			out = append(out, info)
		}
	}
	return connect.NewResponse(&pb.ListResponse{Processes: out}), nil
}

// SendSignal signals the process and all it started. A command streaming
// here is killed (SIGTERM and SIGKILL alike: its call ends it); any other
// gets the signal from the sandbox's init.
func (s *processService) SendSignal(ctx context.Context, req *connect.Request[pb.SendSignalRequest]) (*connect.Response[pb.SendSignalResponse], error) {
	id := sandboxID(ctx)
	if p, err := s.e.procs.find(id, req.Msg.Process); err == nil {
		p.mu.Lock()
		p.killed = true
		p.mu.Unlock()
		p.kill()
		return connect.NewResponse(&pb.SendSignalResponse{}), nil
	}
	pid, err := s.resolve(ctx, id, req.Msg.Process)
	if err != nil {
		return nil, err
	}
	sig := syscall.SIGKILL
	if req.Msg.GetSignal() == pb.Signal_SIGNAL_SIGTERM {
		sig = syscall.SIGTERM
	}
	if err := s.e.m.Signal(ctx, id, pid, sig); err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&pb.SendSignalResponse{}), nil
}

// SendInput writes to a process's input: stdin, or its terminal (pty);
// a process on a terminal takes either there.
func (s *processService) SendInput(ctx context.Context, req *connect.Request[pb.SendInputRequest]) (*connect.Response[pb.SendInputResponse], error) {
	var data []byte
	switch in := req.Msg.GetInput().GetInput().(type) {
	case *pb.ProcessInput_Stdin:
		data = in.Stdin
	case *pb.ProcessInput_Pty:
		data = in.Pty
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("SendInputRequest needs input: stdin or pty"))
	}
	if err := s.input(ctx, req.Msg.Process, data, false); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.SendInputResponse{}), nil
}

// Update resizes a process's terminal (the SDK's pty.resize).
func (s *processService) Update(ctx context.Context, req *connect.Request[pb.UpdateRequest]) (*connect.Response[pb.UpdateResponse], error) {
	if req.Msg.Pty == nil {
		return connect.NewResponse(&pb.UpdateResponse{}), nil // nothing else to change
	}
	size, err := terminalSize(req.Msg.Pty)
	if err != nil {
		return nil, err
	}
	id := sandboxID(ctx)
	pid := 0
	if p, err := s.e.procs.find(id, req.Msg.Process); err == nil && p.pid < handleBase {
		pid = int(p.pid)
	} else if pid, err = s.resolve(ctx, id, req.Msg.Process); err != nil {
		return nil, err
	}
	if err := s.e.m.Resize(ctx, id, pid, *size); err != nil {
		return nil, connectError(err)
	}
	return connect.NewResponse(&pb.UpdateResponse{}), nil
}

func (s *processService) CloseStdin(ctx context.Context, req *connect.Request[pb.CloseStdinRequest]) (*connect.Response[pb.CloseStdinResponse], error) {
	if err := s.input(ctx, req.Msg.Process, nil, true); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.CloseStdinResponse{}), nil
}

// input writes data to a process's standard input, then closes it if
// closeIn: through the call streaming it here, or the sandbox's init.
func (s *processService) input(ctx context.Context, sel *pb.ProcessSelector, data []byte, closeIn bool) error {
	id := sandboxID(ctx)
	// Closing a terminal's input is init's to refuse (closing the pipe
	// here would say nothing).
	if p, err := s.e.procs.find(id, sel); err == nil && !(closeIn && p.pty) {
		if p.stdin == nil {
			if closeIn && len(data) == 0 {
				return nil // nothing to close
			}
			return connect.NewError(connect.CodeFailedPrecondition, errors.New("the process was started without stdin"))
		}
		if len(data) > 0 {
			if _, err := p.stdin.Write(data); err != nil {
				return connect.NewError(connect.CodeFailedPrecondition, errors.New("the process's stdin is closed"))
			}
		}
		if closeIn {
			p.stdin.Close()
		}
		return nil
	}
	pid, err := s.resolve(ctx, id, sel)
	if err != nil {
		return err
	}
	if err := s.e.m.Input(ctx, id, pid, bytes.NewReader(data), closeIn); err != nil {
		return connectError(err)
	}
	return nil
}

// sender serializes a stream's sends (its keepalives come from another
// goroutine).
type sender[T any] struct {
	mu   sync.Mutex
	send func(T) error
}

func newSender[T any](send func(T) error) *sender[T] { return &sender[T]{send: send} }

func (s *sender[T]) sendMsg(v T) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.send(v)
}

// keepalive sends msg every interval until ctx ends.
func (s *sender[T]) keepalive(ctx context.Context, every time.Duration, msg T) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sendMsg(msg)
		}
	}
}
