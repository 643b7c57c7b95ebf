package agent

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/frostdev/frost/api"
)

// Commands run as children of the sandbox's init, not of the runtime's
// exec: gVisor does not restore processes started by `runsc exec` (nor
// checkpoint a sandbox while an exec session is live), so a server an
// agent starts in the background must descend from PID 1 to survive a
// pause. `frost agent run -- CMD` is what the host execs: a short-lived
// client that asks init, over a Unix socket, to start CMD, relays its
// standard input, and writes init's frames (the command's pid, its output,
// its exit) to its own standard output for the host to decode (Output).
// When the client goes away (the host cut the stream, or paused the
// sandbox), the command keeps running, its input still open.
//
// init keeps a table of the commands it runs, by pid (commands.go): while
// one runs, `frost agent attach PID` follows its output from then on to
// its exit, `ps` lists the table, `signal PID SIG` signals the command's
// process group and `stdin PID` writes to its input. A command run with
// --tty runs on a pseudo-terminal init opens (terminal_linux.go), its
// output the terminal's, its input typed at it, `resize PID` its size. The table lives in
// init, so it is checkpointed with the sandbox: after a pause, on
// whichever node the sandbox resumes, its commands are listed and
// reachable as before.

// SocketPath is where init listens.
const SocketPath = "/run/frost-agent.sock"

// Frame types on the socket: a type byte, a 4-byte big-endian length, the
// payload.
const (
	frameRequest = 'R' // client → init: a request (JSON)
	frameStdin   = 'I' // client → init: input bytes; empty: end of input
	frameKill    = 'K' // client → init: kill the command (the host asked)
	framePid     = 'P' // init → client: the command's pid (decimal), first
	frameStdout  = 'O' // init → client
	frameStderr  = 'E' // init → client
	frameExit    = 'X' // init → client: a runExit (JSON), the last frame
	frameAnswer  = 'A' // init → client: an answer (JSON), the only frame
)

// maxFrame bounds a frame's payload.
const maxFrame = 1 << 20

// request is a client's first frame. Op is "run" (or empty), "attach",
// "ps", "signal", "stdin" or "resize".
type request struct {
	Op   string            `json:"op,omitempty"`
	Args []string          `json:"args,omitempty"`
	Cwd  string            `json:"cwd,omitempty"`
	Env  map[string]string `json:"env,omitempty"`
	Tag  string            `json:"tag,omitempty"`
	// Pid names the command of attach, signal and stdin.
	Pid    int `json:"pid,omitempty"`
	Signal int `json:"signal,omitempty"`
	// Close, for stdin: close the command's input after the bytes.
	Close bool `json:"close,omitempty"`
	// TTY, for run: run the command on a terminal of this size; for
	// resize: the terminal's new size.
	TTY *api.TTY `json:"tty,omitempty"`
}

type runExit struct {
	Code  int    `json:"code"`
	Error string `json:"error,omitempty"`
}

