package gvisor

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/frostdev/frost/internal/agent"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/vethns"
)

// Sandbox networks.
//
// With Config.Network set, every box (and every spare) gets a network
// namespace of its own, bind-mounted at StateDir/netns/RID, holding one
// end of a veth pair as eth0 with the second address of a /30 from the
// pool; the host end, named frostSLOT, has the first and is the box's
// default gateway. runsc (--network=sandbox) takes eth0 over for gVisor's
// own network stack, so the host's kernel never handles the box's
// packets but as a router. The /30 is the box's slot: its interface name
// is the slot's lock across every process on the host (creating an
// interface that exists fails), so two Frost servers sharing a pool never
// share a slot.
//
// A checkpoint holds no address: `runsc restore` takes the network of the
// namespace it restores into, so a resume, or a fork, gets whatever slot
// is free, and listening sockets keep listening on the new address.
//
// One nftables table per runtime (frost_HASH of its state directory)
// holds the rules, built whole in one transaction at start (with the
// rules of the boxes a previous process left); then each box adds and
// removes only a chain of its own and the rule that jumps to it:
//   - input: a box reaches nothing on the host but its name server (its
//     DNS, DNATed there); replies to the host's own connections (the port
//     proxy's) come back;
//   - forward: nothing opens a connection into a box; a box reaches no
//     other box and no link-local address (cloud metadata); then each box's
//     own chain (its Egress) decides; the rest is let through;
//   - prerouting: DNS to agent.NameServer, the one address every box's
//     /etc/resolv.conf names (written by `frost agent init`), goes to the
//     boxes' name server on the host's loopback (dns_linux.go), which
//     asks the host's first IPv4 name server (hostNameServer);
//   - postrouting: what leaves the pool for elsewhere is masqueraded as
//     the host.
// The runtime turns IPv4 forwarding on (net.ipv4.ip_forward), as Docker
// does.

// TableFile, in StateDir/netns, names the runtime's nftables table.
const TableFile = "table"

// ifPrefix starts the host end's name of every box's veth pair.
const ifPrefix = "frost"

// network is the runtime's share of the host's network.
type network struct {
	pool   netip.Prefix
	dir    string // StateDir/netns
	table  *nftables.Table
	dns    netip.Addr // the host's name server; invalid: none to forward to
	proxy  *dnsProxy  // the boxes' name server (dns_linux.go)
	logger *slog.Logger

	mu    sync.Mutex
	links map[string]*link // by runsc ID
	// stats reads links' counters (counters); statsMu guards it.
	statsMu sync.Mutex
	stats   *netlink.Handle
	// dropping counts the removals under way in the background; gone has
	// each one's channel, closed when it is done, by runsc ID (a restore
	// without a spare reuses the ID its checkpoint had).
	dropping sync.WaitGroup
	gone     map[string]chan struct{}
}

// link is one box's network: its slot and what it may reach, kept in
// dir/RID.json so that the next process rebuilds its rules.
type link struct {
	Slot   int             `json:"slot"`
	Egress registry.Egress `json:"egress"`
}

// slots is how many /30s the pool holds.
func (n *network) slots() int { return 1 << (32 - n.pool.Bits() - 2) }

// addr returns the i-th address of slot's /30.
func (n *network) addr(slot, i int) netip.Addr {
	b := n.pool.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) + uint32(slot*4+i)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func ifName(slot int) string { return ifPrefix + strconv.Itoa(slot) }

