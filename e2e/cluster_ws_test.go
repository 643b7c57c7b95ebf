package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testetcd"
)

// wsServer is a WebSocket echo server and a streaming endpoint in
// Python's standard library, run in a sandbox: GET with Upgrade:
// websocket echoes every frame (a close frame too, then ends); GET
// /stream?K sends "first\n", then "second\n" once /release?K is
// requested ("late\n" if that takes 20 s), chunked.
const wsServer = `import base64, hashlib, http.server, struct, threading

events, lock = {}, threading.Lock()

def event(k):
    with lock:
        return events.setdefault(k, threading.Event())

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        path, _, key = self.path.partition("?")
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        if path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.chunk(b"first\n")
            self.chunk(b"second\n" if event(key).wait(20) else b"late\n")
            self.chunk(b"")
            return
        if path == "/release":
            event(key).set()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_error(404)

    def chunk(self, b):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
        self.wfile.flush()

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
        self.end_headers()
        self.wfile.flush()
        while True:
            b0, b1 = self.rfile.read(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack(">H", self.rfile.read(2))
            elif n == 127:
                (n,) = struct.unpack(">Q", self.rfile.read(8))
            mask = self.rfile.read(4) if b1 & 0x80 else b"\0\0\0\0"
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(self.rfile.read(n)))
            n = len(data)
            head = bytes([0x80 | op])
            if n < 126:
                head += bytes([n])
            elif n < 65536:
                head += bytes([126]) + struct.pack(">H", n)
            else:
                head += bytes([127]) + struct.pack(">Q", n)
            self.wfile.write(head + data)
            self.wfile.flush()
            if op == 8:
                self.close_connection = True
                return

http.server.ThreadingHTTPServer(("", 8000), H).serve_forever()
`

// TestClusterSandboxWebSocket: a WebSocket and a streamed answer from a
// server in a real gVisor sandbox, through a real gateway and node, on
// the gateway's plain listener and on its TLS one: the upgrade answered
// 101 with the server's accept key, messages of every length class
// echoed in order both ways, the close handshake; and a chunked answer
// whose first part reaches the client while the server still holds the
// rest (over HTTP/1.1 and HTTP/2).
func TestClusterSandboxWebSocket(t *testing.T) {
	etcd := strings.Join(testetcd.Start(t), ",")
	startSandboxServer(t, "", "--role", "node", "--name", "n1", "--etcd", etcd)
	gw := startGateway(t, etcd, 1, "--https", "127.0.0.1:0")
	c := api.NewClient("http://"+gw.api, gw.token)
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{Timeout: api.Duration(time.Hour)})
	if err != nil {
		t.Fatalf("create through the gateway: %v", err)
	}
	if _, err := c.WriteFile(ctx, sb.ID, "/root/ws.py", 0o644, strings.NewReader(wsServer)); err != nil {
		t.Fatal(err)
	}
	sbExec(t, c, sb.ID, "", "sh", "-c", "cd /root && nohup python3 ws.py >/tmp/ws.log 2>&1 &")
	host := fmt.Sprintf("8000-%s.localhost", sb.ID)
	if status, _ := waitPort(gw, sb.ID, 8000, sb.Token, "/release?warm-up"); status != 200 {
		log, _, _ := sbExec(t, c, sb.ID, "", "cat", "/tmp/ws.log")
		t.Fatalf("the sandbox's server through the gateway: %d (its log %q)", status, log)
	}

	roots := gw.devRoots(t)
	dialPlain := func() (net.Conn, error) { return net.Dial("tcp", gw.http) }
	dialTLS := func(protos ...string) func() (net.Conn, error) {
		return func() (net.Conn, error) {
			return tls.Dial("tcp", gw.https, &tls.Config{ServerName: host, RootCAs: roots, NextProtos: protos})
		}
	}

	for _, v := range []struct {
		name string
		dial func() (net.Conn, error)
	}{{"http", dialPlain}, {"https", dialTLS("http/1.1")}} {
		t.Run("websocket over "+v.name, func(t *testing.T) {
			conn, err := v.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(time.Minute))
			ws := wsOpen(t, conn, host, sb.Token)
			for _, n := range []int{0, 5, 125, 126, 1000, 65535, 65536, 200 << 10} {
				msg := make([]byte, n)
				rand.Read(msg)
				ws.send(t, 2, msg)
				if op, got := ws.recv(t); op != 2 || !bytes.Equal(got, msg) {
					t.Fatalf("a %d-byte message came back as opcode %d, %d bytes (equal: %v)", n, op, len(got), bytes.Equal(got, msg))
				}
			}
			// Several in flight at once come back in order.
			for i := range 20 {
				ws.send(t, 1, fmt.Appendf(nil, "message %d", i))
			}
			for i := range 20 {
				if op, got := ws.recv(t); op != 1 || string(got) != fmt.Sprintf("message %d", i) {
					t.Fatalf("message %d of 20 in flight: opcode %d %q", i, op, got)
				}
			}
			ws.send(t, 8, []byte{0x03, 0xe8}) // close, 1000: normal
			if op, got := ws.recv(t); op != 8 || !bytes.Equal(got, []byte{0x03, 0xe8}) {
				t.Fatalf("close answered with opcode %d %x", op, got)
			}
			if n, err := ws.r.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("after the close handshake: %d bytes, %v; want the connection closed", n, err)
			}
		})
	}

	for _, v := range []struct {
		name   string
		client *http.Client
		proto  int
	}{
		{"http", &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, gw.http)
			},
		}}, 1},
		{"https with HTTP/2", &http.Client{Transport: &http.Transport{
			ForceAttemptHTTP2: true,
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, gw.https)
			},
		}}, 2},
	} {
		t.Run("streamed answer over "+v.name, func(t *testing.T) {
			scheme := "http"
			if v.proto == 2 {
				scheme = "https"
			}
			get := func(path string) *http.Response {
				req, _ := http.NewRequestWithContext(ctx, "GET", scheme+"://"+host+path, nil)
				req.Header.Set("X-Frost-Sandbox-Token", sb.Token)
				resp, err := v.client.Do(req)
				if err != nil {
					t.Fatalf("GET %s: %v", path, err)
				}
				return resp
			}
			key := strings.ReplaceAll(v.name, " ", "-")
			resp := get("/stream?" + key)
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != v.proto {
				t.Fatalf("GET /stream: %s %d, want HTTP/%d 200", resp.Proto, resp.StatusCode, v.proto)
			}
			br := bufio.NewReader(resp.Body)
			// The server sends its second part only once /release is
			// asked for, which is only after the first part came: held
			// anywhere on the way, the first part would come with
			// "late", 20 s on.
			if line, err := br.ReadString('\n'); line != "first\n" {
				t.Fatalf("the stream's first part: %q %v", line, err)
			}
			if r := get("/release?" + key); r.StatusCode != 200 {
				t.Fatalf("release: %d", r.StatusCode)
			} else {
				r.Body.Close()
			}
			if rest, err := io.ReadAll(br); string(rest) != "second\n" || err != nil {
				t.Fatalf("the rest of the stream: %q %v, want \"second\\n\"", rest, err)
			}
		})
	}
}

