package gateway

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestSilentNode: a member that stops answering, app and API alike, but
// stays a member (its lease holds: cut off from the gateway, or hung):
// after ProbeAfter its health check fails, the GET waiting on it goes to
// another node and the POST is answered 502 saying the node stopped
// answering. Once it answers again it is routed to.
func TestSilentNode(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := tr.newCluster(t, "n1", "n2", "n3")
			c.g.cfg.ProbeAfter = 500 * time.Millisecond
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go c.g.probeLoop(ctx)
			owner := c.g.view.Load().ring.Owner("web")
			n := c.nodes[owner]
			release := make(chan struct{})
			var held atomic.Int64
			stall(n, release, &held)
			var silent atomic.Bool
			silent.Store(true)
			apiHandler := n.api.Config.Handler
			n.api.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if silent.Load() {
					<-r.Context().Done()
					return
				}
				apiHandler.ServeHTTP(w, r)
			})

			get := c.send(t, "GET", "web.frost.test", "")
			waitHeld(t, &held, 1)
			post := c.send(t, "POST", "0-"+owner+"--web.frost.test", "once")
			waitHeld(t, &held, 2)
			if a := waitAnswer(t, get, "the GET on the silent node"); a.status != 200 || strings.HasPrefix(a.body, owner) {
				t.Errorf("the GET in flight on the silent node: %d %q, want 200 from another", a.status, a.body)
			}
			a := waitAnswer(t, post, "the POST on the silent node")
			if a.status != http.StatusBadGateway || !strings.Contains(a.body, owner+": the node stopped answering") {
				t.Errorf("the POST in flight on the silent node: %d %q, want 502 saying %s stopped answering", a.status, a.body, owner)
			}
			if st := c.g.Stats(); st.Silent != 1 || st.Lost != 0 {
				t.Errorf("Stats: silent %d, lost %d; want 1, 0", st.Silent, st.Lost)
			}

			// It answers again: a check passes, it is routed to.
			n.handle(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(owner + " is back")) })
			silent.Store(false)
			close(release)
			deadline := time.Now().Add(10 * time.Second)
			for {
				st, b := c.do(t, "GET", "0-"+owner+"--web.frost.test", "")
				if st == 200 && b == owner+" is back" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("pinned to %s once it answers again: %d %q", owner, st, b)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestSlowNodeIsNotSilent: a request that takes longer than ProbeAfter on
// a node whose health check passes is left to finish.
func TestSlowNodeIsNotSilent(t *testing.T) {
	c := newCluster(t, "n1", "n2", "n3")
	c.g.cfg.ProbeAfter = 500 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.g.probeLoop(ctx)
	owner := c.g.view.Load().ring.Owner("web")
	c.nodes[owner].handle(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1500 * time.Millisecond) // three ProbeAfters: checked at least once
		w.Write([]byte("slow answer"))
	})
	if st, b := c.do(t, "POST", "web.frost.test", "x"); st != 200 || b != "slow answer" {
		t.Errorf("a slow POST on a node that answers its checks: %d %q", st, b)
	}
	if st := c.g.Stats(); st.Silent != 0 {
		t.Errorf("Stats().Silent = %d, want 0", st.Silent)
	}
	checks := 0
	for len(c.nodes[owner].apiCalls) > 0 {
		if strings.HasPrefix(<-c.nodes[owner].apiCalls, "GET /v1/health") {
			checks++
		}
	}
	if checks == 0 {
		t.Error("the slow node was never checked")
	}
}
