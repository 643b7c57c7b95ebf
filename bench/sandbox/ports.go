package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/frostdev/frost/api"
)

// portFigures are requests to a sandbox's port through Frost's HTTP
// listener (the port proxy), from one client keeping its connection to
// Frost alive, as a browser does: to a server on every address (dialled
// on the sandbox's own address when it has a network), to one on
// 127.0.0.1 only (the agent's relay: a runsc exec per connection), and,
// as the baseline, straight to the first server at the sandbox's address
// (no proxy; none without a network); what each server saw the requests
// come from, and on how many connections.
type portFigures struct {
	all, loopback, direct   []time.Duration
	allFrom, loopbackFrom   string
	allConns, loopbackConns int
}

// measurePorts starts two servers in sandbox id (python's, speaking
// HTTP/1.1 as real servers do, answering the client's address) and sends
// n requests to each, alternating, and n straight to the first.
func measurePorts(ctx context.Context, c *api.Client, srv endpoints, id, token string, n int) portFigures {
	const script = `import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536
    def do_GET(self):
        b = self.client_address[0].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.send_header("X-Peer-Port", str(self.client_address[1])); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()`
	run(ctx, c, id, "sh", "-c", fmt.Sprintf("nohup python3 -c '%s' 0.0.0.0 8000 >/dev/null 2>&1 & nohup python3 -c '%s' 127.0.0.1 8001 >/dev/null 2>&1 &", script, script))
	run(ctx, c, id, "sh", "-c", "for p in 8000 8001; do for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$p/ && break; sleep 0.1; done; done")
	addr := strings.TrimSpace(run(ctx, c, id, "sh", "-c", "hostname -I | cut -d' ' -f1"))
	client := &http.Client{Timeout: time.Minute}
	get := func(url, host string) (time.Duration, string, string) {
		req, _ := http.NewRequest("GET", url, nil)
		if host != "" {
			req.Host = host
			req.Header.Set("X-Frost-Sandbox-Token", token)
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if resp.StatusCode != 200 {
			log.Fatalf("%s %s: %d %s", url, host, resp.StatusCode, b)
		}
		return d, strings.TrimSpace(string(b)), resp.Header.Get("X-Peer-Port")
	}
	var f portFigures
	conns := [2]map[string]bool{{}, {}}
	for range n {
		for i, port := range []int{8000, 8001} {
			d, from, peer := get("http://"+srv.http+"/", fmt.Sprintf("%d-%s.localhost", port, id))
			conns[i][peer] = true
			if i == 0 {
				f.all, f.allFrom = append(f.all, d), from
			} else {
				f.loopback, f.loopbackFrom = append(f.loopback, d), from
			}
		}
		if addr != "" {
			d, _, _ := get("http://"+addr+":8000/", "")
			f.direct = append(f.direct, d)
		}
	}
	f.allConns, f.loopbackConns = len(conns[0]), len(conns[1])
	return f
}
