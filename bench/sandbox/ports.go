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
// listener (the port proxy): to a server on every address (dialled on
// the sandbox's own address when it has a network) and to one on
// 127.0.0.1 only (the agent's relay: a runsc exec per connection), and
// what each server saw the request come from.
type portFigures struct {
	all, loopback         []time.Duration
	allFrom, loopbackFrom string
}

// measurePorts starts two servers in sandbox id (python, answering the
// client's address) and sends n requests to each, alternating.
func measurePorts(ctx context.Context, c *api.Client, srv endpoints, id, token string, n int) portFigures {
	const script = `import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = self.client_address[0].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()`
	run(ctx, c, id, "sh", "-c", fmt.Sprintf("nohup python3 -c '%s' 0.0.0.0 8000 >/dev/null 2>&1 & nohup python3 -c '%s' 127.0.0.1 8001 >/dev/null 2>&1 &", script, script))
	run(ctx, c, id, "sh", "-c", "for p in 8000 8001; do for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$p/ && break; sleep 0.1; done; done")
	client := &http.Client{Timeout: time.Minute}
	get := func(port int) (time.Duration, string) {
		req, _ := http.NewRequest("GET", "http://"+srv.http+"/", nil)
		req.Host = fmt.Sprintf("%d-%s.localhost", port, id)
		req.Header.Set("X-Frost-Sandbox-Token", token)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if resp.StatusCode != 200 {
			log.Fatalf("port %d: %d %s", port, resp.StatusCode, b)
		}
		return d, strings.TrimSpace(string(b))
	}
	var f portFigures
	for range n {
		d, from := get(8000)
		f.all, f.allFrom = append(f.all, d), from
		d, from = get(8001)
		f.loopback, f.loopbackFrom = append(f.loopback, d), from
	}
	return f
}