// openNetwork prepares the host for boxes on pool: forwarding, and the
// runtime's table with the rules of every box a previous process left.
func openNetwork(pool netip.Prefix, stateDir, resolvConf string, logger *slog.Logger) (*network, error) {
	if resolvConf == "" {
		resolvConf = "/etc/resolv.conf"
	}
	if !pool.Addr().Is4() || pool.Bits() < 8 || pool.Bits() > 28 {
		return nil, fmt.Errorf("gvisor: sandbox network %s: an IPv4 range from /8 to /28", pool)
	}
	h := fnv.New32a()
	h.Write([]byte(stateDir))
	n := &network{
		pool:   pool.Masked(),
		dir:    filepath.Join(stateDir, "netns"),
		table:  &nftables.Table{Name: fmt.Sprintf("frost_%08x", h.Sum32()), Family: nftables.TableFamilyIPv4},
		dns:    hostNameServer(resolvConf),
		logger: logger,
		links:  map[string]*link{},
		gone:   map[string]chan struct{}{},
	}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return nil, fmt.Errorf("gvisor: %w", err)
	}
	// For whoever cleans up after a process that was killed (tests).
	if err := os.WriteFile(filepath.Join(n.dir, TableFile), []byte(n.table.Name), 0o600); err != nil {
		return nil, fmt.Errorf("gvisor: %w", err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return nil, fmt.Errorf("gvisor: sandbox network: turning on IPv4 forwarding: %w", err)
	}
	entries, _ := os.ReadDir(n.dir)
	for _, e := range entries {
		rid, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(n.dir, e.Name()))
		var l link
		if err == nil {
			err = json.Unmarshal(b, &l)
		}
		if err != nil {
			logger.Warn("a sandbox network's record is unreadable; removing it", "container", rid, "err", err)
			n.drop(rid, -1)
			continue
		}
		n.links[rid] = &l
	}
	if !n.dns.IsValid() {
		logger.Warn("the host has no IPv4 name server; sandboxes will resolve no names", "resolv.conf", resolvConf)
	}
	var err error
	if n.proxy, err = startDNS(n, n.dns, logger); err != nil {
		return nil, fmt.Errorf("gvisor: sandbox network: the sandboxes' name server: %w", err)
	}
	if err := n.build(); err != nil {
		n.proxy.close()
		return nil, err
	}
	// The boxes a previous process left ask this one's name server now,
	// on another port: their DNS flows to the old one go.
	for _, l := range n.links {
		forgetFlows(n.addr(l.Slot, 2), netip.MustParseAddr(agent.NameServer))
	}
	return n, nil
}

// hostNameServer returns the first IPv4 name server of a resolv.conf,
// which the boxes' name server asks (one on loopback, systemd-resolved's
// 127.0.0.53, as well as any).
func hostNameServer(path string) netip.Addr {
	b, err := os.ReadFile(path)
	if err != nil {
		return netip.Addr{}
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if a, err := netip.ParseAddr(f[1]); err == nil && a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// add makes the network of container rid: its namespace and veth pair in
// the first free slot, with Egress e. It returns the namespace's path.
func (n *network) add(rid string, e registry.Egress) (string, error) {
	n.mu.Lock()
	gone := n.gone[rid]
	n.mu.Unlock()
	if gone != nil {
		<-gone
	}
	nsPath := filepath.Join(n.dir, rid)
	// What a process killed before it wrote its record left at the path
	// (no box claims it: rid has no link) goes first.
	n.drop(rid, -1)
	ns, err := newNetns(nsPath)
	if err != nil {
		return "", fmt.Errorf("gvisor: sandbox network namespace: %w", err)
	}
	defer ns.Close()
	slot, err := n.claim(ns)
	if err != nil {
		n.drop(rid, -1)
		return "", err
	}
	// The kernel's connection tracking may still hold flows of the last
	// box on this address (another process's too): a DNS question from a
	// source port they used would follow them, to a name server gone.
	forgetFlows(n.addr(slot, 2))
	// The boxes' name server listens on loopback: the box's DNS, DNATed
	// there, must pass its link (the input chain takes nothing else).
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+ifName(slot)+"/route_localnet", []byte("1"), 0o644); err != nil {
		n.drop(rid, slot)
		return "", fmt.Errorf("gvisor: sandbox network: its DNS: %w", err)
	}
	l := &link{Slot: slot, Egress: e}
	if err := n.save(rid, l); err != nil {
		n.drop(rid, slot)
		return "", err
	}
	if err := n.hook(rid, *l); err != nil {
		n.drop(rid, slot)
		return "", err
	}
	n.mu.Lock()
	n.links[rid] = l
	n.mu.Unlock()
	return nsPath, nil
}

// forgetFlows drops the connection tracking entries of flows from addr
// (to dst alone, if valid).
func forgetFlows(addr netip.Addr, dst ...netip.Addr) {
	f := &netlink.ConntrackFilter{}
	b := addr.As4()
	if f.AddIP(netlink.ConntrackOrigSrcIP, net.IP(b[:])) != nil {
		return
	}
	for _, d := range dst {
		b := d.As4()
		if f.AddIP(netlink.ConntrackOrigDstIP, net.IP(b[:])) != nil {
			return
		}
	}
	netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, f)
}

