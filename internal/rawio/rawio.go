// Package rawio makes a TCP connection's reads and writes as raw
// non-blocking system calls, out of the Go runtime's sight.
//
// Go makes every socket read and write through syscall.Syscall, which
// tells the scheduler the goroutine may block: the P is left for
// another thread to take, and the runtime's monitor (sysmon) takes it
// when the call lasts more than a tick (20 µs) and no P is idle,
// starting or waking a thread to run it. A socket in non-blocking mode,
// as every one in package net is, never blocks: a call that cannot go on
// returns EAGAIN and the goroutine waits in the network poller, as it
// does here too.
// But a loopback write that wakes its reader can take tens of µs on a
// busy or virtualized machine, and then each hand-off is a thread woken
// for nothing; on the 2-core test VM a gateway spent a third of its
// CPU on them (see BENCHMARKS.md, issue 6). Wrap makes the same calls
// with syscall.RawSyscall through the connection's syscall.RawConn: the
// goroutine keeps its P for the few µs a call takes, the poller,
// deadlines and Close work as before.
//
// FROST_RAWIO=0 in the environment turns it off (Wrap returns the
// connection as it is), to compare the two.
package rawio

import (
	"net"
	"os"
)

// enabled says whether Wrap wraps: the platform has raw calls and
// FROST_RAWIO is not "0".
var enabled = supported && os.Getenv("FROST_RAWIO") != "0"

// Wrap returns c with raw reads and writes when it is a *net.TCPConn
// (and raw calls are on), else c itself. Everything else, deadlines,
// CloseWrite, ReadFrom (sendfile, splice) included, is the TCPConn's own.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !enabled {
		return c
	}
	return wrap(tc)
}

// Listener returns ln, its accepted connections wrapped.
func Listener(ln net.Listener) net.Listener {
	if !enabled {
		return ln
	}
	return listener{ln}
}

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
