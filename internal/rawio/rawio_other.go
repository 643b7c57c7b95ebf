//go:build !unix

package rawio

import "net"

const supported = false

func wrap(tc *net.TCPConn) net.Conn { return tc }
