// Package vethns joins a network namespace to the host with a veth pair:
// the host end named by the caller, with the first address of a /30, the
// namespace's end as eth0 with the second and a default route through
// the host end. Sandbox networks (package gvisor) are made of them, and
// so are the tests' hosts beyond the machine (package testbox).
package vethns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrTaken: an interface on the host has the name asked for. Callers
// use the name as a lock across processes, and try another.
var ErrTaken = errors.New("vethns: the host end's name is taken")

// Join makes the pair, the host end named host, the namespace's end eth0
// in ns: base+1/30 on the host end, base+2/30 on eth0, eth0's default
// route through base+1; the host end and the namespace's lo and eth0 up.
func Join(host string, ns netns.NsHandle, base netip.Addr) error {
	err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns)})
	if errors.Is(err, unix.EEXIST) {
		return ErrTaken
	}
	if err != nil {
		return fmt.Errorf("veth pair %s: %w", host, err)
	}
	if err := configure(host, ns, base); err != nil {
		Remove(host)
		return err
	}
	return nil
}

func configure(host string, ns netns.NsHandle, base netip.Addr) error {
	gw, guest := base.Next(), base.Next().Next()
	l, err := netlink.LinkByName(host)
	if err == nil {
		err = netlink.AddrAdd(l, &netlink.Addr{IPNet: ipNet(gw)})
	}
	if err == nil {
		err = netlink.LinkSetUp(l)
	}
	if err != nil {
		return fmt.Errorf("veth %s: %w", host, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("veth %s: the namespace: %w", host, err)
	}
	defer h.Close()
	for _, name := range []string{"lo", "eth0"} {
		l, err := h.LinkByName(name)
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err == nil && name == "eth0" {
			if err = h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(guest)}); err == nil {
				a := gw.As4()
				err = h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: a[:]})
			}
		}
		if err != nil {
			return fmt.Errorf("veth %s: the namespace's %s: %w", host, name, err)
		}
	}
	return nil
}

// Remove deletes the pair whose host end is named host, both ends at once
// (a namespace's own teardown would leave them for a while), if it exists.
func Remove(host string) {
	if l, err := netlink.LinkByName(host); err == nil {
		netlink.LinkDel(l)
	}
}

func ipNet(a netip.Addr) *net.IPNet {
	b := a.As4()
	return &net.IPNet{IP: net.IP(b[:]), Mask: net.CIDRMask(30, 32)}
}
