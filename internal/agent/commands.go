package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/frostdev/frost/api"
)

// server is init's command server: it runs commands for `frost agent
// run` and keeps them in its table until they exit.
type server struct {
	reaper *reaper

	mu    sync.Mutex
	procs map[int]*command
}

func newServer(rp *reaper) *server {
	return &server{reaper: rp, procs: map[int]*command{}}
}

// command is one running command of the table.
type command struct {
	// terminal is the master side of the terminal the command runs on
	// (nil: it runs on pipes); also its stdin until it ends.
	terminal *os.File

	mu       sync.Mutex
	info     api.Process // Stdin unused: see stdin; TTY kept current
	stdin    *os.File    // nil once closed
	watchers map[*lockedWriter]struct{}
	exit     *runExit // set when it has ended
	done     chan struct{}
}

// describe is the command as ps lists it.
func (c *command) describe() api.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	info := c.info
	info.Stdin = c.stdin != nil
	if info.TTY != nil {
		size := *info.TTY
		info.TTY = &size
	}
	return info
}

// resize sets the size of the command's terminal.
func (c *command) resize(size api.TTY) answer {
	if c.terminal == nil {
		return answer{Code: ExitNoTerminal, Error: fmt.Sprintf("command %d does not run on a terminal (start it with one to resize it)", c.info.Pid)}
	}
	if err := resizeTerminal(c.terminal, size); err != nil {
		return answer{Code: ExitFailure, Error: fmt.Sprintf("resize the terminal of command %d: %v", c.info.Pid, err)}
	}
	c.mu.Lock()
	c.info.TTY = &size
	c.mu.Unlock()
	return answer{}
}

// watch adds a client that receives the command's frames from now on; if
// the command has ended it returns its exit instead.
func (c *command) watch(w *lockedWriter) *runExit {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exit != nil {
		return c.exit
	}
	c.watchers[w] = struct{}{}
	return nil
}

func (c *command) unwatch(w *lockedWriter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.watchers, w)
}

// send writes a frame to every watcher, dropping those that are gone.
// Nobody watching: the output is dropped, so that the command never
// blocks on it.
func (c *command) send(typ byte, p []byte) {
	c.mu.Lock()
	ws := slices.Collect(maps.Keys(c.watchers))
	c.mu.Unlock()
	for _, w := range ws {
		if !w.frame(typ, p) {
			c.unwatch(w)
		}
	}
}

// end sends the exit to every watcher, the last frame they get.
func (c *command) end(x runExit) {
	c.mu.Lock()
	c.exit = &x
	ws := slices.Collect(maps.Keys(c.watchers))
	c.watchers = nil
	c.mu.Unlock()
	b, _ := json.Marshal(x)
	for _, w := range ws {
		w.frame(frameExit, b)
	}
	c.closeInput()
	close(c.done)
}

// input returns the command's standard input, nil once closed.
func (c *command) input() *os.File {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stdin
}

// closeInput closes the command's standard input; a write blocked on it
// (the command is not reading) returns.
func (c *command) closeInput() {
	c.mu.Lock()
	f := c.stdin
	c.stdin = nil
	c.mu.Unlock()
	if f != nil {
		f.Close()
	}
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

// handle serves one client's request.
func (s *server) handle(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 64<<10)
	w := &lockedWriter{w: conn}
	typ, p, err := readFrame(r)
	var req request
	if err != nil || typ != frameRequest || json.Unmarshal(p, &req) != nil {
		s.answer(w, answer{Code: ExitUsage, Error: "bad request"})
		return
	}
	switch req.Op {
	case "", "run":
		s.run(req, r, w)
	case "attach":
		s.attach(req, r, w)
	case "ps":
		s.mu.Lock()
		list := make([]api.Process, 0, len(s.procs))
		for _, c := range s.procs {
			list = append(list, c.describe())
		}
		s.mu.Unlock()
		slices.SortFunc(list, func(a, b api.Process) int { return a.Pid - b.Pid })
		b, _ := json.Marshal(list)
		s.answer(w, answer{Data: b})
	case "signal":
		c := s.find(req.Pid)
		if c == nil {
			s.answer(w, noProcess(req.Pid))
			return
		}
		// Its process group: what it started goes too.
		if err := killGroup(req.Pid, syscall.Signal(req.Signal)); err != nil {
			s.answer(w, answer{Code: ExitFailure, Error: fmt.Sprintf("signal %d to %d: %v", req.Signal, req.Pid, err)})
			return
		}
		s.answer(w, answer{})
	case "stdin":
		s.answer(w, s.feed(req, r))
	case "resize":
		c := s.find(req.Pid)
		switch {
		case c == nil:
			s.answer(w, noProcess(req.Pid))
		case req.TTY == nil || req.TTY.Check() != nil:
			s.answer(w, answer{Code: ExitUsage, Error: "bad resize request: no terminal size, or one out of range"})
		default:
			s.answer(w, c.resize(*req.TTY))
		}
	default:
		s.answer(w, answer{Code: ExitUsage, Error: fmt.Sprintf("unknown request %q", req.Op)})
	}
}

