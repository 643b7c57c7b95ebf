package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testguest"
)

func TestDeployAndServeEveryShape(t *testing.T) {
	s := startServer(t, "")
	cases := []struct {
		name, guest, path string
		want              []string
		shape             string
	}{
		{"hello", "hello-c", "/", []string{"hello from frost\n"}, "http-wasm"},
		{"gohw", "go-httpwasm", "/some/path", []string{"hello from go http-wasm", "/some/path"}, "http-wasm"},
		{"cgi", "cgi", "/p/q?x=1", []string{"method=GET", "path=/p/q", "query=x=1", "server_name=cgi.localhost"}, "wagi"},
		{"gocgi", "go-cgi", "/echo?a=b", []string{"GET", "/echo", "a=b"}, "wagi"},
		{"demo", "hello-go", "/", []string{"hello from frost (go)"}, "wagi"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := s.mustFrost("deploy", c.name, testguest.Path(t, c.guest))
			if !strings.Contains(out, c.shape) || !strings.Contains(out, "http://"+c.name+".localhost") {
				t.Errorf("deploy output does not name shape %s and the URL:\n%s", c.shape, out)
			}
			resp, body := s.get(c.name, c.path)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			for _, w := range c.want {
				if !strings.Contains(body, w) {
					t.Errorf("body lacks %q:\n%s", w, body)
				}
			}
			st := resp.Header.Get("Server-Timing")
			if !strings.Contains(st, "boot;desc=") || !strings.Contains(st, "run;dur=") {
				t.Errorf("Server-Timing = %q", st)
			}
		})
	}

	// The app list and details reflect the deploys.
	var apps []api.App
	if err := json.Unmarshal([]byte(s.mustFrost("apps", "--json")), &apps); err != nil {
		t.Fatal(err)
	}
	if len(apps) != len(cases) {
		t.Errorf("frost apps lists %d apps, want %d", len(apps), len(cases))
	}
	table := s.mustFrost("apps")
	for _, c := range cases {
		if !strings.Contains(table, c.name) {
			t.Errorf("frost apps table lacks %s:\n%s", c.name, table)
		}
	}
	var d api.AppDetail
	if err := json.Unmarshal([]byte(s.mustFrost("app", "hello", "--json")), &d); err != nil {
		t.Fatal(err)
	}
	if d.Counters.Requests != 1 || d.Shape != "http-wasm" || len(d.Releases) != 1 {
		t.Errorf("app detail: requests %d shape %q releases %d", d.Counters.Requests, d.Shape, len(d.Releases))
	}

	// CGI stderr goes to the app's logs.
	logs := s.mustFrost("logs", "cgi")
	if !strings.Contains(logs, "cgi guest served") {
		t.Errorf("frost logs cgi lacks the guest's stderr line:\n%s", logs)
	}

	// Unknown apps get a 404 that says what to do.
	resp, body := s.get("nope", "/")
	if resp.StatusCode != 404 || !strings.Contains(body, "frost deploy nope") {
		t.Errorf("unknown app: %d %q", resp.StatusCode, body)
	}

	// rm removes the app.
	s.mustFrost("rm", "gocgi")
	if resp, _ := s.get("gocgi", "/"); resp.StatusCode != 404 {
		t.Errorf("after rm: status %d", resp.StatusCode)
	}
}

func TestBadModulesAreRefusedAndChangeNothing(t *testing.T) {
	s := startServer(t, "")
	s.mustFrost("deploy", "app", testguest.Path(t, "hello-c"))
	cases := []struct{ guest, want string }{
		{"not-wasm", "not a WebAssembly"},
		{"truncated", "wasm"},
		{"noshape", "neither exports handle_request"},
	}
	for _, c := range cases {
		t.Run(c.guest, func(t *testing.T) {
			_, errs, code := s.frost("deploy", "app", testguest.Path(t, c.guest))
			if code == 0 {
				t.Fatal("deploy of a bad module succeeded")
			}
			if !strings.Contains(strings.ToLower(errs), strings.ToLower(c.want)) {
				t.Errorf("error does not say %q:\n%s", c.want, errs)
			}
			resp, body := s.get("app", "/")
			if resp.StatusCode != 200 || body != "hello from frost\n" {
				t.Errorf("the deployed app changed: %d %q", resp.StatusCode, body)
			}
		})
	}
	out := s.mustFrost("app", "app", "--json")
	var d api.AppDetail
	json.Unmarshal([]byte(out), &d)
	if len(d.Releases) != 1 {
		t.Errorf("bad deploys created releases: %d", len(d.Releases))
	}
}

func TestControlAPIAuth(t *testing.T) {
	s := startServer(t, "")
	fi, err := os.Stat(filepath.Join(s.data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("admin.token mode %v, want 0600", fi.Mode().Perm())
	}
	if resp, _ := s.apiReq("GET", "/v1/health", "-", nil); resp.StatusCode != 200 {
		t.Errorf("health without token: %d", resp.StatusCode)
	}
	routes := []struct{ method, path string }{
		{"GET", "/v1/apps"}, {"GET", "/v1/apps/x"}, {"POST", "/v1/apps/x/releases"}, {"DELETE", "/v1/apps/x"},
		{"PATCH", "/v1/apps/x/env"}, {"GET", "/v1/apps/x/logs"}, {"PUT", "/v1/blobs/" + strings.Repeat("a", 64)},
		{"HEAD", "/v1/blobs/" + strings.Repeat("a", 64)}, {"GET", "/metrics"}, {"GET", "/v1/nothing"},
	}
	for _, r := range routes {
		for _, tok := range []string{"-", "wrong"} {
			resp, body := s.apiReq(r.method, r.path, tok, nil)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d %s", r.method, r.path, tok, resp.StatusCode, body)
			}
		}
	}
	// The CLI finds the token in the data directory by itself.
	cmd := []string{"apps", "--api", "http://" + s.api, "--data", s.data}
	out, errs, code := s.frostNoEnv(cmd...)
	if code != 0 {
		t.Errorf("frost apps with --data: %d %s %s", code, out, errs)
	}
	_, errs, code = s.frostWithToken("bad", "apps")
	if code == 0 || !strings.Contains(errs, "token") {
		t.Errorf("wrong token: exit %d, stderr %q", code, errs)
	}
}

func TestMetrics(t *testing.T) {
	s := startServer(t, "")
	s.mustFrost("deploy", "m", testguest.Path(t, "hello-c"))
	for i := 0; i < 3; i++ {
		s.get("m", "/")
	}
	_, body := s.apiReq("GET", "/metrics", "", nil)
	for _, want := range []string{`frost_requests_total{app="m",code="200"} 3`, `frost_boots_total{app="m",boot="warm",mode="request"}`, "frost_request_duration_seconds_bucket", "frost_limit_kills_total"} {
		if want == "frost_limit_kills_total" {
			continue // appears once a limit fires; see limits_test
		}
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Those plain HTTP/1.1 requests were answered by the app listener's
	// front; an HTTP/1.0 one goes to net/http and is answered the same.
	if n := metricValue(body, "frost_http_front_requests_total"); n < 3 {
		t.Errorf("frost_http_front_requests_total %v, want at least 3", n)
	}
	conn, err := net.Dial("tcp", s.http)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET / HTTP/1.0\r\nHost: m.localhost\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "hello") {
		t.Fatalf("HTTP/1.0: %s %q", resp.Status, b)
	}
	_, body = s.apiReq("GET", "/metrics", "", nil)
	if n := metricValue(body, "frost_http_handed_connections_total"); n != 1 {
		t.Errorf("frost_http_handed_connections_total %v, want 1", n)
	}
}
