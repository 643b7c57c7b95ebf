package tests3

import "syscall"

// sysProcAttr makes versitygw die with the test binary, even if it is killed.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// userXattrs reports whether dir's file system stores user extended
// attributes, where versitygw's posix backend keeps object metadata by
// default (tmpfs before Linux 6.6 and some overlay set-ups do not).
func userXattrs(dir string) bool {
	const name = "user.frost-probe"
	if err := syscall.Setxattr(dir, name, []byte("1"), 0); err != nil {
		return false
	}
	syscall.Removexattr(dir, name)
	return true
}
