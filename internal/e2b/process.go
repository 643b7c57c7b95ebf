package e2b

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/frostdev/frost/api"
	pb "github.com/frostdev/frost/internal/e2b/envdpb/processpb"
	"github.com/frostdev/frost/internal/e2b/envdpb/processpb/processpbconnect"
)

// processService is envd's process.Process over the sandbox service's
// exec. As in envd, a process outlives the stream that started it: the
// client may drop the stream (the SDK's disconnect) and re-attach with
// Connect, by pid or tag, until the process exits, is killed, or its
// sandbox is paused or killed (which ends every command in it).
type processService struct {
	processpbconnect.UnimplementedProcessHandler
	e *Envd
}

// procTable holds the processes started through Start that are still
// running, by sandbox and pid. Pids are Frost's handles, unique per
// server.
type procTable struct {
	mu    sync.Mutex
	next  uint32
	procs map[string]map[uint32]*proc
}

func newProcTable() *procTable {
	return &procTable{next: 1000, procs: map[string]map[uint32]*proc{}}
}

func (t *procTable) add(id string, p *proc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	p.pid = t.next
	if t.procs[id] == nil {
		t.procs[id] = map[uint32]*proc{}
	}
	t.procs[id][p.pid] = p
}

func (t *procTable) remove(id string, pid uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.procs[id], pid)
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
	pid   uint32
	tag   string
	cfg   *pb.ProcessConfig
	stdin *io.PipeWriter // nil without stdin
	kill  context.CancelFunc

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

func (p *proc) output(stdout bool) io.Writer {
	return writerFunc(func(b []byte) (int, error) {
		data := &pb.ProcessEvent_DataEvent{}
		if stdout {
			data.Output = &pb.ProcessEvent_DataEvent_Stdout{Stdout: bytesClone(b)}
		} else {
			data.Output = &pb.ProcessEvent_DataEvent_Stderr{Stderr: bytesClone(b)}
		}
		p.publish(item{ev: &pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: data}}}, false)
		return len(b), nil
	})
}

func bytesClone(b []byte) []byte { return append([]byte(nil), b...) }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Start runs a command: the stream carries start (the pid) first, then
// output, keepalives while quiet, and end.
func (s *processService) Start(ctx context.Context, req *connect.Request[pb.StartRequest], stream *connect.ServerStream[pb.StartResponse]) error {
	cfg := req.Msg.Process
	if cfg.GetCmd() == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("StartRequest needs process.cmd"))
	}
	if req.Msg.Pty != nil {
		return connect.NewError(connect.CodeUnimplemented, errors.New("PTYs are not supported by Frost yet (docs/E2B.md); run the command without one"))
	}
	id := sandboxID(ctx)
	ex := api.ExecRequest{Cmd: append([]string{cfg.Cmd}, cfg.Args...), Env: cfg.Envs, Cwd: cfg.GetCwd()}
	// The command's own timeout is the stream's (Connect-Timeout-Ms); the
	// stream ending otherwise does not end the command.
	if d, ok := ctx.Deadline(); ok {
		ex.Timeout = api.Duration(time.Until(d))
	}
	p := &proc{tag: req.Msg.GetTag(), cfg: cfg, subs: map[*sub]struct{}{}}
	var stdin io.Reader
	if req.Msg.GetStdin() {
		pr, pw := io.Pipe()
		stdin, p.stdin = pr, pw
	}
	runCtx, kill := context.WithCancel(context.WithoutCancel(ctx))
	p.kill = kill
	s.e.procs.add(id, p)
	first, _ := p.attach()
	go s.run(runCtx, id, p, ex, stdin)
	return follow(ctx, p, first, req.Header(), func(ev *pb.ProcessEvent) error { return stream.Send(&pb.StartResponse{Event: ev}) })
}

// run runs p to its end and publishes the end to its streams.
func (s *processService) run(ctx context.Context, id string, p *proc, ex api.ExecRequest, stdin io.Reader) {
	defer p.kill()
	code, timedOut, err := s.e.m.Exec(ctx, id, ex, stdin, p.output(true), p.output(false))
	if p.stdin != nil {
		p.stdin.CloseWithError(io.ErrClosedPipe)
	}
	s.e.procs.remove(id, p.pid)
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
	p, err := s.e.procs.find(sandboxID(ctx), req.Msg.Process)
	if err != nil {
		return err
	}
	sb, ok := p.attach()
	if !ok {
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("process %d has ended", p.pid))
	}
	return follow(ctx, p, sb, req.Header(), func(ev *pb.ProcessEvent) error { return stream.Send(&pb.ConnectResponse{Event: ev}) })
}

func (s *processService) List(ctx context.Context, _ *connect.Request[pb.ListRequest]) (*connect.Response[pb.ListResponse], error) {
	return connect.NewResponse(&pb.ListResponse{Processes: s.e.procs.list(sandboxID(ctx))}), nil
}

// SendSignal kills the process (SIGTERM and SIGKILL alike: the sandbox
// ends the command's process group).
func (s *processService) SendSignal(ctx context.Context, req *connect.Request[pb.SendSignalRequest]) (*connect.Response[pb.SendSignalResponse], error) {
	p, err := s.e.procs.find(sandboxID(ctx), req.Msg.Process)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	p.kill()
	return connect.NewResponse(&pb.SendSignalResponse{}), nil
}

func (s *processService) SendInput(ctx context.Context, req *connect.Request[pb.SendInputRequest]) (*connect.Response[pb.SendInputResponse], error) {
	p, err := s.e.procs.find(sandboxID(ctx), req.Msg.Process)
	if err != nil {
		return nil, err
	}
	in, ok := req.Msg.GetInput().GetInput().(*pb.ProcessInput_Stdin)
	if !ok {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("PTY input is not supported by Frost yet; send stdin"))
	}
	if p.stdin == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("the process was started without stdin"))
	}
	if _, err := p.stdin.Write(in.Stdin); err != nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("the process's stdin is closed"))
	}
	return connect.NewResponse(&pb.SendInputResponse{}), nil
}

func (s *processService) CloseStdin(ctx context.Context, req *connect.Request[pb.CloseStdinRequest]) (*connect.Response[pb.CloseStdinResponse], error) {
	p, err := s.e.procs.find(sandboxID(ctx), req.Msg.Process)
	if err != nil {
		return nil, err
	}
	if p.stdin != nil {
		p.stdin.Close()
	}
	return connect.NewResponse(&pb.CloseStdinResponse{}), nil
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
