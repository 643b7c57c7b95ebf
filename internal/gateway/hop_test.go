package gateway

import (
	"bufio"
	"net"
	"net/http"
	"testing"
)

// BenchmarkHop sends requests one after another over one keep-alive
// connection, straight to a node and through the gateway: the difference
// per op is what a hop adds (on loopback, gateway and node in this
// process).
func BenchmarkHop(b *testing.B) {
	c := newCluster(b, "n1")
	c.nodes["n1"].handle(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) })
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
	b.Run("direct", func(b *testing.B) { run(b, node) })
	b.Run("gateway", func(b *testing.B) { run(b, c.srv.Listener.Addr().String()) })
	b.Run("raw", func(b *testing.B) { run(b, rawProxy(b, node)) })
	b.Run("par-direct", func(b *testing.B) { par(b, node) })
	b.Run("par-gateway", func(b *testing.B) { par(b, c.srv.Listener.Addr().String()) })
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
