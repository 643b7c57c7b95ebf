package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/testetcd"
	"github.com/frostdev/frost/internal/testguest"
)

// TestClusterTLS: a gateway serving TLS with its development certificate
// in front of three real nodes. The ALPN offer picks HTTP/2 or HTTP/1.1;
// many requests share one HTTP/2 connection; a request body of unknown
// length streams through the gateway to a node and back. And the SNI
// pre-warm: a TLS handshake naming a frozen app, with no request after
// it, has the app's node wake it (and a pinned name, the node it pins)
// before any request comes; a handshake naming no app wakes nothing.
func TestClusterTLS(t *testing.T) {
	etcd := strings.Join(testetcd.Start(t), ",")
	nodes := startNodes(t, etcd, 3)
	gw := startGateway(t, etcd, 3, "--https", "127.0.0.1:0")
	gw.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	gw.mustFrost("deploy", "cgi", testguest.Path(t, "cgi"))

	roots := gw.devRoots(t)
	var dials atomic.Int64
	client := func(protos ...string) *http.Client {
		return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: roots, NextProtos: protos},
			ForceAttemptHTTP2: slices.Contains(protos, "h2"),
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				dials.Add(1)
				var d net.Dialer
				return d.DialContext(ctx, network, gw.https)
			},
		}}
	}
	get := func(c *http.Client, url string) (*http.Response, string) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: reading the body: %v", url, err)
		}
		return resp, string(b)
	}

	// ALPN: HTTP/2 when offered, HTTP/1.1 when that is all the client
	// speaks; the certificate verifies for the app's name either way.
	h2, h1 := client("h2", "http/1.1"), client("http/1.1")
	for _, c := range []struct {
		client *http.Client
		proto  int
	}{{h2, 2}, {h1, 1}} {
		resp, body := get(c.client, "https://hello.localhost/")
		if resp.StatusCode != 200 || body != "hello from frost\n" || resp.ProtoMajor != c.proto {
			t.Fatalf("over TLS: %s %d %q, want HTTP/%d 200", resp.Proto, resp.StatusCode, body, c.proto)
		}
	}

	// Many requests at once share the one HTTP/2 connection.
	dials.Store(0)
	var wg sync.WaitGroup
	errs := make(chan string, 32)
	for i := 0; i < 32; i++ {
		wg.Go(func() {
			resp, err := h2.Get("https://hello.localhost/")
			if err != nil {
				errs <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "hello from frost\n" || resp.ProtoMajor != 2 {
				errs <- fmt.Sprintf("%s %d %q", resp.Proto, resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("one of 32 requests at once over HTTP/2: %s", e)
	}
	if n := dials.Load(); n != 0 {
		t.Errorf("32 requests at once over HTTP/2 dialled %d new connections, want none (the one open)", n)
	}

	// A body of unknown length (HTTP/2 DATA frames, no Content-Length)
	// streams through the gateway to the CGI guest, which echoes it.
	payload := make([]byte, 4<<20)
	rand.Read(payload)
	pr, pw := io.Pipe()
	go func() {
		for rest := payload; len(rest) > 0; rest = rest[min(len(rest), 64<<10):] {
			if _, err := pw.Write(rest[:min(len(rest), 64<<10)]); err != nil {
				return
			}
		}
		pw.Close()
	}()
	resp, err := h2.Post("https://cgi.localhost/", "application/octet-stream", pr)
	if err != nil {
		t.Fatalf("streamed POST: %v", err)
	}
	echo, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !bytes.HasSuffix(echo, payload) {
		t.Fatalf("streamed POST of 4 MiB: %d, %d bytes back (%v), want the body echoed", resp.StatusCode, len(echo), err)
	}

	// The SNI pre-warm. Which node serves hello now, and a second one.
	resp, _ = gw.get("hello", "/")
	owner := resp.Header.Get("Frost-Node")
	other := "n1"
	if owner == other {
		other = "n2"
	}
	for _, c := range []struct{ sni, node string }{
		{"hello.localhost", owner},                  // the app's name: its node in ring order
		{"0-" + other + "--hello.localhost", other}, // a pinned name: the node it names
	} {
		n := nodeServer(t, nodes, c.node)
		// The node has served hello (the pinned one now, to have
		// something to freeze); freeze it there.
		if resp, _ := gw.get(strings.TrimSuffix(c.sni, ".localhost"), "/"); resp.Header.Get("Frost-Node") != c.node {
			t.Fatalf("%s served by %q, want %s", c.sni, resp.Header.Get("Frost-Node"), c.node)
		}
		if resp, body := n.apiReq("POST", "/v1/apps/hello/freeze", "", nil); resp.StatusCode != 200 {
			t.Fatalf("freeze hello on %s: %d %s", c.node, resp.StatusCode, body)
		}
		if live := appLive(t, n, "hello"); live != 0 {
			t.Fatalf("hello on %s after freeze: frost_app_live %v, want 0", c.node, live)
		}
		prewarms := gatewayPrewarms(t, gw)
		// A handshake naming no app wakes nothing.
		handshake(t, gw.https, "localhost", roots)
		if got := gatewayPrewarms(t, gw); got != prewarms {
			t.Fatalf("a handshake naming no app: prewarms %v → %v, want unchanged", prewarms, got)
		}
		// A handshake naming the app, and no request: its node wakes it.
		// (The gateway wakes an app at most once a second, and the
		// requests above began with handshakes naming hello: until a
		// second has passed, a handshake starts nothing.)
		waitFor(t, "a handshake naming "+c.sni+" to start a wake", func() bool {
			handshake(t, gw.https, c.sni, roots)
			return gatewayPrewarms(t, gw) == prewarms+1
		})
		handshake(t, gw.https, c.sni, roots)
		if got := gatewayPrewarms(t, gw); got != prewarms+1 {
			t.Fatalf("a second handshake naming %s at once: prewarms %v → %v, want no more than one wake a second", c.sni, prewarms, got)
		}
		waitFor(t, fmt.Sprintf("%s to wake hello after a handshake naming %s", c.node, c.sni), func() bool {
			return appLive(t, n, "hello") == 1
		})
		// The first request after a wake reports it (boot thaw, wake;dur),
		// and that it was over before the request came (desc=ahead).
		resp, body := gw.get(strings.TrimSuffix(c.sni, ".localhost"), "/")
		st := resp.Header.Get("Server-Timing")
		if resp.StatusCode != 200 || body != "hello from frost\n" || resp.Header.Get("Frost-Node") != c.node ||
			bootOf(resp) != "thaw" || !regexp.MustCompile(`wake;dur=[0-9.]+;desc=ahead`).MatchString(st) {
			t.Errorf("%s after the handshake: %d %q from %q, Server-Timing %q; want 200 from %s, a thaw over before the request",
				c.sni, resp.StatusCode, body, resp.Header.Get("Frost-Node"), st, c.node)
		}
	}
}

// handshake completes a TLS handshake with the gateway at addr for
// server name sni, and closes the connection without a request.
func handshake(t *testing.T, addr, sni string, roots *x509.CertPool) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, RootCAs: roots})
	if err != nil {
		t.Fatalf("TLS handshake for %s: %v", sni, err)
	}
	c.Close()
}

// appLive is node n's frost_app_live for app: 1 live, 0 frozen.
func appLive(t *testing.T, n *server, app string) float64 {
	t.Helper()
	_, m := n.apiReq("GET", "/metrics", "", nil)
	return metricValue(m, `frost_app_live{app="`+app+`"}`)
}

// gatewayPrewarms is the gateway's frost_gateway_prewarms_total.
func gatewayPrewarms(t *testing.T, gw *server) float64 {
	t.Helper()
	_, m := gw.apiReq("GET", "/metrics", "", nil)
	return metricValue(m, "frost_gateway_prewarms_total")
}

// devRoots is a pool of the server's development CA (DATA/tls/ca.pem, with
// --https and no certificate files).
func (s *server) devRoots(t *testing.T) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(s.data, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", filepath.Join(s.data, "tls", "ca.pem"))
	}
	return roots
}