// claim joins ns to the host in the first slot whose host end's name no
// interface on the host has.
func (n *network) claim(ns netns.NsHandle) (int, error) {
	n.mu.Lock()
	taken := map[int]bool{}
	for _, l := range n.links {
		taken[l.Slot] = true
	}
	n.mu.Unlock()
	for slot := range n.slots() {
		if taken[slot] {
			continue
		}
		err := vethns.Join(ifName(slot), ns, n.addr(slot, 0))
		if errors.Is(err, vethns.ErrTaken) {
			continue // another box's, maybe another process's
		}
		if err != nil {
			return 0, fmt.Errorf("gvisor: sandbox network: %w", err)
		}
		return slot, nil
	}
	return 0, fmt.Errorf("gvisor: sandbox network %s is full (%d sandboxes)", n.pool, n.slots())
}

func (n *network) save(rid string, l *link) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	path := filepath.Join(n.dir, rid+".json")
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		return fmt.Errorf("gvisor: %w", err)
	}
	return os.Rename(path+".tmp", path)
}

// setEgress changes what container rid's box may reach.
func (n *network) setEgress(rid string, e registry.Egress) error {
	n.mu.Lock()
	l, ok := n.links[rid]
	if ok {
		l.Egress = e
	}
	n.mu.Unlock()
	if !ok {
		return fmt.Errorf("gvisor: container %s has no network", rid)
	}
	if err := n.save(rid, l); err != nil {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("gvisor: nftables: %w", err)
	}
	ch := n.boxChain(rid)
	c.FlushChain(ch)
	n.egressRules(c, ch, rid, e)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("gvisor: sandbox network rules of %s: %w", rid, err)
	}
	return nil
}

// guest returns the address of container rid's box, if it has one.
func (n *network) guest(rid string) (netip.Addr, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l, ok := n.links[rid]
	if !ok {
		return netip.Addr{}, false
	}
	return n.addr(l.Slot, 2), true
}

// boxAt returns the container whose box has address addr, and its egress.
func (n *network) boxAt(addr netip.Addr) (string, registry.Egress, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for rid, l := range n.links {
		if n.addr(l.Slot, 2) == addr {
			return rid, l.Egress, true
		}
	}
	return "", registry.Egress{}, false
}

// counters returns the bytes container rid's box received and sent: its
// link's host end's, the other way round (what the host end sends, the
// box receives).
func (n *network) counters(rid string) (in, out int64) {
	n.mu.Lock()
	l, ok := n.links[rid]
	n.mu.Unlock()
	if !ok {
		return 0, 0
	}
	// One request on a netlink socket kept open: a new socket a call, or
	// the two sysfs files, cost three to four times as much.
	n.statsMu.Lock()
	defer n.statsMu.Unlock()
	if n.stats == nil {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return 0, 0
		}
		n.stats = h
	}
	link, err := n.stats.LinkByName(ifName(l.Slot))
	if err != nil || link.Attrs().Statistics == nil {
		return 0, 0
	}
	st := link.Attrs().Statistics
	return int64(st.TxBytes), int64(st.RxBytes)
}

// containers returns the runsc IDs of the containers with a network.
func (n *network) containers() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Collect(maps.Keys(n.links))
}

// remove frees container rid's network, if it has one, in the background
// (deleting a veth pair waits for the kernel's RCU grace periods, ~15 ms,
// which a pause need not wait for): its rules first, then the pair, whose
// name holds the slot until it is gone.
func (n *network) remove(rid string) {
	n.mu.Lock()
	l, ok := n.links[rid]
	delete(n.links, rid)
	done := make(chan struct{})
	if ok {
		n.gone[rid] = done
	}
	n.mu.Unlock()
	if !ok {
		return
	}
	n.dropping.Add(1)
	go func() {
		defer n.dropping.Done()
		defer func() {
			n.mu.Lock()
			delete(n.gone, rid)
			n.mu.Unlock()
			close(done)
		}()
		if err := n.unhook(rid); err != nil {
			n.logger.Warn("sandbox network rules not removed", "container", rid, "err", err)
		}
		n.drop(rid, l.Slot)
	}()
}

// wait waits for the removals under way.
func (n *network) wait() { n.dropping.Wait() }

// drop deletes slot's veth pair (both ends, at once: a namespace's own
// teardown is asynchronous, and the slot would stay taken meanwhile) and
// rid's namespace and record.
func (n *network) drop(rid string, slot int) {
	if slot >= 0 {
		vethns.Remove(ifName(slot))
	}
	path := filepath.Join(n.dir, rid)
	unix.Unmount(path, unix.MNT_DETACH)
	os.Remove(path)
	os.Remove(path + ".json")
}

