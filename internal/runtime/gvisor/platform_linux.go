package gvisor

import "syscall"

func supported() error { return nil }

// unmountDetached unmounts path lazily: a mount still in use goes when
// its last user does.
func unmountDetached(path string) error { return syscall.Unmount(path, syscall.MNT_DETACH) }

// ownGroup starts a process in a process group of its own.
func ownGroup() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
