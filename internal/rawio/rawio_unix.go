//go:build unix

package rawio

import (
	"cmp"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

const supported = true

// conn is a TCPConn whose Read and Write are raw calls. The calls'
// closures are made once: a buffer and the results travel in fields,
// under a mutex per direction (net.Conn allows concurrent calls).
type conn struct {
	*net.TCPConn
	rc syscall.RawConn

	rmu   sync.Mutex
	rbuf  []byte
	rn    int
	rerr  error
	readf func(fd uintptr) bool

	wmu    sync.Mutex
	wbuf   []byte
	wn     int
	werr   error
	writef func(fd uintptr) bool
}

func wrap(tc *net.TCPConn) net.Conn {
	rc, err := tc.SyscallConn()
	if err != nil {
		return tc
	}
	c := &conn{TCPConn: tc, rc: rc}
	c.readf, c.writef = c.read, c.write
	return c
}

func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil // as package net: no call at all
	}
	c.rmu.Lock()
	c.rbuf = p
	err := c.rc.Read(c.readf)
	n := c.rn
	err = cmp.Or(c.rerr, err) // the call's own error, else the poller's (a deadline, a closed connection)
	c.rbuf, c.rn, c.rerr = nil, 0, nil
	c.rmu.Unlock()
	if err != nil {
		return 0, c.opError("read", err)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// read is one read: true when it is done (data, end of stream or an
// error), false to wait for the socket to be readable.
func (c *conn) read(fd uintptr) bool {
	for {
		n, e := sysRead(fd, c.rbuf)
		switch e {
		case 0:
			c.rn = n
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.rerr = os.NewSyscallError("read", e)
			return true
		}
	}
}

func (c *conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	c.wbuf, c.wn = p, 0
	var err error
	if len(p) > 0 {
		err = c.rc.Write(c.writef)
	}
	n := c.wn
	err = cmp.Or(c.werr, err)
	c.wbuf, c.wn, c.werr = nil, 0, nil
	c.wmu.Unlock()
	if err != nil {
		return n, c.opError("write", err)
	}
	return n, nil
}

// write writes what is left of the buffer: true when all of it went or
// a call failed, false to wait for the socket to be writable.
func (c *conn) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		rest := c.wbuf[c.wn:]
		n, e := sysWrite(fd, rest)
		switch e {
		case 0:
			c.wn += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = os.NewSyscallError("write", e)
			return true
		}
	}
	return true
}

// opError is err as package net reports it: a *net.OpError with op,
// the poller's error unwrapped from its "raw-read" or "raw-write" one.
func (c *conn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