// close removes the runtime's rules, unless boxes still run: they keep
// their networks and rules until the next process adopts them (or sweeps
// them away) and rebuilds the table.
func (n *network) close() error {
	n.proxy.close()
	n.wait()
	n.statsMu.Lock()
	if n.stats != nil {
		n.stats.Close()
		n.stats = nil
	}
	n.statsMu.Unlock()
	n.mu.Lock()
	left := len(n.links)
	n.mu.Unlock()
	if left > 0 {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return err
	}
	c.DelTable(n.table)
	return c.Flush()
}

// newNetns makes a network namespace and bind-mounts it at path. It is
// made on a thread of its own, which goes back to the process's
// namespace after (or is left to end with its goroutine if it cannot).
func newNetns(path string) (netns.NsHandle, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o600)
	if err != nil {
		return 0, err
	}
	f.Close()
	type result struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			ch <- result{err: err}
			return // the thread ends with the goroutine
		}
		// IPv4 only: no IPv6 address for runsc to take over (and for
		// gVisor to run duplicate address detection on). /proc/sys/net
		// is the opening thread's namespace's.
		os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0o644)
		err = unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "none", unix.MS_BIND, "")
		if err := netns.Set(orig); err == nil {
			goruntime.UnlockOSThread()
		}
		if err != nil {
			ns.Close()
			ch <- result{err: fmt.Errorf("bind-mount at %s: %w", path, err)}
			return
		}
		ch <- result{ns: ns}
	}()
	r := <-ch
	if r.err != nil {
		os.Remove(path)
	}
	return r.ns, r.err
}

// The table's base chains are made once, at start (replacing a base
// chain unregisters and registers its hook, a wait of its own for RCU:
// ~10 ms). A box adds a chain of its own and a rule in forward that jumps
// to it for packets from its interface (hook), in one transaction, and
// takes both out when it goes (unhook).

func (n *network) forwardChain() *nftables.Chain {
	return &nftables.Chain{Name: "forward", Table: n.table}
}

func (n *network) preroutingChain() *nftables.Chain {
	return &nftables.Chain{Name: "prerouting", Table: n.table}
}

func (n *network) boxChain(rid string) *nftables.Chain {
	return &nftables.Chain{Name: "box-" + rid, Table: n.table}
}

// setIDs numbers the sets this process adds (IDs name a set within the
// transaction that adds it).
var setIDs atomic.Uint32

// allowSet holds the addresses box rid's allowed host names resolved to,
// each for its answer's TTL (dns_linux.go).
func (n *network) allowSet(rid string) *nftables.Set {
	return &nftables.Set{Table: n.table, Name: "allow-" + rid, KeyType: nftables.TypeIPAddr, HasTimeout: true}
}

// hook adds rid's chain with l's egress rules and the jump to it.
func (n *network) hook(rid string, l link) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("gvisor: nftables: %w", err)
	}
	n.hookRules(c, rid, l)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("gvisor: sandbox network rules of %s: %w", rid, err)
	}
	return nil
}

func (n *network) hookRules(c *nftables.Conn, rid string, l link) {
	set := n.allowSet(rid)
	// Its ID is ours: the library numbers sets without one from a global
	// it does not guard, and boxes are hooked concurrently.
	set.ID = setIDs.Add(1)
	c.AddSet(set, nil)
	ch := c.AddChain(n.boxChain(rid))
	n.egressRules(c, ch, rid, l.Egress)
	own := ifMatch(expr.MetaKeyIIFNAME, expr.CmpOpEq, ifName(l.Slot)+"\x00")
	c.AddRule(&nftables.Rule{Table: n.table, Chain: n.forwardChain(), UserData: []byte(rid),
		Exprs: append(slices.Clone(own), &expr.Verdict{Kind: expr.VerdictJump, Chain: ch.Name})})
	// Its DNS goes to this runtime's name server, by its own interface:
	// another Frost on the host has a name server of its own, which would
	// not know the box.
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		var exprs []expr.Any
		for _, e := range [][]expr.Any{own, dest(netip.PrefixFrom(netip.MustParseAddr(agent.NameServer), 32)), dport(proto, 53), dnat(netip.MustParseAddr("127.0.0.1"), n.proxy.port)} {
			exprs = append(exprs, e...)
		}
		c.AddRule(&nftables.Rule{Table: n.table, Chain: n.preroutingChain(), UserData: []byte(rid), Exprs: exprs})
	}
}

