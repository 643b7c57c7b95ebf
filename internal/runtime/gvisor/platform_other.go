//go:build !linux

package gvisor

import (
	"errors"
	goruntime "runtime"
	"syscall"
)

// errNotLinux is what New answers on any other system: the rest of Frost
// (WebAssembly apps, the CLI) runs there, agent sandboxes do not.
var errNotLinux = errors.New("gvisor: agent sandboxes need Linux (runsc runs on Linux only); this is " + goruntime.GOOS)

func supported() error { return errNotLinux }

func unmountDetached(string) error { return errNotLinux }

func ownGroup() *syscall.SysProcAttr { return nil }
