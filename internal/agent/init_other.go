//go:build !linux

package agent

import (
	"errors"
	"os"
	"syscall"
)

func initLoop() int { select {} }

type reaper struct{}

func (rp *reaper) start(string, []string, *os.ProcAttr) (*os.Process, <-chan syscall.WaitStatus, error) {
	return nil, nil, errors.New("sandbox init runs on Linux only")
}
