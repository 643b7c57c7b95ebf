//go:build linux

package agent

import (
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// initLoop is PID 1 of a sandbox: it serves `frost agent run` on
// SocketPath, starting commands as its own children, and reaps every
// process that ends up its child (background jobs an agent started with
// `&` included), so none lingers as a zombie. It never returns.
func initLoop() int {
	if err := useNameServer("/etc/resolv.conf"); err != nil {
		os.Stderr.WriteString("frost agent init: " + err.Error() + "\n")
	}
	rp := &reaper{waiting: map[int]chan syscall.WaitStatus{}, unclaimed: map[int]syscall.WaitStatus{}}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, syscall.SIGCHLD)
	os.Remove(SocketPath)
	if ln, err := net.Listen("unix", SocketPath); err == nil {
		go newServer(rp).serve(ln)
	} else {
		os.Stderr.WriteString("frost agent init: " + err.Error() + "\n")
	}
	for range sigs {
		rp.reap()
	}
	return ExitOK
}

// reaper collects children's exit statuses and hands those of commands
// the server started to their waiters.
type reaper struct {
	mu        sync.Mutex
	waiting   map[int]chan syscall.WaitStatus
	unclaimed map[int]syscall.WaitStatus // reaped before start registered them
}

// start starts a process and returns a channel that receives its status.
func (rp *reaper) start(path string, args []string, attr *os.ProcAttr) (*os.Process, <-chan syscall.WaitStatus, error) {
	ch := make(chan syscall.WaitStatus, 1)
	rp.mu.Lock()
	defer rp.mu.Unlock()
	p, err := os.StartProcess(path, args, attr)
	if err != nil {
		return nil, nil, err
	}
	if ws, ok := rp.unclaimed[p.Pid]; ok {
		delete(rp.unclaimed, p.Pid)
		ch <- ws
	} else {
		rp.waiting[p.Pid] = ch
	}
	return p, ch, nil
}

// reap collects every child that has exited.
func (rp *reaper) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		rp.mu.Lock()
		if ch, ok := rp.waiting[pid]; ok {
			delete(rp.waiting, pid)
			ch <- ws
		} else if len(rp.unclaimed) < 4096 {
			// Most are orphans nobody waits for; one may be a command
			// whose start has not registered it yet.
			rp.unclaimed[pid] = ws
		}
		rp.mu.Unlock()
	}
}

// killGroup sends sig to the process group a command leads: what it
// started goes too.
func killGroup(pid int, sig syscall.Signal) error { return syscall.Kill(-pid, sig) }

// groupAttr puts a command in a process group of its own, so that a kill
// reaches what it started too; on a terminal, in a session of its own
// with the terminal (its descriptor 0) as the controlling one.
func groupAttr(terminal bool) *syscall.SysProcAttr {
	if terminal {
		return &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	return &syscall.SysProcAttr{Setpgid: true}
}