// egressRules adds box rid's egress e to ch: the addresses its allowed
// host names resolved to and its allowed destinations accepted, denied
// ones dropped, and with Offline everything else dropped.
func (n *network) egressRules(c *nftables.Conn, ch *nftables.Chain, rid string, e registry.Egress) {
	add := func(exprs ...expr.Any) { c.AddRule(&nftables.Rule{Table: n.table, Chain: ch, Exprs: exprs}) }
	add(&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: n.allowSet(rid).Name},
		&expr.Verdict{Kind: expr.VerdictAccept})
	for _, p := range e.Allow {
		if p.Addr().Is4() {
			add(append(dest(p), verdict(expr.VerdictAccept)...)...)
		}
	}
	for _, p := range e.Deny {
		if p.Addr().Is4() {
			add(append(dest(p), verdict(expr.VerdictDrop)...)...)
		}
	}
	if e.Offline {
		add(verdict(expr.VerdictDrop)...)
	}
}

// unhook takes rid's rules (found by their user data), chain and set out.
func (n *network) unhook(rid string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("gvisor: nftables: %w", err)
	}
	for _, ch := range []*nftables.Chain{n.forwardChain(), n.preroutingChain()} {
		rules, err := c.GetRules(n.table, ch)
		if err != nil {
			return err
		}
		for _, r := range rules {
			if string(r.UserData) == rid {
				c.DelRule(r)
			}
		}
	}
	ch := n.boxChain(rid)
	c.FlushChain(ch)
	c.DelChain(ch)
	c.DelSet(n.allowSet(rid))
	return c.Flush()
}

// build replaces the runtime's table with its base chains and the rules
// of the links it has now, in one transaction.
func (n *network) build() error {
	n.mu.Lock()
	links := make(map[string]link, len(n.links))
	for rid, l := range n.links {
		links[rid] = *l
	}
	n.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("gvisor: nftables: %w", err)
	}
	t := n.table
	c.AddTable(t)
	c.DelTable(t) // with its chains and rules; adding first makes it exist to delete
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	input := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	forward := c.AddChain(&nftables.Chain{Name: n.forwardChain().Name, Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	c.AddChain(&nftables.Chain{Name: n.preroutingChain().Name, Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	rule := func(ch *nftables.Chain, e ...[]expr.Any) {
		var all []expr.Any
		for _, x := range e {
			all = append(all, x...)
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: all})
	}
	fromBox, toBox := ifMatch(expr.MetaKeyIIFNAME, expr.CmpOpEq, ifPrefix), ifMatch(expr.MetaKeyOIFNAME, expr.CmpOpEq, ifPrefix)
	rule(input, fromBox, ctReplies(), verdict(expr.VerdictAccept))
	rule(input, fromBox, ctDNATed(), verdict(expr.VerdictAccept))
	rule(input, fromBox, verdict(expr.VerdictDrop))
	rule(forward, toBox, ctReplies(), verdict(expr.VerdictAccept))
	rule(forward, toBox, verdict(expr.VerdictDrop))
	// A connection let through stays so: a change of egress, or an
	// allowed name's addresses expiring, cuts no connection open.
	rule(forward, fromBox, ctReplies(), verdict(expr.VerdictAccept))
	rule(forward, fromBox, dest(netip.MustParsePrefix("169.254.0.0/16")), verdict(expr.VerdictDrop))
	for rid, l := range links {
		n.hookRules(c, rid, l)
	}
	rule(post, source(n.pool), ifMatch(expr.MetaKeyOIFNAME, expr.CmpOpNeq, ifPrefix), []expr.Any{&expr.Masq{}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("gvisor: sandbox network rules (nftables table %s): %w", t.Name, err)
	}
	return nil
}

// ifMatch compares an interface name's start with name (which matches
// the whole name when it ends with a NUL).
func ifMatch(key expr.MetaKey, op expr.CmpOp, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: []byte(name)},
	}
}

// ctReplies matches packets of connections already let through.
func ctReplies() []expr.Any {
	mask := binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// ctDNATed matches packets of connections whose destination was
// rewritten (DNAT: the name server's, on loopback).
func ctDNATed() []expr.Any {
	const ipsDstNAT = 1 << 5 // the kernel's IPS_DST_NAT
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// dest and source match an IPv4 destination or source in p.
func dest(p netip.Prefix) []expr.Any   { return addrIn(16, p) }
func source(p netip.Prefix) []expr.Any { return addrIn(12, p) }

func addrIn(offset uint32, p netip.Prefix) []expr.Any {
	p = p.Masked()
	a := p.Addr().As4()
	mask := net.CIDRMask(p.Bits(), 32)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
	}
}

// dport matches a transport protocol and destination port.
func dport(proto byte, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
	}
}

// dnat sends a packet to addr:port.
func dnat(addr netip.Addr, port uint16) []expr.Any {
	a := addr.As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a[:]},
		&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }
