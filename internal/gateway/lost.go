package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/frostdev/frost/internal/rawio"
	"github.com/frostdev/frost/internal/registry"
)

// A node can leave the membership two ways. One told to stop (SIGTERM)
// first says it is draining (registry.Node.Draining): it gets no new
// requests, finishes those it has, and then leaves. One that leaves
// without saying so lost its lease: it crashed, froze, lost power or its
// network. A crashed process's kernel resets its connections, but a
// frozen process or a machine without power answers nothing, and the
// requests in flight to it would wait for TCP to give up, minutes. So
// the gateway takes a node that lapsed for lost: it closes every
// connection it has to it (hop, HTTP/1.1, streams) and refuses new ones
// (until the node joins again, a minute at most: lostFor). A request
// whose connection is closed so is
// sent to the next node if it may be sent twice (idempotent, its body
// kept), else answered 502 saying the node was lost with it in flight.

// Why a node's connections were closed, or new ones refused: the node
// was lost (its membership lapsed), or it stopped answering (probe.go).
var (
	errNodeLost   = errors.New("the node left the cluster without draining")
	errNodeSilent = errors.New("the node stopped answering")
)

// nodeConn is a connection to a node, tracked so that it can be closed
// when the node is lost.
type nodeConn struct {
	net.Conn
	g         *Gateway
	addr      string
	lost      atomic.Bool // closed because the node was lost
	closeOnce sync.Once
}

func (c *nodeConn) Close() error {
	c.closeOnce.Do(func() { c.g.untrack(c) })
	return c.Conn.Close()
}

// ReadFrom and CloseWrite are the wrapped connection's, where it has
// them (sendfile and splice for bodies; half-closes).
func (c *nodeConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *nodeConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// wasLost says whether c is a node connection closed because its node
// was lost: what was sent on it may have been served, and must not be
// sent again on a new connection to the same node.
func wasLost(c net.Conn) bool {
	nc, ok := c.(*nodeConn)
	return ok && nc.lost.Load()
}

// conns tracks the gateway's connections to nodes by address.
type conns struct {
	mu   sync.Mutex
	open map[string]map[*nodeConn]struct{}
	// lost: addresses of lost nodes, and when and why they were lost;
	// dials to them fail for lostFor, or until a node joins at them.
	lost map[string]lostMark
}

type lostMark struct {
	at  time.Time
	why error // wraps errNodeLost or errNodeSilent
}

// lostFor is how long a lost node's addresses refuse dials: long enough
// for the transports' own second tries (a request not sent, a pooled
// connection found closed) to find the node gone rather than wait on it
// again, short enough that a node that comes back at other addresses
// leaves nothing behind.
const lostFor = time.Minute

// isLost says why addr is a lost node's (nil if it is not); under mu.
func (cs *conns) isLost(addr string) error {
	m, ok := cs.lost[addr]
	if !ok || time.Since(m.at) >= lostFor {
		return nil
	}
	return m.why
}

// dial connects to a node at addr, with raw socket calls if raw (package
// rawio), and tracks the connection; it fails at once for a lost node.
func (g *Gateway) dial(ctx context.Context, d *net.Dialer, network, addr string, raw bool) (net.Conn, error) {
	g.conns.mu.Lock()
	why := g.conns.isLost(addr)
	g.conns.mu.Unlock()
	if why != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: why}
	}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if raw {
		c = rawio.Wrap(c)
	}
	nc := &nodeConn{Conn: c, g: g, addr: addr}
	g.conns.mu.Lock()
	defer g.conns.mu.Unlock()
	if why := g.conns.isLost(addr); why != nil {
		// Lost while this dial was under way.
		c.Close()
		return nil, &net.OpError{Op: "dial", Net: network, Err: why}
	}
	if g.conns.open == nil {
		g.conns.open = map[string]map[*nodeConn]struct{}{}
	}
	set := g.conns.open[addr]
	if set == nil {
		set = map[*nodeConn]struct{}{}
		g.conns.open[addr] = set
	}
	set[nc] = struct{}{}
	return nc, nil
}

func (g *Gateway) untrack(c *nodeConn) {
	g.conns.mu.Lock()
	defer g.conns.mu.Unlock()
	if set := g.conns.open[c.addr]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(g.conns.open, c.addr)
		}
	}
}

// lose takes n for lost: its addresses refuse new connections and its
// connections close.
func (g *Gateway) lose(n registry.Node) {
	g.lost.Add(1) // first, as in unreachable
	closed := g.cut(n, fmt.Errorf("%w (its membership lapsed)", errNodeLost))
	g.cfg.Logger.Warn("gateway: node left without draining: taken for lost, its requests in flight end", "node", n.Name, "connections", closed)
}

// cut marks n's addresses lost for why and closes its connections; it
// returns how many it closed.
func (g *Gateway) cut(n registry.Node, why error) int {
	var closing []*nodeConn
	m := lostMark{at: time.Now(), why: why}
	g.conns.mu.Lock()
	if g.conns.lost == nil {
		g.conns.lost = map[string]lostMark{}
	}
	for addr := range g.conns.lost {
		if g.conns.isLost(addr) == nil {
			delete(g.conns.lost, addr)
		}
	}
	for _, addr := range []string{n.HTTPAddr, n.APIAddr} {
		g.conns.lost[addr] = m
		for c := range g.conns.open[addr] {
			closing = append(closing, c)
		}
	}
	g.conns.mu.Unlock()
	for _, c := range closing {
		c.lost.Store(true)
		c.Close()
	}
	return len(closing)
}

// found clears the marks of kind (errNodeLost: a node joined at these
// addresses; errNodeSilent: it passed a check) on n's addresses.
func (g *Gateway) found(n registry.Node, kind error) {
	g.conns.mu.Lock()
	defer g.conns.mu.Unlock()
	for _, addr := range []string{n.HTTPAddr, n.APIAddr} {
		if m, ok := g.conns.lost[addr]; ok && errors.Is(m.why, kind) {
			delete(g.conns.lost, addr)
		}
	}
}

// lostErr says, for a request whose attempt at node failed with err,
// that the node was lost with it in flight, when it was.
func (g *Gateway) lostErr(node string, addr string, err error) error {
	g.conns.mu.Lock()
	why := g.conns.isLost(addr)
	g.conns.mu.Unlock()
	if why == nil || errors.Is(err, why) {
		return err
	}
	return lostError{node, why, err}
}

// lostError is an attempt that ended because its node was lost; the
// connection's own error (use of a closed connection) says nothing more.
type lostError struct {
	node string
	why  error
	err  error
}

func (e lostError) Error() string {
	return fmt.Sprintf("%s: %v with the request in flight", e.node, e.why)
}

func (e lostError) Unwrap() []error { return []error{e.why, e.err} }

// dialTimeout bounds a connection to a node: a machine that is gone does
// not refuse, it does not answer.
const dialTimeout = 2 * time.Second