func (s *server) answer(w *lockedWriter, a answer) {
	b, _ := json.Marshal(a)
	w.frame(frameAnswer, b)
}

func noProcess(pid int) answer {
	return answer{Code: ExitNoProcess, Error: fmt.Sprintf("no running command with pid %d", pid)}
}

func (s *server) find(pid int) *command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[pid]
}

// run starts a command, sends the client its pid, output and exit, and
// feeds it the client's input. If the client goes, the command runs on:
// its input stays open for `stdin`, its output for whoever attaches.
func (s *server) run(req request, r *bufio.Reader, w *lockedWriter) {
	exit := func(x runExit) {
		b, _ := json.Marshal(x)
		w.frame(frameExit, b)
	}
	if len(req.Args) == 0 {
		exit(runExit{Code: ExitUsage, Error: "bad run request: no command"})
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
	cwd := req.Cwd
	if cwd == "" {
		cwd = "/"
	}
	// Checked here: a start that fails to change to it says only that
	// the command's file was not found.
	if fi, err := os.Stat(cwd); err != nil || !fi.IsDir() {
		why := "not a directory"
		if err != nil {
			why = errors.Unwrap(err).Error()
		}
		exit(runExit{Code: 126, Error: fmt.Sprintf("cwd %s: %s", cwd, why)})
		return
	}
	c := &command{
		info:     api.Process{Tag: req.Tag, Cmd: req.Args, Cwd: cwd, Env: req.Env},
		watchers: map[*lockedWriter]struct{}{w: {}},
		done:     make(chan struct{}),
	}
	sys := groupAttr(false) // its own process group (groupAttr)
	var (
		child   []*os.File // the command's ends
		outs    []*os.File // init's ends of its output
		inW     *os.File
		errOpen error
	)
	if req.TTY != nil {
		if err := req.TTY.Check(); err != nil {
			exit(runExit{Code: ExitUsage, Error: "bad run request: " + err.Error()})
			return
		}
		master, slave, err := openTerminal(*req.TTY)
		if err != nil {
			exit(runExit{Code: ExitFailure, Error: err.Error()})
			return
		}
		size := *req.TTY
		c.terminal, c.info.TTY = master, &size
		child, outs, inW = []*os.File{slave, slave, slave}, []*os.File{master}, master
		sys = groupAttr(true)
	} else {
		inR, w1, err1 := os.Pipe()
		outR, outW, err2 := os.Pipe()
		errR, errW, err3 := os.Pipe()
		child, outs, inW, errOpen = []*os.File{inR, outW, errW}, []*os.File{outR, errR}, w1, errors.Join(err1, err2, err3)
	}
	if errOpen != nil {
		for _, f := range append(append(child, outs...), inW) {
			f.Close() // those that opened (Close of a nil *os.File is an error, no more)
		}
		exit(runExit{Code: ExitFailure, Error: errOpen.Error()})
		return
	}
	proc, status, err := s.reaper.start(path, req.Args, &os.ProcAttr{Dir: cwd, Env: envList, Files: child, Sys: sys})
	for _, f := range child {
		f.Close()
	}
	if err != nil {
		inW.Close()
		for _, f := range outs {
			f.Close()
		}
		exit(runExit{Code: 126, Error: fmt.Sprintf("start %s: %v", req.Args[0], err)})
		return
	}
	c.info.Pid, c.stdin = proc.Pid, inW
	// In the table before the client learns the pid, so that whatever it
	// does with the pid finds the command.
	s.mu.Lock()
	s.procs[proc.Pid] = c
	s.mu.Unlock()
	w.frame(framePid, []byte(strconv.Itoa(proc.Pid)))
	// Input from the client until it ends it or goes away.
	go func() {
		for {
			typ, p, err := readFrame(r)
			if err != nil {
				c.unwatch(w)
				return
			}
			switch {
			case typ == frameKill:
				killGroup(proc.Pid, syscall.SIGKILL)
			case typ != frameStdin:
				c.unwatch(w)
				return
			case len(p) == 0:
				if c.terminal == nil { // a terminal's input stays open
					c.closeInput()
				}
			default:
				if in := c.input(); in != nil {
					in.Write(p) // the command stopped reading: drop it
				}
			}
		}
	}()
	// A terminal's output is the command's stdout; a read of it fails
	// (EIO) once nothing holds the terminal open.
	var copies sync.WaitGroup
	for i, f := range outs {
		typ := []byte{frameStdout, frameStderr}[i]
		copies.Add(1)
		go func() {
			defer copies.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := f.Read(buf)
				if n > 0 {
					c.send(typ, buf[:n])
				}
				if err != nil {
					return
				}
			}
		}()
	}
	ws := <-status
	// Reaped: out of the table at once (no longer listed, signalled or
	// fed), though its watchers get the rest of its output and its exit.
	s.mu.Lock()
	if s.procs[proc.Pid] == c { // its pid may already be a new command's
		delete(s.procs, proc.Pid)
	}
	s.mu.Unlock()
	// A background job may hold the output open forever: take what is
	// there, then let go.
	for _, f := range outs {
		f.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	}
	copies.Wait()
	for _, f := range outs {
		f.Close()
	}
	code := ws.ExitStatus()
	if ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	c.end(runExit{Code: code})
}

