// Package flight runs one call per key at a time: a caller asking for a
// key whose call is under way waits for that call's result instead of
// starting another (one download of a blob or snapshot, however many
// requests want it at once).
package flight

import (
	"context"
	"sync"
)

// Group runs calls by key. The zero value is ready to use.
type Group struct {
	mu    sync.Mutex
	calls map[string]*call
}

type call struct {
	done    chan struct{}
	v       any
	err     error
	callers int // callers waiting or served, counted under Group.mu
}

// Do runs fn for key unless a call for key is under way, and waits for
// that call's result or for ctx to end. fn runs under a context that does
// not end with the caller's, since other callers may be waiting for it;
// it keeps the caller's values.
func (g *Group) Do(ctx context.Context, key string, fn func(context.Context) (any, error)) (any, error) {
	g.mu.Lock()
	c, ok := g.calls[key]
	if !ok {
		if g.calls == nil {
			g.calls = map[string]*call{}
		}
		c = &call{done: make(chan struct{})}
		g.calls[key] = c
		go func() {
			c.v, c.err = fn(context.WithoutCancel(ctx))
			g.mu.Lock()
			delete(g.calls, key)
			g.mu.Unlock()
			close(c.done)
		}()
	}
	c.callers++
	g.mu.Unlock()
	select {
	case <-c.done:
		return c.v, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
