package testetcd

import "syscall"

// sysProcAttr makes etcd die with the test binary, even if it is killed.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
