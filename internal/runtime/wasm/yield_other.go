//go:build !linux

package wasm

// osYield gives the core to another thread waiting for it, if any.
func osYield() {}
