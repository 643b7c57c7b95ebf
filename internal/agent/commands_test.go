//go:build linux

package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testtool"
)

// startInit serves init's socket from this process, as init does in a
// sandbox, and reaps the commands' exits.
func startInit(t *testing.T) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	old := initSocket
	initSocket = sock
	t.Cleanup(func() { initSocket = old })
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	rp := &reaper{waiting: map[int]chan syscall.WaitStatus{}, unclaimed: map[int]syscall.WaitStatus{}}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, syscall.SIGCHLD)
	stop := make(chan struct{})
	t.Cleanup(func() { signal.Stop(sigs); close(stop) })
	go func() {
		tick := time.NewTicker(50 * time.Millisecond) // a signal may be coalesced away
		defer tick.Stop()
		for {
			select {
			case <-sigs:
			case <-tick.C:
			case <-stop:
				return
			}
			rp.reap()
		}
	}()
	go newServer(rp).serve(ln)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for i := 0; !ok(); i++ {
		if i > 500 {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCommandTable: a command outlives the client that started it, its
// input still open; ps lists it, stdin feeds it, attach follows it from
// then on, signal ends it, and then it is gone from the table.
func TestCommandTable(t *testing.T) {
	startInit(t)
	// A client that starts a command and goes away, as a detached one.
	c, err := request{Args: []string{"sh", "-c", "echo first; while read x; do echo got $x; done; echo eof"}, Tag: "repl", Env: map[string]string{"K": "v"}, Cwd: "/tmp"}.send()
	if err != nil {
		t.Fatal(err)
	}
	typ, p, err := readFrame(c)
	if err != nil || typ != framePid {
		t.Fatalf("first frame %q %q %v, want the pid", typ, p, err)
	}
	pid, _ := strconv.Atoi(string(p))
	if typ, p, _ := readFrame(c); typ != frameStdout || string(p) != "first\n" {
		t.Fatalf("then %q %q, want the first output", typ, p)
	}
	c.Close()

	out, errOut, code := run(t, "", "ps")
	var list []api.Process
	if code != ExitOK || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
		t.Fatalf("ps: %d %q %s", code, out, errOut)
	}
	if p := list[0]; p.Pid != pid || p.Tag != "repl" || p.Cmd[0] != "sh" || p.Cwd != "/tmp" || p.Env["K"] != "v" || !p.Stdin {
		t.Fatalf("ps lists %+v", p)
	}

	// attach follows it from now on.
	seen := &testtool.SyncBuffer{}
	dec := &Output{Stdout: seen, Started: func(p int) {
		if p != pid {
			t.Errorf("attach started %d, want %d", p, pid)
		}
	}}
	attached := make(chan int, 1)
	decoded := make(chan struct{})
	go func() {
		pr, pw := io.Pipe()
		go func() { io.Copy(dec, pr); close(decoded) }()
		attached <- Main([]string{"attach", strconv.Itoa(pid)}, nil, pw, io.Discard)
		pw.Close()
	}()
	time.Sleep(100 * time.Millisecond) // attached before the input below
	if _, e, code := run(t, "one\n", "stdin", strconv.Itoa(pid)); code != ExitOK {
		t.Fatalf("stdin: %d %s", code, e)
	}
	waitFor(t, "the attached output", func() bool { return strings.Contains(seen.String(), "got one") })
	if strings.Contains(seen.String(), "first") {
		t.Fatalf("attach replayed earlier output: %q", seen.String())
	}
	// Closing its input ends it: the attached client gets the rest and
	// its exit.
	if _, e, code := run(t, "two\n", "stdin", strconv.Itoa(pid), "--close"); code != ExitOK {
		t.Fatalf("stdin --close: %d %s", code, e)
	}
	select {
	case code := <-attached:
		if code != ExitOK {
			t.Fatalf("attach exited %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("attach did not end with the command")
	}
	<-decoded
	if x, _, ok := dec.Exit(); !ok || x != 0 || !strings.Contains(seen.String(), "got two\neof\n") {
		t.Fatalf("attached: exit %d output %q", x, seen.String())
	}
	for _, verb := range [][]string{{"attach"}, {"signal", "TERM"}, {"stdin"}} {
		args := append([]string{verb[0], strconv.Itoa(pid)}, verb[1:]...)
		if _, e, code := run(t, "x", args...); code != ExitNoProcess || !strings.Contains(e, "no running command") {
			t.Errorf("%v after the exit: %d %s, want %d", args, code, e, ExitNoProcess)
		}
	}
	if out, _, _ := run(t, "", "ps"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("ps after the exit: %s", out)
	}
}

// TestReapedLeavesTheTable: a command is out of the table once it has
// exited, even while a background job it left holds its output open (and
// init still drains it).
func TestReapedLeavesTheTable(t *testing.T) {
	startInit(t)
	var pid int
	started := make(chan struct{})
	dec := &Output{Started: func(p int) { pid = p; close(started) }}
	done := make(chan int, 1)
	go func() {
		done <- runClient([]string{"--", "sh", "-c", "read x; (sleep 5 &); exit 0"}, strings.NewReader("go\n"), dec, io.Discard)
	}()
	<-started
	waitFor(t, "the command's exit", func() bool { return syscall.Kill(pid, 0) == syscall.ESRCH })
	if out, _, _ := run(t, "", "ps"); strings.Contains(out, fmt.Sprintf(`"pid":%d`, pid)) {
		t.Fatalf("ps right after the exit lists it: %s", out)
	}
	if _, e, code := run(t, "", "signal", strconv.Itoa(pid), "TERM"); code != ExitNoProcess {
		t.Fatalf("signal right after the exit: %d %s, want %d", code, e, ExitNoProcess)
	}
	<-done
}

// TestCommandSignal: signal reaches the command's process group; a
// command started without input refuses stdin.
func TestCommandSignal(t *testing.T) {
	startInit(t)
	var out bytes.Buffer
	var pid int
	dec := &Output{Stdout: &out, Started: func(p int) { pid = p }}
	done := make(chan int, 1)
	go func() { done <- runClient([]string{"--", "sh", "-c", "sleep 60 & wait"}, nil, dec, io.Discard) }()
	// Listed once it runs; its input closed once init has read the
	// client's end of it.
	waitFor(t, "the command, its input closed", func() bool {
		out, _, _ := run(t, "", "ps")
		return strings.Contains(out, `"pid"`) && !strings.Contains(out, `"stdin":true`)
	})
	list := []api.Process{}
	o, _, _ := run(t, "", "ps")
	json.Unmarshal([]byte(o), &list)
	if len(list) != 1 || list[0].Stdin {
		t.Fatalf("ps: %s (a command run without input has it closed)", o)
	}
	p := strconv.Itoa(list[0].Pid)
	if _, e, code := run(t, "x", "stdin", p); code != ExitInputClosed {
		t.Fatalf("stdin to a command without input: %d %s", code, e)
	}
	if _, e, code := run(t, "", "signal", p, "SIGTERM"); code != ExitOK {
		t.Fatalf("signal: %d %s", code, e)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the command outlived SIGTERM")
	}
	if x, _, ok := dec.Exit(); !ok || x != 128+int(syscall.SIGTERM) || pid != list[0].Pid {
		t.Fatalf("exit %d (%v), pid %d; want %d, %d", x, ok, pid, 128+int(syscall.SIGTERM), list[0].Pid)
	}
	if _, e, code := run(t, "", "signal", p, "BOGUS"); code != ExitUsage {
		t.Fatalf("an unknown signal: %d %s", code, e)
	}
}

// TestCommandTerminal: a command run with --tty has a terminal of that
// size as its controlling one and its standard streams; input typed at it
// is echoed and read; the end of the client's input leaves the terminal
// open; resize changes its size and tells the command (SIGWINCH); its
// input cannot be closed, and a command on pipes cannot be resized.
func TestCommandTerminal(t *testing.T) {
	startInit(t)
	seen := &testtool.SyncBuffer{}
	var pid int
	dec := &Output{Stdout: seen, Stderr: seen, Started: func(p int) { pid = p }}
	script := `tty; stty size; trap 'echo winch; stty size' WINCH; read x; echo "got:$x"; while :; do sleep 0.05; done`
	done := make(chan int, 1)
	go func() {
		done <- runClient([]string{"--tty", "100x30", "--tag", "term", "--", "bash", "-c", script}, strings.NewReader("hello\n"), dec, io.Discard)
	}()
	waitFor(t, "the terminal's output", func() bool { return strings.Contains(seen.String(), "got:hello") })
	out := seen.String()
	if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "30 100\r\n") || !strings.Contains(out, "hello\r\n") {
		t.Fatalf("on a terminal: %q (want its tty, its size 30 100, the input echoed, CRLF line ends)", out)
	}
	o, _, _ := run(t, "", "ps")
	var list []api.Process
	if json.Unmarshal([]byte(o), &list) != nil || len(list) != 1 || list[0].TTY == nil || *list[0].TTY != (api.TTY{Cols: 100, Rows: 30}) || !list[0].Stdin {
		t.Fatalf("ps: %s", o)
	}
	p := strconv.Itoa(pid)
	if _, e, code := run(t, "", "resize", p, "120x40"); code != ExitOK {
		t.Fatalf("resize: %d %s", code, e)
	}
	waitFor(t, "the new size", func() bool { return strings.Contains(seen.String(), "winch\r\n40 120\r\n") })
	if o, _, _ := run(t, "", "ps"); !strings.Contains(o, `"tty":{"cols":120,"rows":40}`) {
		t.Fatalf("ps after the resize: %s", o)
	}
	if _, e, code := run(t, "", "stdin", p, "--close"); code != ExitInputClosed || !strings.Contains(e, "terminal") {
		t.Fatalf("closing a terminal's input: %d %s", code, e)
	}
	if _, e, code := run(t, "", "resize", p, "0x10"); code != ExitUsage {
		t.Fatalf("resize to 0x10: %d %s", code, e)
	}
	// Input after the client's ended goes to the terminal still.
	if _, e, code := run(t, "\x03", "stdin", p); code != ExitOK {
		t.Fatalf("stdin: %d %s", code, e)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("^C on its terminal did not end the command")
	}
	if x, _, ok := dec.Exit(); !ok || x != 128+int(syscall.SIGINT) {
		t.Fatalf("after ^C: exit %d (%v), want %d", x, ok, 128+int(syscall.SIGINT))
	}

	// A command on pipes has no terminal to resize.
	c, err := request{Args: []string{"sleep", "60"}}.send()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if typ, p, err := readFrame(c); err != nil || typ != framePid {
		t.Fatalf("first frame %q %q %v", typ, p, err)
	} else if _, e, code := run(t, "", "resize", string(p), "80x24"); code != ExitNoTerminal {
		t.Fatalf("resize of a command on pipes: %d %s", code, e)
	}
	if _, e, code := run(t, "", "resize", "999999", "80x24"); code != ExitNoProcess {
		t.Fatalf("resize of no command: %d %s", code, e)
	}
}

// TestKillBehindUnreadInput: the host's kill reaches a command that has
// stopped reading its input while the client still has input for it
// (init's relay for that client is blocked writing it).
func TestKillBehindUnreadInput(t *testing.T) {
	startInit(t)
	started := make(chan int, 1)
	dec := &Output{Started: func(p int) { started <- p }}
	done := make(chan int, 1)
	go func() {
		done <- runClient([]string{"--", "sleep", "60"}, endless{}, dec, io.Discard)
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not start")
	}
	time.Sleep(200 * time.Millisecond) // the command's input pipe fills
	// What runsc kill --pid does to the client; runClient has taken
	// SIGTERM over (signal.Notify) before the pid came.
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the kill waited behind the input the command does not read")
	}
	if x, _, ok := dec.Exit(); !ok || x != 128+int(syscall.SIGKILL) {
		t.Fatalf("exit %d (%v), want %d", x, ok, 128+int(syscall.SIGKILL))
	}
}

// endless is input that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'y'
	}
	return len(p), nil
}