// ws is a WebSocket client connection (RFC 6455), enough for a test.
type ws struct {
	c net.Conn
	r *bufio.Reader
}

// wsOpen sends the opening handshake for host over c and checks the
// server's answer.
func wsOpen(t *testing.T, c net.Conn, host, token string) *ws {
	t.Helper()
	nonce := make([]byte, 16)
	rand.Read(nonce)
	key := base64.StdEncoding.EncodeToString(nonce)
	fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nX-Frost-Sandbox-Token: %s\r\n\r\n", host, key, token)
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("the upgrade's answer: %v", err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != 101 || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") ||
		resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		t.Fatalf("the upgrade: %d %v %q; want 101 with the server's accept key", resp.StatusCode, resp.Header, b)
	}
	return &ws{c: c, r: r}
}

// send writes one final frame of opcode op, masked as a client's must be.
func (w *ws) send(t *testing.T, op byte, data []byte) {
	t.Helper()
	head := []byte{0x80 | op}
	switch n := len(data); {
	case n < 126:
		head = append(head, 0x80|byte(n))
	case n < 1<<16:
		head = binary.BigEndian.AppendUint16(append(head, 0x80|126), uint16(n))
	default:
		head = binary.BigEndian.AppendUint64(append(head, 0x80|127), uint64(n))
	}
	mask := make([]byte, 4)
	rand.Read(mask)
	frame := append(append(head, mask...), data...)
	for i := range data {
		frame[len(head)+4+i] ^= mask[i%4]
	}
	if _, err := w.c.Write(frame); err != nil {
		t.Fatalf("sending a frame: %v", err)
	}
}

// recv reads one frame (unmasked, as a server's are).
func (w *ws) recv(t *testing.T) (byte, []byte) {
	t.Helper()
	var head [2]byte
	if _, err := io.ReadFull(w.r, head[:]); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	n := uint64(head[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		io.ReadFull(w.r, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		io.ReadFull(w.r, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	if head[0]&0x80 == 0 || head[1]&0x80 != 0 || n > 1<<20 {
		t.Fatalf("a frame not final, masked or of %d bytes: %x", n, head)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(w.r, data); err != nil {
		t.Fatalf("reading a frame's %d bytes: %v", n, err)
	}
	return head[0] & 0x0f, data
}
