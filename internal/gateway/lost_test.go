package gateway

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/registry"
)

// stall makes n's app hold every request until release is closed (or its
// client goes), answering nothing meanwhile: a node that froze.
func stall(n *fakeNode, release <-chan struct{}, held *atomic.Int64) {
	n.handle(func(w http.ResponseWriter, r *http.Request) {
		held.Add(1)
		select {
		case <-release:
			w.Write([]byte("late answer from " + n.name))
		case <-r.Context().Done():
		}
	})
}

// members returns c's nodes' registrations, but skip's, and with
// draining's said to be draining.
func (c *cluster) members(skip, draining string) []registry.Node {
	var out []registry.Node
	for name, n := range c.nodes {
		m := n.member()
		switch name {
		case skip:
			continue
		case draining:
			m.Draining = true
		}
		out = append(out, m)
	}
	return out
}

type answer struct {
	status int
	body   string
}

func (c *cluster) send(t *testing.T, method, host, body string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		st, b := c.do(t, method, host, body)
		ch <- answer{st, b}
	}()
	return ch
}

func waitAnswer(t *testing.T, ch <-chan answer, what string) answer {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no answer in 10s", what)
		return answer{}
	}
}

func waitHeld(t *testing.T, held *atomic.Int64, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for held.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests reached the stalled node, want %d", held.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLostNode: a member that leaves without draining (its lease lapsed)
// while requests wait on it: the GET goes to the next node, the POST is
// answered 502 saying the node was lost (it may have been served), both
// at once rather than when the node or TCP gives up. When the node joins
// again it is routed to.
func TestLostNode(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := tr.newCluster(t, "n1", "n2", "n3")
			owner := c.g.view.Load().ring.Owner("web")
			release := make(chan struct{})
			defer close(release)
			var held atomic.Int64
			stall(c.nodes[owner], release, &held)
			get := c.send(t, "GET", "web.frost.test", "")
			waitHeld(t, &held, 1)
			// Pinned: with one request in flight the owner is over its
			// bounded load, and a second would go elsewhere.
			post := c.send(t, "POST", "0-"+owner+"--web.frost.test", "once")
			waitHeld(t, &held, 2)

			c.g.SetNodes(c.members(owner, ""))
			if a := waitAnswer(t, get, "the GET on the lost node"); a.status != 200 || strings.HasPrefix(a.body, owner) {
				t.Errorf("the GET in flight on the lost node: %d %q, want 200 from another", a.status, a.body)
			}
			a := waitAnswer(t, post, "the POST on the lost node")
			if a.status != http.StatusBadGateway || !strings.Contains(a.body, owner+": the node left the cluster without draining") {
				t.Errorf("the POST in flight on the lost node: %d %q, want 502 saying %s was lost", a.status, a.body, owner)
			}
			if held.Load() != 2 {
				t.Errorf("the lost node got %d requests, want the 2 (none sent again)", held.Load())
			}
			if got := c.g.Stats().Lost; got != 1 {
				t.Errorf("Stats().Lost = %d, want 1", got)
			}

			// Back: routed to again, its connections allowed.
			c.nodes[owner].handle(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(owner + " is back")) })
			c.g.SetNodes(c.members("", ""))
			if st, b := c.do(t, "GET", "0-"+owner+"--web.frost.test", ""); st != 200 || !strings.HasPrefix(b, owner) {
				t.Errorf("pinned to %s after it joined again: %d %q", owner, st, b)
			}
		})
	}
}

// TestDrainingNode: a member that says it is draining gets no new
// requests, and those it has finish after it has left.
func TestDrainingNode(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := tr.newCluster(t, "n1", "n2", "n3")
			owner := c.g.view.Load().ring.Owner("web")
			release := make(chan struct{})
			var held atomic.Int64
			stall(c.nodes[owner], release, &held)
			post := c.send(t, "POST", "web.frost.test", "once")
			waitHeld(t, &held, 1)

			c.g.SetNodes(c.members("", owner))
			if st, b := c.do(t, "GET", "web.frost.test", ""); st != 200 || strings.HasPrefix(b, owner) {
				t.Errorf("a new request while %s drains: %d %q, want another node", owner, st, b)
			}
			if st, b := c.do(t, "GET", "0-"+owner+"--web.frost.test", ""); st != http.StatusServiceUnavailable || !strings.Contains(b, "is draining") {
				t.Errorf("a new request pinned to %s while it drains: %d %q, want 503 saying it drains", owner, st, b)
			}
			c.g.SetNodes(c.members(owner, ""))
			close(release)
			if a := waitAnswer(t, post, "the POST on the draining node"); a.status != 200 || a.body != "late answer from "+owner {
				t.Errorf("the POST in flight on the node that drained and left: %d %q", a.status, a.body)
			}
			if got := c.g.Stats().Lost; got != 0 {
				t.Errorf("Stats().Lost = %d after a drain, want 0", got)
			}
		})
	}
}
