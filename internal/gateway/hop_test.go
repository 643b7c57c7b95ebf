package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// BenchmarkHop sends requests one after another over one keep-alive
// connection, straight to a node and through the gateway: the difference
// per op is what a hop adds (on loopback, gateway and node in this
// process). gateway reaches the node over HTTP/1.1 (frost server
// --hop=false), hop over a hop connection (the default).
func BenchmarkHop(b *testing.B) {
	c := newCluster(b, "n1")
	hc := newHopCluster(b, "n1")
	hello := func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) }
	c.nodes["n1"].handle(hello)
	hc.nodes["n1"].handle(hello)
	// client runs next() requests one after another on a connection.
	client := func(b *testing.B, addr string, next func() bool) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		req := []byte("GET / HTTP/1.1\r\nHost: hello.frost.test\r\nUser-Agent: bench\r\n\r\n")
		r, _ := http.NewRequest("GET", "/", nil)
		for next() {
			if _, err := conn.Write(req); err != nil {
				b.Error(err)
				return
			}
			resp, err := http.ReadResponse(br, r)
			if err == nil {
				_, err = br.Discard(int(resp.ContentLength))
			}
			if err != nil || resp.StatusCode != 200 {
				b.Error(resp, err)
				return
			}
		}
	}
	// One connection: the time per op is a round trip.
	run := func(b *testing.B, addr string) {
		b.ReportAllocs()
		client(b, addr, b.Loop)
	}
	// Eight connections per CPU: the time per op is CPU per request.
	par := func(b *testing.B, addr string) {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) { client(b, addr, pb.Next) })
	}
	node := c.nodes["n1"].app.Listener.Addr().String()
	direct := hc.nodes["n1"].hopAddr // a node's front, as frost server runs it
	b.Run("direct", func(b *testing.B) { run(b, direct) })
	b.Run("gateway", func(b *testing.B) { run(b, c.srv.Listener.Addr().String()) })
	b.Run("hop", func(b *testing.B) { run(b, hc.srv.Listener.Addr().String()) })
	b.Run("raw", func(b *testing.B) { run(b, rawProxy(b, node)) })
	b.Run("par-direct", func(b *testing.B) { par(b, direct) })
	b.Run("par-gateway", func(b *testing.B) { par(b, c.srv.Listener.Addr().String()) })
	b.Run("par-hop", func(b *testing.B) { par(b, hc.srv.Listener.Addr().String()) })
	b.Run("par-raw", func(b *testing.B) { par(b, rawProxy(b, node)) })
}

// rawProxy is the least a Go HTTP/1.1 proxy can do (parse, forward,
// parse, forward, one goroutine and one node connection per client
// connection, no routing): a floor for the gateway's hop.
func rawProxy(b *testing.B, node string) string {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			cc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				nc, _ := net.Dial("tcp", node)
				nbr := bufio.NewReader(nc)
				nbw := bufio.NewWriter(nc)
				br := bufio.NewReader(cc)
				bw := bufio.NewWriter(cc)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					req.Write(nbw)
					nbw.Flush()
					resp, err := http.ReadResponse(nbr, req)
					if err != nil {
						return
					}
					resp.Write(bw)
					bw.Flush()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestHopAbove: a request alone goes to its node over HTTP/1.1, answered
// by the node's front on the connection's goroutine; while more than
// HopAbove are in flight to the node, the next ones share hop
// connections.
func TestHopAbove(t *testing.T) {
	c := newClusterOf(t, newHopNode, DefaultConfig().HopAbove, "n1")
	n := c.nodes["n1"]
	if c.g.cfg.HopAbove != 1 {
		t.Fatalf("HopAbove %d by default, want 1", c.g.cfg.HopAbove)
	}
	for i := range 3 {
		if st, b := c.do(t, "GET", "web.frost.test", ""); st != 200 || b != "n1 web.frost.test " {
			t.Fatalf("request %d: %d %q", i, st, b)
		}
	}
	if got := n.hop.Served(); got != 3 {
		t.Errorf("the node's front answered %d of 3 requests one after another, want all (HTTP/1.1)", got)
	}

	// Four at once: the first alone (HTTP/1.1), the others over a hop.
	const held = 4
	arrived := make(chan struct{}, held)
	release := make(chan struct{})
	n.handle(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.Write([]byte("held"))
	})
	done := make(chan string, held)
	for i := range held {
		go func() {
			st, b := c.do(t, "GET", "web.frost.test", "")
			done <- fmt.Sprint(st, " ", b)
		}()
		// In order, so that each sees the ones before it in flight.
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("request %d never reached the node", i)
		}
	}
	close(release)
	for range held {
		if got := <-done; got != "200 held" {
			t.Errorf("held request: %q", got)
		}
	}
	if got := n.hop.Served(); got != 4 {
		t.Errorf("the node's front answered %d requests over HTTP/1.1, want 4 (3 alone, then the first of the held ones)", got)
	}
	if got := n.hits.Load(); got != 3+held {
		t.Errorf("the node answered %d requests, want %d", got, 3+held)
	}
}
