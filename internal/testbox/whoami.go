package testbox

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
)

// WhoAmI serves, on ln until t ends, the address each request came from
// (having read its body), or at /big 2 MiB: what tests of sandbox
// networks fetch from a sandbox, to see it masqueraded and counted.
func WhoAmI(t testing.TB, ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(make([]byte, 2<<20))
			return
		}
		io.Copy(io.Discard, r.Body)
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprint(w, host)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// WhoAmIInBox is a shell command that starts, in the background in a
// sandbox, a python server on addr:port answering each request with the
// address it came from: what tests of sandbox ports ask, to see whether
// the proxy dialled the sandbox or went through the agent's relay. It
// keeps connections alive (HTTP/1.1), and its X-Peer-Port header is the
// port the request's connection came from: one connection, one port.
func WhoAmIInBox(addr string, port int) string {
	return fmt.Sprintf(`python3 -c '
import http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536
    def do_GET(self):
        b = self.client_address[0].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.send_header("X-Peer-Port", str(self.client_address[1])); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer((%q, %d), H).serve_forever()' >/dev/null 2>&1 &`, addr, port)
}
