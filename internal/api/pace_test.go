package api_test

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	wire "github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/api"
	"github.com/frostdev/frost/internal/testtool"
)

// TestStalledUploadIsCut: an upload to the control API that stops coming
// (a module's bytes, a JSON body) is answered 408 body_timeout after the
// server's BodyTimeout, not held for as long as its client likes.
func TestStalledUploadIsCut(t *testing.T) {
	e := newEnv(t, token)
	e.h = api.New(api.Config{AdminToken: token, Version: "test", Domain: "localhost", HTTPAddr: "127.0.0.1:8080",
		MaxModuleBytes: maxModule, Registry: e.reg, BodyTimeout: time.Second}, e.node, e.blobs, nil)
	e.serve(t)
	addr := strings.TrimPrefix(e.url, "http://")
	digest := strings.Repeat("ab", 32)
	for _, tc := range []struct{ name, req string }{
		{"module", "PUT /v1/blobs/" + digest + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nContent-Length: 100\r\n\r\n0123456789"},
		{"json", "POST /v1/apps/hello/releases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		resp, raw := testtool.Exchange(t, c, bufio.NewReader(c), "POST", tc.req)
		c.Close()
		var body wire.Error
		json.Unmarshal([]byte(raw), &body)
		if resp.StatusCode != http.StatusRequestTimeout || body.Code != wire.CodeBodyTimeout || !strings.Contains(body.Message, "nothing for 1s") {
			t.Errorf("%s: %s %+v, want 408 %s, nothing for 1s", tc.name, resp.Status, body, wire.CodeBodyTimeout)
		}
	}
}
