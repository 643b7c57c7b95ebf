package e2b

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testtool"
)

// TestStalledBodiesAreCut: a body that stops coming to E2B's control
// plane or to envd's own routes (a file upload, a call's message) is
// answered 408 after the body timeout and its handler let go, as on
// Frost's own API; the sandbox is not touched.
func TestStalledBodiesAreCut(t *testing.T) {
	m := newManager(t)
	sb, err := m.Create(context.Background(), api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	control := httptest.NewServer(New(Config{AdminToken: token, Domain: "frost.test", BodyTimeout: time.Second}, m))
	defer control.Close()
	envd := httptest.NewServer(NewEnvd(m, time.Second).Wrap("frost.test", http.NotFoundHandler()))
	defer envd.Close()

	const boundary = "XyZ"
	envdHeaders := "E2b-Sandbox-Id: " + sb.ID + "\r\nX-Access-Token: " + sb.Token + "\r\n"
	for _, tc := range []struct {
		name, url, req string
		status         int
		code           string // the error body's code
	}{
		{"create", control.URL, "POST /v2/sandboxes HTTP/1.1\r\nHost: x\r\nX-API-Key: e2b_00ff11ee\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"templateID\":", 408, "408"},
		{"timeout", control.URL, "POST /sandboxes/" + sb.ID + "/timeout HTTP/1.1\r\nHost: x\r\nX-API-Key: e2b_00ff11ee\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n", 408, "408"},
		{"connect", control.URL, "POST /sandboxes/" + sb.ID + "/connect HTTP/1.1\r\nHost: x\r\nX-API-Key: e2b_00ff11ee\r\nContent-Length: 20\r\n\r\n{", 408, "408"},
		{"upload", envd.URL, "POST /files?path=/root/x HTTP/1.1\r\nHost: x\r\n" + envdHeaders +
			"Content-Type: multipart/form-data; boundary=" + boundary + "\r\nContent-Length: 10000\r\n\r\n--" + boundary +
			"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\nthe first bytes", 408, "deadline_exceeded"},
		{"stat", envd.URL, "POST /filesystem.Filesystem/Stat HTTP/1.1\r\nHost: x\r\n" + envdHeaders +
			"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"path\":", 504, "deadline_exceeded"}, // Connect's status for that code
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(tc.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			resp, raw := testtool.Exchange(t, c, bufio.NewReader(c), "POST", tc.req)
			if waited := time.Since(start); resp.StatusCode != tc.status || waited < 900*time.Millisecond {
				t.Fatalf("%s after %v: %s", resp.Status, waited, raw)
			}
			var body struct {
				Code    any    `json:"code"`
				Message string `json:"message"`
			}
			json.Unmarshal([]byte(raw), &body)
			if strings.Trim(strings.TrimSpace(jsonString(body.Code)), `"`) != tc.code || !strings.Contains(body.Message, "stopped coming") {
				t.Fatalf("body %s: want code %s and why", raw, tc.code)
			}
		})
	}
	// Nothing was written, nothing changed.
	if _, err := m.Stat(context.Background(), sb.ID, "/root/x"); err == nil {
		t.Fatal("a cut upload left a file")
	}
	if got, err := m.Get(context.Background(), sb.ID); err != nil || got.State != api.SandboxRunning {
		t.Fatalf("the sandbox after: %+v %v", got, err)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
