//go:build !linux

package gvisor

import (
	"log/slog"
	"net/netip"

	"github.com/frostdev/frost/internal/registry"
)

// network is Linux's: New fails first on any other system.
type network struct{}

func openNetwork(netip.Prefix, string, string, *slog.Logger) (*network, error) {
	return nil, errNotLinux
}
func (*network) add(string, registry.Egress) (string, error) { return "", errNotLinux }
func (*network) setEgress(string, registry.Egress) error     { return errNotLinux }
func (*network) guest(string) (netip.Addr, bool)             { return netip.Addr{}, false }
func (*network) counters(string) (int64, int64)              { return 0, 0 }
func (*network) containers() []string                        { return nil }
func (*network) remove(string)                               {}
func (*network) close() error                                { return nil }
