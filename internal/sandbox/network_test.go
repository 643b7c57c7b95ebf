package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/sandbox"
)

// A sandbox's network limits are checked at create, shown as given, and
// handed to its box every time it comes up: create, resume, fork.
func TestNetworkLimits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	want := registry.Egress{
		Offline: true,
		Allow:   []netip.Prefix{netip.MustParsePrefix("203.0.113.7/32"), netip.MustParsePrefix("10.0.0.0/8")},
		Deny:    []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
	}
	sb, err := e.m.Create(ctx, api.SandboxCreateRequest{Network: &api.SandboxNetwork{Offline: true, AllowOut: []string{"203.0.113.7", "10.9.9.9/8"}, DenyOut: []string{"10.1.0.0/16"}}})
	if err != nil {
		t.Fatal(err)
	}
	wantView := &api.SandboxNetwork{Offline: true, AllowOut: []string{"203.0.113.7/32", "10.0.0.0/8"}, DenyOut: []string{"10.1.0.0/16"}}
	if !reflect.DeepEqual(sb.Network, wantView) {
		t.Fatalf("create shows network %+v, want %+v", sb.Network, wantView)
	}
	boxEgress := func(id, when string) {
		t.Helper()
		b := e.rt.Live[id]
		if b == nil {
			t.Fatalf("%s: no box", when)
		}
		if !reflect.DeepEqual(b.Egress, want) {
			t.Fatalf("%s: the box was given %+v, want %+v", when, b.Egress, want)
		}
	}
	boxEgress(sb.ID, "create")
	if _, err := e.m.Pause(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Resume(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	boxEgress(sb.ID, "resume")
	forks, err := e.m.Fork(ctx, sb.ID, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	boxEgress(forks[0].ID, "fork")
	if !reflect.DeepEqual(forks[0].Network, wantView) {
		t.Fatalf("fork shows network %+v", forks[0].Network)
	}
	if got, err := e.m.Get(ctx, sb.ID); err != nil || !reflect.DeepEqual(got.Network, wantView) {
		t.Fatalf("get shows network %+v (%v)", got.Network, err)
	}

	// Changed while it runs: its box's rules at once; while paused: from
	// its resume.
	if _, err := e.m.SetNetwork(ctx, sb.ID, &api.SandboxNetwork{DenyOut: []string{"192.0.2.0/24"}}); err != nil {
		t.Fatal(err)
	}
	want = registry.Egress{Deny: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	boxEgress(sb.ID, "set while running")
	if _, err := e.m.Pause(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	got, err := e.m.SetNetwork(ctx, sb.ID, nil)
	if err != nil || got.Network != nil || got.State != "paused" {
		t.Fatalf("set while paused: %+v %v", got, err)
	}
	if _, err := e.m.Resume(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	want = registry.Egress{}
	boxEgress(sb.ID, "resumed after a set while paused")
	if _, err := e.m.SetNetwork(ctx, sb.ID, &api.SandboxNetwork{DenyOut: []string{"example.com"}}); !errors.Is(err, sandbox.ErrInvalid) {
		t.Fatalf("a host name to deny: %v", err)
	}
	// Host names to allow: kept as given, lower case, for the runtime.
	got, err = e.m.SetNetwork(ctx, sb.ID, &api.SandboxNetwork{Offline: true, AllowOut: []string{"PyPI.org.", "*.github.com", "10.0.0.1"}})
	if err != nil || !reflect.DeepEqual(got.Network.AllowOut, []string{"10.0.0.1/32", "pypi.org", "*.github.com"}) {
		t.Fatalf("host names allowed: %+v %v", got.Network, err)
	}
	want = registry.Egress{Offline: true, Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}, AllowHosts: []string{"pypi.org", "*.github.com"}}
	boxEgress(sb.ID, "host names allowed")
	if _, err := e.m.SetNetwork(ctx, "nosuchsandbox0000000", nil); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("no such sandbox: %v", err)
	}

	// Unlimited: no network object in the answer, the zero egress.
	open, err := e.m.Create(ctx, api.SandboxCreateRequest{})
	if err != nil || open.Network != nil || !reflect.DeepEqual(e.rt.Live[open.ID].Egress, registry.Egress{}) {
		t.Fatalf("an unlimited sandbox: %+v %v", open.Network, err)
	}

	many := make([]string, 257)
	for i := range many {
		many[i] = fmt.Sprintf("10.0.%d.%d", i/256, i%256)
	}
	for _, bad := range []api.SandboxNetwork{
		{AllowOut: []string{"exa mple.com"}},
		{AllowOut: []string{"localhost"}},
		{AllowOut: []string{"*.-bad.com"}},
		{DenyOut: []string{"example.com"}},
		{DenyOut: []string{"2001:db8::/32"}},
		{DenyOut: []string{"10.0.0.0/33"}},
		{AllowOut: many},
	} {
		if _, err := e.m.Create(ctx, api.SandboxCreateRequest{Network: &bad}); !errors.Is(err, sandbox.ErrInvalid) {
			t.Errorf("network %v: got %v, want ErrInvalid", bad, err)
		}
	}
}