// TestOutputDecoder: frames split anywhere decode the same; garbage is
// refused.
func TestOutputDecoder(t *testing.T) {
	var frames bytes.Buffer
	writeFrame(&frames, framePid, []byte("42"))
	writeFrame(&frames, frameStdout, []byte("out"))
	writeFrame(&frames, frameStderr, []byte("err"))
	writeFrame(&frames, frameExit, []byte(`{"code":3}`))
	all := frames.Bytes()
	for step := 1; step <= len(all); step++ {
		var out, errb bytes.Buffer
		pid := 0
		o := &Output{Stdout: &out, Stderr: &errb, Started: func(p int) { pid = p }}
		for i := 0; i < len(all); i += step {
			if _, err := o.Write(all[i:min(i+step, len(all))]); err != nil {
				t.Fatal(err)
			}
		}
		code, _, ok := o.Exit()
		if pid != 42 || out.String() != "out" || errb.String() != "err" || !ok || code != 3 {
			t.Fatalf("step %d: pid %d out %q err %q exit %d %v", step, pid, out.String(), errb.String(), code, ok)
		}
	}
	if _, err := (&Output{}).Write([]byte("Zhello")); err == nil {
		t.Fatal("a frame of an unknown type was taken")
	}
}

// FuzzOutput: what a command's relay writes comes from inside a sandbox,
// so the host's decoder takes anything without panicking or holding more
// than a frame, and decodes it the same however the bytes are split.
func FuzzOutput(f *testing.F) {
	var frames bytes.Buffer
	writeFrame(&frames, framePid, []byte("42"))
	writeFrame(&frames, frameStdout, []byte("out"))
	writeFrame(&frames, frameStderr, []byte("err"))
	writeFrame(&frames, frameExit, []byte(`{"code":3,"error":"x"}`))
	f.Add(frames.Bytes(), uint8(1))
	f.Add(frames.Bytes(), uint8(7))
	f.Add([]byte("\x01\xff\xff\xff\xffx"), uint8(2))
	f.Add([]byte("P\x00\x00\x00\x02-1"), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		type result struct {
			out, err string
			pids     []int
			code     int
			msg      string
			exited   bool
			failed   bool
		}
		decode := func(step int) result {
			var r result
			var out, errb bytes.Buffer
			o := &Output{Stdout: &out, Stderr: &errb, Started: func(p int) { r.pids = append(r.pids, p) }}
			for i := 0; i < len(data) && !r.failed; i += step {
				_, err := o.Write(data[i:min(i+step, len(data))])
				r.failed = err != nil
				if len(o.buf) > 5+maxFrame {
					t.Fatalf("the decoder holds %d bytes", len(o.buf))
				}
			}
			r.out, r.err = out.String(), errb.String()
			r.code, r.msg, r.exited = o.Exit()
			return r
		}
		whole := decode(max(len(data), 1))
		split := decode(int(step%64) + 1)
		if !reflect.DeepEqual(whole, split) {
			t.Fatalf("whole %+v, split by %d %+v", whole, step%64+1, split)
		}
	})
}

// TestRunBadCwd: a command whose working directory is missing, or a
// file, does not start, and init says that about the directory (a start
// that failed to change to it would blame the command's file).
func TestRunBadCwd(t *testing.T) {
	startInit(t)
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o600)
	for cwd, want := range map[string]string{
		"/no/such/dir": "cwd /no/such/dir: no such file or directory",
		file:           "cwd " + file + ": not a directory",
	} {
		c, err := request{Args: []string{"true"}, Cwd: cwd}.send()
		if err != nil {
			t.Fatal(err)
		}
		typ, p, err := readFrame(c)
		c.Close()
		var x runExit
		if err != nil || typ != frameExit || json.Unmarshal(p, &x) != nil || x.Code != 126 || x.Error != want {
			t.Errorf("cwd %s: frame %q %s %v, want exit 126 %q", cwd, typ, p, err, want)
		}
	}
}
