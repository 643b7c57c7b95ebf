//go:build !linux

package tests3

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }

// userXattrs is false off Linux: versitygw keeps metadata in a sidecar
// directory instead.
func userXattrs(string) bool { return false }
