//go:build linux

package agent

import (
	"os"
	"os/signal"
	"syscall"
)

// initLoop is PID 1 of a sandbox: it holds the sandbox open and reaps
// every orphaned process (background jobs an agent started with `&` end
// up its children), so none lingers as a zombie. It never returns.
func initLoop() int {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			continue // the runtime stops the sandbox, not a signal to init
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
	return ExitOK
}
