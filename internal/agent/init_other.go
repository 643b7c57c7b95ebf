//go:build !linux

package agent

import (
	"errors"
	"os"
	"syscall"

	"github.com/frostdev/frost/api"
)

func initLoop() int {
	os.Stderr.WriteString("frost agent init: a sandbox's init runs on Linux only\n")
	return ExitFailure
}

type reaper struct{}

func (rp *reaper) start(string, []string, *os.ProcAttr) (*os.Process, <-chan syscall.WaitStatus, error) {
	return nil, nil, errors.New("sandbox init runs on Linux only")
}

func openTerminal(api.TTY) (master, slave *os.File, err error) {
	return nil, nil, errors.New("terminals in a sandbox: Linux only")
}

func resizeTerminal(*os.File, api.TTY) error {
	return errors.New("terminals in a sandbox: Linux only")
}

func killGroup(int, syscall.Signal) error { return errors.New("sandbox init runs on Linux only") }

func groupAttr(bool) *syscall.SysProcAttr { return nil }
