package sandbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
)

// Network limits: what a sandbox may connect to (registry.Egress), set
// at create, changed while it runs (SetNetwork), kept across pauses and
// forks. The runtime enforces them (package gvisor's rules); the manager
// checks, records and hands them over.

// maxEgressRules bounds a sandbox's allow and deny lists together: each
// entry is a rule every packet it sends may pass.
const maxEgressRules = 256

// egressOf reads a request's network (nil: unlimited).
func egressOf(n *api.SandboxNetwork) (registry.Egress, error) {
	var e registry.Egress
	if n == nil {
		return e, nil
	}
	if len(n.AllowOut)+len(n.DenyOut) > maxEgressRules {
		return e, fmt.Errorf("%w: network: %d allow_out and deny_out entries, over %d", ErrInvalid, len(n.AllowOut)+len(n.DenyOut), maxEgressRules)
	}
	e.Offline = n.Offline
	for _, s := range n.AllowOut {
		if p, err := api.ParseEgress(s); err == nil {
			e.Allow = append(e.Allow, p)
		} else if host, ok := api.HostPattern(s); ok {
			e.AllowHosts = append(e.AllowHosts, host)
		} else {
			return e, fmt.Errorf("%w: network: allow_out %q: want an IPv4 address, a CIDR range or a host name (*.example.com for every name under it)", ErrInvalid, s)
		}
	}
	for _, s := range n.DenyOut {
		p, err := api.ParseEgress(s)
		if err != nil {
			return e, fmt.Errorf("%w: network: deny_out: %v; host names are taken in allow_out only (a name's addresses are often shared with others')", ErrInvalid, err)
		}
		e.Deny = append(e.Deny, p)
	}
	return e, nil
}

// networkView is the API's picture of e (nil: unlimited).
func networkView(e registry.Egress) *api.SandboxNetwork {
	if !e.Offline && len(e.Allow) == 0 && len(e.Deny) == 0 && len(e.AllowHosts) == 0 {
		return nil
	}
	n := &api.SandboxNetwork{Offline: e.Offline}
	for _, p := range e.Allow {
		n.AllowOut = append(n.AllowOut, p.String())
	}
	n.AllowOut = append(n.AllowOut, e.AllowHosts...)
	for _, p := range e.Deny {
		n.DenyOut = append(n.DenyOut, p.String())
	}
	return n
}

// SetNetwork replaces what sandbox id may connect to (nil: unlimited):
// at once if it runs here (connections already open stay), from its
// resume if it is paused. Another node's running sandbox: ElsewhereError.
func (m *Manager) SetNetwork(ctx context.Context, id string, n *api.SandboxNetwork) (api.Sandbox, error) {
	e, err := egressOf(n)
	if err != nil {
		return api.Sandbox{}, err
	}
	rec, err := m.record(ctx, id)
	if err != nil {
		return api.Sandbox{}, err
	}
	if rec.State == registry.SandboxRunning && !m.mine(rec) {
		return api.Sandbox{}, m.elsewhere(rec)
	}
	// Shared with the commands in flight, which go on; a pause or resume
	// waits, so the box this changes is the one the record is for.
	s := m.state(id)
	s.life.RLock()
	defer s.life.RUnlock()
	s.netMu.Lock()
	defer s.netMu.Unlock()
	now := m.cfg.Now().UTC()
	rec, err = m.reg.UpdateSandbox(ctx, id, false, func(r *registry.Sandbox) error {
		r.Egress, r.UpdatedAt = e, now
		return nil
	})
	if errors.Is(err, registry.ErrNotFound) {
		return api.Sandbox{}, fmt.Errorf("%w %q", ErrNotFound, id)
	}
	if err != nil {
		return api.Sandbox{}, err
	}
	if es, ok := s.box.(runtime.EgressSetter); ok {
		if err := es.SetEgress(e); err != nil {
			return api.Sandbox{}, fmt.Errorf("sandbox %s: its network rules: %w", id, err)
		}
	}
	return m.view(rec, s.boot), nil
}
