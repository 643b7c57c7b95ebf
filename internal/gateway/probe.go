package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/frostdev/frost/internal/registry"
)

// A node can stop answering and stay a member: cut off from the gateway
// but not from etcd, or hung with its lease kept alive. Its lease never
// lapses, so nothing of lost.go happens, and the requests waiting on it
// would wait for TCP. So the gateway watches each member's answers: one
// with requests in flight and no answer head for Config.ProbeAfter gets
// a health check (GET /v1/health on its API, a new connection, the same
// bound); if that fails too, its connections are closed as a lost
// node's are, and dials to it refused until a later check passes. The
// cost on the hot path is one atomic store a request, of a coarse clock
// the probe loop keeps.

// nodeCount is what the gateway counts of a node.
type nodeCount struct {
	atomic.Int64 // requests in flight, answers being read included (the bounded load)
	// answered is the probe clock's tick when an answer's head last came
	// from the node, or a check passed.
	answered atomic.Int64
	probing  atomic.Bool
}

// probeTicks is how many ticks of the probe clock make ProbeAfter.
const probeTicks = 4

// probeLoop runs the health checks until ctx ends.
func (g *Gateway) probeLoop(ctx context.Context) {
	client := &http.Client{
		Timeout:   g.cfg.ProbeAfter,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	t := time.NewTicker(g.cfg.ProbeAfter / probeTicks)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tick := g.tick.Add(1)
		v := g.view.Load()
		for name, n := range v.nodes {
			c := v.loads[name]
			silent := g.isSilent(n)
			if c.Load() == 0 && !silent {
				c.answered.Store(tick) // nothing waits on it
				continue
			}
			// One found silent is checked again until it answers.
			if tick-c.answered.Load() < probeTicks || !c.probing.CompareAndSwap(false, true) {
				continue
			}
			c.answered.Store(tick)
			go func() {
				defer c.probing.Store(false)
				if err := probe(ctx, client, n); err != nil {
					if ctx.Err() == nil {
						g.unreachable(n, err)
					}
					return
				}
				c.answered.Store(g.tick.Load())
				g.found(n, errNodeSilent)
			}()
		}
	}
}

// probe asks n whether it is alive.
func probe(ctx context.Context, client *http.Client, n registry.Node) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.APIAddr+"/v1/health", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s", resp.Status)
	}
	return nil
}

// isSilent says whether n was found silent and has not answered a check
// since.
func (g *Gateway) isSilent(n registry.Node) bool {
	g.conns.mu.Lock()
	defer g.conns.mu.Unlock()
	return errors.Is(g.conns.isLost(n.HTTPAddr), errNodeSilent)
}

// unreachable closes the connections of n, a member that stopped
// answering, and refuses new ones until a check passes.
func (g *Gateway) unreachable(n registry.Node, err error) {
	// Counted first: a request it answers 502 must find itself counted.
	g.silent.Add(1)
	closed := g.cut(n, fmt.Errorf("%w (a health check, %v)", errNodeSilent, err))
	g.markSuspect(n.Name, err)
	g.cfg.Logger.Warn("gateway: node stopped answering: its requests in flight end", "node", n.Name, "connections", closed, "err", err)
}