// answer is init's reply to ps, signal and stdin, and to an attach it
// refuses: Code is an agent exit code.
type answer struct {
	Code  int             `json:"code"`
	Error string          `json:"error,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
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

// frame writes a frame and reports whether the client is still there.
func (l *lockedWriter) frame(typ byte, p []byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.broken {
		return false
	}
	if err := writeFrame(l.w, typ, p); err != nil {
		l.broken = true
	}
	return !l.broken
}

// initSocket is SocketPath, but for tests.
var initSocket = SocketPath

// send connects to init's socket and sends req.
func (req request) send() (net.Conn, error) {
	var c net.Conn
	var err error
	for i := 0; i < 50; i++ { // init may still be starting
		if c, err = net.Dial("unix", initSocket); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("the sandbox's init does not answer: %w", err)
	}
	b, _ := json.Marshal(req)
	if err := writeFrame(c, frameRequest, b); err != nil {
		c.Close()
		return nil, fmt.Errorf("the sandbox's init: %w", err)
	}
	return c, nil
}

// runClient is `frost agent run [--cwd DIR] [--env K=V]... [--tag T]
// [--tty COLSxROWS] -- CMD...`: its standard output carries init's
// frames, from the pid to the exit, for Output to decode.
func runClient(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	req := request{Env: map[string]string{}}
	for len(args) > 0 && args[0] != "--" {
		switch {
		case args[0] == "--cwd" && len(args) > 1:
			req.Cwd, args = args[1], args[2:]
		case args[0] == "--tag" && len(args) > 1:
			req.Tag, args = args[1], args[2:]
		case args[0] == "--tty" && len(args) > 1:
			size, err := api.ParseTTY(args[1])
			if err != nil {
				return fail(stderr, ExitUsage, "--tty: "+err.Error())
			}
			req.TTY, args = &size, args[2:]
		case args[0] == "--env" && len(args) > 1:
			k, v, ok := strings.Cut(args[1], "=")
			if !ok {
				return fail(stderr, ExitUsage, fmt.Sprintf("--env %q: want K=V", args[1]))
			}
			req.Env[k], args = v, args[2:]
		default:
			return fail(stderr, ExitUsage, fmt.Sprintf("agent run: unexpected %q; usage: frost agent run [--cwd DIR] [--env K=V]... [--tag T] [--tty COLSxROWS] -- CMD...", args[0]))
		}
	}
	if len(args) < 2 {
		return fail(stderr, ExitUsage, "agent run: no command after --")
	}
	req.Args = args[1:]
	c, err := req.send()
	if err != nil {
		return fail(stderr, ExitFailure, err.Error())
	}
	defer c.Close()
	w := &lockedWriter{w: c}
	// The host stops a command by signalling this client (runsc kill
	// --pid): pass it on to init, which kills the command's process group.
	// In band at first (init may not have started it yet), and by a
	// connection of its own once the pid is known: on this one the kill
	// may wait behind input that the command is not reading.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	started := make(chan int, 1)
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-stop:
		case <-finished:
			return
		}
		go w.frame(frameKill, nil)
		select {
		case pid := <-started:
			if k, err := (request{Op: "signal", Pid: pid, Signal: int(syscall.SIGKILL)}).send(); err == nil {
				readFrame(k) // its answer: done, or the command had ended
				k.Close()
			}
		case <-finished:
		}
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
	// init closes the socket after the exit frame.
	r := bufio.NewReaderSize(c, 64<<10)
	typ, p, err := readFrame(r)
	if err != nil {
		return fail(stderr, ExitFailure, "the sandbox's init closed the stream: "+err.Error())
	}
	if typ == framePid {
		if pid, err := strconv.Atoi(string(p)); err == nil && pid > 0 {
			started <- pid
		}
	}
	if err := writeFrame(stdout, typ, p); err != nil {
		return ExitFailure
	}
	if _, err := io.Copy(stdout, r); err != nil {
		return fail(stderr, ExitFailure, "relaying the command's output: "+err.Error())
	}
	return ExitOK
}

// attachClient is `frost agent attach PID`: init's frames for the
// command, from its pid and its output from now on to its exit, on
// standard output (as run's).
func attachClient(pid int, stdout, stderr io.Writer) int {
	c, err := request{Op: "attach", Pid: pid}.send()
	if err != nil {
		return fail(stderr, ExitFailure, err.Error())
	}
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	typ, p, err := readFrame(r)
	if err != nil {
		return fail(stderr, ExitFailure, "the sandbox's init closed the stream: "+err.Error())
	}
	if typ != framePid {
		return answered(typ, p, stdout, stderr)
	}
	if err := writeFrame(stdout, typ, p); err != nil {
		return ExitFailure
	}
	if _, err := io.Copy(stdout, r); err != nil {
		return fail(stderr, ExitFailure, "relaying the command's output: "+err.Error())
	}
	return ExitOK
}

// askClient sends init one request (ps, signal, stdin with input from
// in) and writes its answer's data to stdout.
func askClient(req request, in io.Reader, stdout, stderr io.Writer) int {
	c, err := req.send()
	if err != nil {
		return fail(stderr, ExitFailure, err.Error())
	}
	defer c.Close()
	if in != nil {
		buf := make([]byte, 32<<10)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if werr := writeFrame(c, frameStdin, buf[:n]); werr != nil {
					break // init answers why
				}
			}
			if err != nil {
				writeFrame(c, frameStdin, nil)
				break
			}
		}
	}
	typ, p, err := readFrame(bufio.NewReader(c))
	if err != nil {
		return fail(stderr, ExitFailure, "the sandbox's init closed the stream: "+err.Error())
	}
	return answered(typ, p, stdout, stderr)
}

// answered turns init's answer into output and an exit code.
func answered(typ byte, p []byte, stdout, stderr io.Writer) int {
	var a answer
	if typ != frameAnswer || json.Unmarshal(p, &a) != nil {
		// An init from before process control answers every request as
		// a run, and refuses it.
		return fail(stderr, ExitFailure, "the sandbox's init does not know this request: it was started by an older Frost (restart the sandbox from a template built by this one)")
	}
	if a.Code != ExitOK {
		return fail(stderr, a.Code, a.Error)
	}
	if len(a.Data) > 0 {
		stdout.Write(append(a.Data, '\n'))
	}
	return ExitOK
}

