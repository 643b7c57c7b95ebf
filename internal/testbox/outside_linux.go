package testbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/frostdev/frost/internal/vethns"
)

// Outside is a host beyond this machine, for tests of what sandboxes
// reach over their network: a network namespace joined to the host by a
// veth pair, a /30 of 198.18.0.0/16 (the range set aside for tests of
// networks), routed like any address a sandbox's traffic leaves the
// host for.
type Outside struct {
	// Addr is the outside host's address; Host is the machine's address
	// on the link, the one the outside host sees sandboxes' traffic from
	// once the machine masquerades it.
	Addr, Host netip.Addr
	ns         netns.NsHandle
}

// NewOutside makes an outside host, removed when t ends.
func NewOutside(t testing.TB) *Outside {
	t.Helper()
	ns, err := inThread(func() (netns.NsHandle, error) { return netns.New() })
	if err != nil {
		t.Fatalf("outside host: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	// The host end's name is the /30's lock across test processes.
	for i := range 1 << 14 {
		name := fmt.Sprintf("fwan%d", i)
		base := netip.AddrFrom4([4]byte{198, 18, byte(i * 4 >> 8), byte(i * 4)})
		err := vethns.Join(name, ns, base)
		if errors.Is(err, vethns.ErrTaken) {
			continue
		}
		if err != nil {
			t.Fatalf("outside host: %v", err)
		}
		t.Cleanup(func() { vethns.Remove(name) })
		return &Outside{Host: base.Next(), Addr: base.Next().Next(), ns: ns}
	}
	t.Fatal("outside host: no free /30 in 198.18.0.0/16")
	return nil
}

// Listen listens on the outside host's port (0: any), closed when t
// ends.
func (o *Outside) Listen(t testing.TB, network string, port int) net.Listener {
	t.Helper()
	ln, err := inThread(func() (net.Listener, error) {
		if err := netns.Set(o.ns); err != nil {
			return nil, err
		}
		return net.Listen(network, netip.AddrPortFrom(o.Addr, uint16(port)).String())
	})
	if err != nil {
		t.Fatalf("outside host: listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// inThread runs f on a thread of its own, which f may move to another
// network namespace: the thread ends with it rather than serve anything
// else.
func inThread[T any](f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread goes with the goroutine
		v, err := f()
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

// cleanupNetworks removes what a runtime with sandbox networks left in
// dir (its StateDir/netns) when its process was killed: each box's veth
// pair (RID.json names its slot) and namespace mount, and its nftables
// table (named in the file "table").
func cleanupNetworks(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		switch {
		case strings.HasSuffix(e.Name(), ".json"):
			var l struct {
				Slot int `json:"slot"`
			}
			if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &l) == nil {
				vethns.Remove(fmt.Sprintf("frost%d", l.Slot))
			}
		case e.Name() == "table":
			if b, err := os.ReadFile(path); err == nil {
				if c, err := nftables.New(); err == nil {
					c.DelTable(&nftables.Table{Name: string(b), Family: nftables.TableFamilyIPv4})
					c.Flush()
				}
			}
		default:
			unix.Unmount(path, unix.MNT_DETACH)
		}
	}
}
