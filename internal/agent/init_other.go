//go:build !linux

package agent

func initLoop() int { select {} }
