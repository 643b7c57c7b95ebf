//go:build !linux

package wasm

// Thread priorities are only changed on Linux.

func reniceBase() (int, bool) { return 0, false }

func (f *fair) lower() bool { return false }

func (f *fair) raise() {}
