//go:build !linux && !darwin

package wasm

func newRegion(size uint64) *region { return &region{mem: make([]byte, size), heap: true} }

func release(b []byte) { clear(b) }

func unmap(r *region) {}

func populate([]byte) {}
