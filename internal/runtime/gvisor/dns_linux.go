package gvisor

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
)

// The boxes' name server.
//
// Every box asks agent.NameServer, which the prerouting chain sends to
// this proxy on the host's loopback (route_localnet lets the packets
// through the box's link). The proxy knows which box asks by its address,
// and forwards the question to the host's name server. For a box allowed
// out to host names (Egress.AllowHosts), the addresses in the answer to
// an allowed name go into the box's allow set for as long as the answer
// lives, so the box reaches them; this is how Cilium's FQDN policies
// work, and it carries their caveat: an address is let through whatever
// name the box then uses it for (a CDN's address serves many). DNS is a
// way out too: a box that may not reach the host's name server itself
// (offline, or it is denied) gets answers for its allowed names only;
// the rest are REFUSED.

// Bounds on how long an allowed name's addresses stay let through: the
// answer's TTL, at least minAllow (a short TTL must outlive the connect
// that follows) and at most maxAllow.
const (
	minAllow = 30 * time.Second
	maxAllow = time.Hour
)

// maxQuestions bounds the questions the proxy works on at once: past it,
// a question over UDP is dropped (its resolver asks again) and one over
// TCP waits, so that a box asking without end holds no more.
const maxQuestions = 256

// dnsProxy answers boxes' DNS, over UDP and TCP on one loopback port.
type dnsProxy struct {
	n        *network
	upstream netip.AddrPort // the host's name server; invalid: none
	udp      net.PacketConn
	tcp      net.Listener
	port     uint16
	slots    chan struct{} // maxQuestions
	logger   *slog.Logger
}

// startDNS listens on a free loopback port for both protocols.
func startDNS(n *network, upstream netip.Addr, logger *slog.Logger) (*dnsProxy, error) {
	d := &dnsProxy{n: n, logger: logger, slots: make(chan struct{}, maxQuestions)}
	if upstream.IsValid() {
		d.upstream = netip.AddrPortFrom(upstream, 53)
	}
	var err error
	for range 20 {
		if d.udp, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		d.port = uint16(d.udp.LocalAddr().(*net.UDPAddr).Port)
		if d.tcp, err = net.Listen("tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), d.port).String()); err == nil {
			go d.serveUDP()
			go d.serveTCP()
			return d, nil
		}
		d.udp.Close() // the port is taken for TCP: another
	}
	return nil, err
}

func (d *dnsProxy) close() {
	d.udp.Close()
	d.tcp.Close()
}

func (d *dnsProxy) serveUDP() {
	buf := make([]byte, 65535)
	for {
		k, from, err := d.udp.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		select {
		case d.slots <- struct{}{}:
		default:
			continue // too many at once: dropped, asked again
		}
		q := append([]byte(nil), buf[:k]...)
		go func() {
			defer func() { <-d.slots }()
			if a := d.answer(q, from.(*net.UDPAddr).AddrPort().Addr().Unmap(), "udp"); a != nil {
				d.udp.WriteTo(a, from)
			}
		}()
	}
}

func (d *dnsProxy) serveTCP() {
	for {
		c, err := d.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go func() {
			defer c.Close()
			from := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			for {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				q, err := readTCPMessage(c)
				if err != nil {
					return
				}
				d.slots <- struct{}{}
				a := d.answer(q, from, "tcp")
				<-d.slots
				if a == nil || writeTCPMessage(c, a) != nil {
					return
				}
			}
		}()
	}
}

// readTCPMessage and writeTCPMessage frame DNS over TCP (RFC 1035 4.2.2).
func readTCPMessage(r io.Reader) ([]byte, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(n[:]))
	_, err := io.ReadFull(r, b)
	return b, err
}

func writeTCPMessage(w io.Writer, m []byte) error {
	_, err := w.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(m))), m...))
	return err
}

// answer answers query q from a box at addr: nil for none (not a box's,
// or not a question).
func (d *dnsProxy) answer(q []byte, addr netip.Addr, proto string) []byte {
	rid, e, ok := d.n.boxAt(addr)
	if !ok {
		return nil
	}
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	question, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.TrimSuffix(strings.ToLower(question.Name.String()), ".")
	allowed := slices.ContainsFunc(e.AllowHosts, func(pattern string) bool { return api.MatchHost(pattern, name) })
	if !d.upstream.IsValid() || !allowed && !reaches(e, d.upstream.Addr()) {
		return failure(h, question, dnsmessage.RCodeRefused)
	}
	a, err := d.ask(q, proto)
	if err != nil {
		return failure(h, question, dnsmessage.RCodeServerFailure)
	}
	if allowed {
		if err := d.allow(rid, a); err != nil {
			d.logger.Warn("an allowed name's addresses not let through", "container", rid, "name", name, "err", err)
			return failure(h, question, dnsmessage.RCodeServerFailure)
		}
	}
	return a
}

// askTimeouts are how long each try of a question over UDP waits for its
// answer: a datagram lost is asked again, as a resolver would, within the
// 5 s a sandbox's resolver waits for its own try.
var askTimeouts = []time.Duration{time.Second, 1500 * time.Millisecond, 2 * time.Second}

// ask sends q to the host's name server and returns its answer.
func (d *dnsProxy) ask(q []byte, proto string) ([]byte, error) {
	c, err := net.DialTimeout(proto, d.upstream.String(), 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if proto == "tcp" {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := writeTCPMessage(c, q); err != nil {
			return nil, err
		}
		return readTCPMessage(c)
	}
	buf := make([]byte, 65535)
	for _, wait := range askTimeouts {
		c.SetDeadline(time.Now().Add(wait))
		if _, err = c.Write(q); err != nil {
			return nil, err
		}
		for {
			var k int
			if k, err = c.Read(buf); err != nil {
				break
			}
			// The answer to this question (an earlier try's late answer
			// is the same one).
			if k >= 2 && len(q) >= 2 && buf[0] == q[0] && buf[1] == q[1] {
				return buf[:k], nil
			}
		}
	}
	return nil, err
}

// allow puts the IPv4 addresses of answer a into box rid's allow set.
func (d *dnsProxy) allow(rid string, a []byte) error {
	var p dnsmessage.Parser
	if _, err := p.Start(a); err != nil {
		return err
	}
	if err := p.SkipAllQuestions(); err != nil {
		return err
	}
	var elems []nftables.SetElement
	for {
		h, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return err
		}
		if h.Type != dnsmessage.TypeA {
			if err := p.SkipAnswer(); err != nil {
				return err
			}
			continue
		}
		r, err := p.AResource()
		if err != nil {
			return err
		}
		ttl := min(max(time.Duration(h.TTL)*time.Second, minAllow), maxAllow)
		elems = append(elems, nftables.SetElement{Key: r.A[:], Timeout: ttl})
	}
	if len(elems) == 0 {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return err
	}
	if err := c.SetAddElements(d.n.allowSet(rid), elems); err != nil {
		return err
	}
	return c.Flush()
}

// failure is an answer to question with rcode and nothing else.
func failure(h dnsmessage.Header, question dnsmessage.Question, rcode dnsmessage.RCode) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: rcode})
	b.StartQuestions()
	b.Question(question)
	m, err := b.Finish()
	if err != nil {
		return nil
	}
	return m
}

// reaches says whether egress e lets a box connect to addr: the order
// egressRules' chain decides in (allow, offline, deny).
func reaches(e registry.Egress, addr netip.Addr) bool {
	for _, p := range e.Allow {
		if p.Contains(addr) {
			return true
		}
	}
	if e.Offline {
		return false
	}
	for _, p := range e.Deny {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}