// attach sends the client a running command's pid, then its output from
// now on and its exit, until the one ends or the other goes.
func (s *server) attach(req request, r *bufio.Reader, w *lockedWriter) {
	c := s.find(req.Pid)
	if c == nil {
		s.answer(w, noProcess(req.Pid))
		return
	}
	w.frame(framePid, []byte(strconv.Itoa(req.Pid)))
	if x := c.watch(w); x != nil {
		b, _ := json.Marshal(x)
		w.frame(frameExit, b)
		return
	}
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for {
			if _, _, err := readFrame(r); err != nil {
				return
			}
		}
	}()
	select {
	case <-c.done:
	case <-gone:
		c.unwatch(w)
	}
}

// feed writes the client's input to a command's, and closes it if asked.
func (s *server) feed(req request, r *bufio.Reader) answer {
	c := s.find(req.Pid)
	var failed *answer
	switch {
	case c == nil:
		a := noProcess(req.Pid)
		failed = &a
	case req.Close && c.terminal != nil:
		failed = &answer{Code: ExitInputClosed, Error: fmt.Sprintf("command %d runs on a terminal, whose input does not close: send ^D (\\x04) for an end of file", req.Pid)}
	}
	for {
		typ, p, err := readFrame(r)
		if err != nil || typ != frameStdin {
			return answer{Code: ExitUsage, Error: "the input ended without its end"}
		}
		if len(p) == 0 {
			break
		}
		if failed != nil {
			continue // read it all, then say why
		}
		in := c.input()
		if in == nil {
			failed = &answer{Code: ExitInputClosed, Error: fmt.Sprintf("the input of command %d is closed", req.Pid)}
			continue
		}
		if _, err := in.Write(p); err != nil {
			failed = &answer{Code: ExitInputClosed, Error: fmt.Sprintf("the input of command %d is closed: %v", req.Pid, err)}
		}
	}
	if failed != nil {
		return *failed
	}
	if req.Close {
		c.closeInput()
	}
	return answer{}
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