// processVerb runs ps, attach, signal, stdin and resize.
func processVerb(verb string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if verb == "ps" {
		return askClient(request{Op: "ps"}, nil, stdout, stderr)
	}
	usage := map[string]string{"attach": "attach PID", "signal": "signal PID SIGNAL", "stdin": "stdin PID [--close]", "resize": "resize PID COLSxROWS"}[verb]
	if len(args) == 0 {
		return fail(stderr, ExitUsage, "usage: frost agent "+usage)
	}
	pid, err := strconv.Atoi(args[0])
	if err != nil || pid <= 0 {
		return fail(stderr, ExitUsage, fmt.Sprintf("pid %q is not a positive number", args[0]))
	}
	switch verb {
	case "attach":
		return attachClient(pid, stdout, stderr)
	case "signal":
		if len(args) != 2 {
			return fail(stderr, ExitUsage, "usage: frost agent "+usage)
		}
		sig, err := ParseSignal(args[1])
		if err != nil {
			return fail(stderr, ExitUsage, err.Error())
		}
		return askClient(request{Op: "signal", Pid: pid, Signal: int(sig)}, nil, stdout, stderr)
	case "resize":
		if len(args) != 2 {
			return fail(stderr, ExitUsage, "usage: frost agent "+usage)
		}
		size, err := api.ParseTTY(args[1])
		if err != nil {
			return fail(stderr, ExitUsage, err.Error())
		}
		return askClient(request{Op: "resize", Pid: pid, TTY: &size}, nil, stdout, stderr)
	}
	closeIn := len(args) == 2 && args[1] == "--close"
	if len(args) > 2 || len(args) == 2 && !closeIn {
		return fail(stderr, ExitUsage, "usage: frost agent "+usage)
	}
	return askClient(request{Op: "stdin", Pid: pid, Close: closeIn}, stdin, stdout, stderr)
}

// signals are the names ParseSignal knows, with Linux's numbers: they go
// to a sandbox's kernel (gVisor's is Linux's ABI) whatever the host is,
// and a Mac's SIGUSR1 (30) would be a Linux SIGPWR.
var signals = map[string]syscall.Signal{
	"HUP": 1, "INT": 2, "QUIT": 3, "KILL": 9,
	"USR1": 10, "USR2": 12, "TERM": 15,
	"CONT": 18, "STOP": 19,
}

// ParseSignal reads a signal by name (TERM, SIGTERM) or number (1-31).
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= 31 {
		return syscall.Signal(n), nil
	}
	if sig, ok := signals[strings.TrimPrefix(strings.ToUpper(s), "SIG")]; ok {
		return sig, nil
	}
	return 0, fmt.Errorf("signal %q: want a name (TERM, KILL, INT, HUP, QUIT, USR1, USR2, STOP, CONT) or a number 1-31", s)
}

// Output decodes the frames `frost agent run` and `attach` write to their
// standard output: it calls Started with the command's pid, passes its
// output on to Stdout and Stderr (nil: dropped), and keeps its exit.
type Output struct {
	Stdout, Stderr io.Writer
	Started        func(pid int)

	buf  []byte
	exit *runExit
	err  error
}

// Write takes the frames as they come, in pieces of any size.
func (o *Output) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	o.buf = append(o.buf, p...)
	for len(o.buf) >= 5 {
		n := binary.BigEndian.Uint32(o.buf[1:5])
		if n > maxFrame {
			o.err = fmt.Errorf("the command's relay sent a frame of %d bytes", n)
			return 0, o.err
		}
		if len(o.buf) < 5+int(n) {
			break
		}
		typ, body := o.buf[0], o.buf[5:5+n]
		if err := o.frame(typ, body); err != nil {
			o.err = err
			return 0, err
		}
		o.buf = o.buf[5+n:]
	}
	if len(o.buf) == 0 {
		o.buf = o.buf[:0:0] // let a large frame's buffer go
	}
	return len(p), nil
}

func (o *Output) frame(typ byte, body []byte) error {
	if o.exit != nil {
		return errors.New("the command's relay sent frames after its exit")
	}
	switch typ {
	case framePid:
		pid, err := strconv.Atoi(string(body))
		if err != nil || pid <= 0 {
			return fmt.Errorf("the command's relay sent pid %q", body)
		}
		if o.Started != nil {
			o.Started(pid)
		}
	case frameStdout:
		if o.Stdout != nil {
			o.Stdout.Write(body)
		}
	case frameStderr:
		if o.Stderr != nil {
			o.Stderr.Write(body)
		}
	case frameExit:
		var x runExit
		if err := json.Unmarshal(body, &x); err != nil {
			return errors.New("the command's relay sent a malformed exit")
		}
		o.exit = &x
	default:
		return fmt.Errorf("the command's relay sent a frame of type %q", typ)
	}
	return nil
}

// Exit returns the command's exit code and, where init could not start
// it, why; ok is false until the exit has come.
func (o *Output) Exit() (code int, msg string, ok bool) {
	if o.exit == nil {
		return 0, "", false
	}
	return o.exit.Code, o.exit.Error, true
}
