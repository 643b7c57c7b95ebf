package front

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestBoundDrain: a handler that refuses a request without reading its
// body, from a client that sent part of the body it declared and
// stalled, is answered (and the connection closed) once the drain bound
// passes; net/http alone would wait for the rest of the body first.
func TestBoundDrain(t *testing.T) {
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	})
	for _, tc := range []struct {
		name    string
		handler http.Handler
		answers bool
	}{
		{"bounded", BoundDrain(refuse, 200*time.Millisecond), true},
		{"net/http alone", refuse, false},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: tc.handler}
		go srv.Serve(ln)
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nten bytes.")
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		switch {
		case tc.answers && err != nil:
			t.Errorf("%s: no answer: %v", tc.name, err)
		case tc.answers && (resp.StatusCode != http.StatusServiceUnavailable || !resp.Close):
			t.Errorf("%s: %s, close %v: want 503 and the connection closed", tc.name, resp.Status, resp.Close)
		case !tc.answers && err == nil:
			t.Errorf("%s: answered %s: the test no longer shows what BoundDrain is for", tc.name, resp.Status)
		}
		c.Close()
		srv.Close()
	}
}
