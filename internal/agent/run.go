package agent

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Commands run as children of the sandbox's init, not of the runtime's
// exec: gVisor does not restore processes started by `runsc exec` (nor
// checkpoint a sandbox while an exec session is live), so a server an
// agent starts in the background must descend from PID 1 to survive a
// pause. `frost agent run -- CMD` is what the host execs: a short-lived
// client that asks init, over a Unix socket, to start CMD, and relays its
// standard input, output and error and its exit code. When the client goes
// away (the host cut the stream, or paused the sandbox), the command keeps
// running; its later output is dropped.

// SocketPath is where init listens.
const SocketPath = "/run/frost-agent.sock"

// Frame types on the socket: a type byte, a 4-byte big-endian length, the
// payload.
const (
	frameRequest = 'R' // client → init: a runRequest (JSON)
	frameStdin   = 'I' // client → init: input bytes; empty: end of input
	frameStdout  = 'O' // init → client
	frameStderr  = 'E' // init → client
	frameExit    = 'X' // init → client: a runExit (JSON), the last frame
	frameKill    = 'K' // client → init: kill the command (the host asked)
)

// maxFrame bounds a frame's payload.
const maxFrame = 1 << 20

type runRequest struct {
	Args []string          `json:"args"`
	Cwd  string            `json:"cwd,omitempty"`
	Env  map[string]string `json:"env,omitempty"`
}

type runExit struct {
	Code  int    `json:"code"`
	Error string `json:"error,omitempty"`
}

func writeFrame(w io.Writer, typ byte, p []byte) error {
	var h [5]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(len(p)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return h[0], p, err
}

// lockedWriter serialises frames from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
	// broken: the client is gone; later frames are dropped.
	broken bool
}

func (l *lockedWriter) frame(typ byte, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.broken {
		return
	}
	if err := writeFrame(l.w, typ, p); err != nil {
		l.broken = true
	}
}

// runClient is `frost agent run [--cwd DIR] [--env K=V]... -- CMD...`.
func runClient(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	req := runRequest{Env: map[string]string{}}
	for len(args) > 0 && args[0] != "--" {
		switch {
		case args[0] == "--cwd" && len(args) > 1:
			req.Cwd, args = args[1], args[2:]
		case args[0] == "--env" && len(args) > 1:
			k, v, ok := strings.Cut(args[1], "=")
			if !ok {
				return fail(stderr, ExitUsage, fmt.Sprintf("--env %q: want K=V", args[1]))
			}
			req.Env[k], args = v, args[2:]
		default:
			return fail(stderr, ExitUsage, fmt.Sprintf("agent run: unexpected %q; usage: frost agent run [--cwd DIR] [--env K=V]... -- CMD...", args[0]))
		}
	}
	if len(args) < 2 {
		return fail(stderr, ExitUsage, "agent run: no command after --")
	}
	req.Args = args[1:]
	var c net.Conn
	var err error
	for i := 0; i < 50; i++ { // init may still be starting
		if c, err = net.Dial("unix", SocketPath); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fail(stderr, ExitFailure, "the sandbox's init does not answer: "+err.Error())
	}
	defer c.Close()
	b, _ := json.Marshal(req)
	w := &lockedWriter{w: c}
	w.frame(frameRequest, b)
	// The host stops a command by signalling this client (runsc kill
	// --pid): pass it on to init, which kills the command's process group.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		w.frame(frameKill, nil)
	}()
	if stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := stdin.Read(buf)
				if n > 0 {
					w.frame(frameStdin, buf[:n])
				}
				if err != nil {
					w.frame(frameStdin, nil)
					return
				}
			}
		}()
	} else {
		w.frame(frameStdin, nil)
	}
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		typ, p, err := readFrame(r)
		if err != nil {
			return fail(stderr, ExitFailure, "the sandbox's init closed the command's stream: "+err.Error())
		}
		switch typ {
		case frameStdout:
			stdout.Write(p)
		case frameStderr:
			stderr.Write(p)
		case frameExit:
			var x runExit
			if err := json.Unmarshal(p, &x); err != nil {
				return fail(stderr, ExitFailure, "bad exit frame")
			}
			if x.Error != "" {
				return fail(stderr, ExitFailure, x.Error)
			}
			return x.Code
		}
	}
}

// server is init's command server.
type server struct {
	reaper *reaper
}

// serve accepts clients on the socket until it fails.
func (s *server) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go s.handle(c)
	}
}

// handle runs one client's command.
func (s *server) handle(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	w := &lockedWriter{w: c}
	exit := func(x runExit) {
		b, _ := json.Marshal(x)
		w.frame(frameExit, b)
	}
	typ, p, err := readFrame(r)
	var req runRequest
	if err != nil || typ != frameRequest || json.Unmarshal(p, &req) != nil || len(req.Args) == 0 {
		exit(runExit{Code: ExitUsage, Error: "bad run request"})
		return
	}
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	maps.Copy(env, req.Env)
	var envList []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		envList = append(envList, k+"="+env[k])
	}
	path, err := lookPath(req.Args[0], env["PATH"])
	if err != nil {
		exit(runExit{Code: 127, Error: err.Error()})
		return
	}
	inR, inW, err1 := os.Pipe()
	outR, outW, err2 := os.Pipe()
	errR, errW, err3 := os.Pipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		exit(runExit{Code: ExitFailure, Error: err.Error()})
		return
	}
	cwd := req.Cwd
	if cwd == "" {
		cwd = "/"
	}
	// Its own process group, so that a kill reaches what it started too.
	proc, status, err := s.reaper.start(path, req.Args, &os.ProcAttr{Dir: cwd, Env: envList, Files: []*os.File{inR, outW, errW}, Sys: &syscall.SysProcAttr{Setpgid: true}})
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		exit(runExit{Code: 126, Error: fmt.Sprintf("start %s: %v", req.Args[0], err)})
		return
	}
	// Input from the client until it ends it or goes away.
	go func() {
		defer inW.Close()
		for {
			typ, p, err := readFrame(r)
			if err != nil {
				return
			}
			if typ == frameKill {
				syscall.Kill(-proc.Pid, syscall.SIGKILL)
				continue
			}
			if typ != frameStdin {
				return
			}
			if len(p) == 0 {
				inW.Close()
				continue
			}
			if _, err := inW.Write(p); err != nil {
				// The command stopped reading; keep draining the client.
				continue
			}
		}
	}()
	var copies sync.WaitGroup
	for _, o := range []struct {
		f   *os.File
		typ byte
	}{{outR, frameStdout}, {errR, frameStderr}} {
		copies.Add(1)
		go func() {
			defer copies.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := o.f.Read(buf)
				if n > 0 {
					w.frame(o.typ, buf[:n])
				}
				if err != nil {
					return
				}
			}
		}()
	}
	ws := <-status
	// A background job may hold the output pipes open forever: take what
	// is there, then let go.
	outR.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	errR.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	copies.Wait()
	outR.Close()
	errR.Close()
	code := ws.ExitStatus()
	if ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	exit(runExit{Code: code})
}

// lookPath finds a command like a shell would, with the given PATH.
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found", name)
}
