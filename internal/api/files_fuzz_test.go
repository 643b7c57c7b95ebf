package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	wire "github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/sandbox/sandboxtest"
)

// newSandboxEnv is a control API over a real node and a sandbox manager on
// the fake sandbox runtime, with the admin token; its url is not set.
func newSandboxEnv(tb testing.TB) *env {
	tb.Helper()
	fm := sandboxtest.NewManager(tb, sandboxtest.New())
	return newEnvOver(tb, token, fm.Reg, fm.Manager)
}

// FuzzSandboxFileRoutes sends arbitrary ?path= and ?mode= values (the only
// query parameters the file routes read; mode only by PUT) and bodies to
// every sandbox file route over the fake sandbox runtime. The query is
// either encoded, so that the handler sees the fuzzed bytes exactly, or
// sent raw, so that malformed percent-escapes reach the parser. The
// answer is never a 5xx, a 4xx is a well-formed JSON error, a success has
// the shape its route promises, a file written reads back, no call
// outlives a second (a watch may stream until then), and the sandbox made
// first keeps answering.
func FuzzSandboxFileRoutes(f *testing.F) {
	h := newSandboxEnv(f).h
	call := func(ctx context.Context, method, target, rawQuery string, body []byte) *httptest.ResponseRecorder {
		r := httptest.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
		r.URL.RawQuery = rawQuery
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := call(context.Background(), "POST", "/v1/sandboxes", "", []byte(`{}`))
	var sb wire.Sandbox
	if w.Code != http.StatusCreated || json.Unmarshal(w.Body.Bytes(), &sb) != nil {
		f.Fatalf("create: %d %s", w.Code, w.Body)
	}
	base := "/v1/sandboxes/" + sb.ID
	w = call(context.Background(), "PUT", base+"/files", "path=/etc/hostname", []byte("box\n"))
	if w.Code != http.StatusOK {
		f.Fatalf("write /etc/hostname: %d %s", w.Code, w.Body)
	}
	routes := []struct{ method, path string }{
		{"GET", "/files"}, {"PUT", "/files"}, {"DELETE", "/files"},
		{"GET", "/files/stat"}, {"GET", "/files/list"}, {"POST", "/files/mkdir"}, {"GET", "/files/watch"},
	}
	for _, s := range []struct {
		route      int
		raw        bool
		path, mode string
		body       string
	}{
		{0, false, "/etc/hostname", "", ""},
		{0, false, "/nope", "", ""},
		{1, false, "/tmp/a.txt", "", "hello"},
		{1, false, "/tmp/x", "0755", "#!/bin/sh\n"},
		{1, false, "/tmp/x", "7777", ""},
		{1, false, "/tmp/x", "10000", "x"},
		{1, false, "/tmp/x", "-1", "x"},
		{1, false, "/tmp/x", "0o644", "x"},
		{1, false, "/tmp/x", "99999999999999999999", "x"},
		{1, false, "relative/x", "", "x"},
		{1, true, "%2Ftmp%2Fenc%20oded", "644", "x"},
		{2, false, "/", "", ""},
		{2, false, "/tmp/a.txt", "", ""},
		{3, false, "/etc/hostname", "", ""},
		{3, false, "/../../etc/passwd", "", ""},
		{3, false, "/a\x00b", "", ""},
		{3, false, "/\xff\xfe", "", ""},
		{3, false, "", "", ""},
		{3, true, "%zz", "", ""},
		{3, true, "/a;b", "", ""},
		{3, true, "%00", "", ""},
		{4, false, "/", "", ""},
		{4, false, "..", "", ""},
		{5, false, "/tmp/d/e", "", `{"path":"/x"}`},
		{6, false, "/tmp", "", ""},
		{6, false, "/etc/hostname", "", ""},
		{3, false, "/" + strings.Repeat("a/", 4096), "", ""},
	} {
		f.Add(uint8(s.route), s.raw, s.path, s.mode, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, route uint8, raw bool, p, mode string, body []byte) {
		rt := routes[int(route)%len(routes)]
		var q string
		if raw {
			q = "path=" + p + "&mode=" + mode
		} else {
			q = url.Values{"path": {p}, "mode": {mode}}.Encode()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		w := call(ctx, rt.method, base+rt.path, q, body)
		what := rt.method + " " + rt.path + "?" + q
		if ctx.Err() != nil && !(rt.path == "/files/watch" && w.Code == http.StatusOK) {
			t.Fatalf("%s: still running after a second: %d %s", what, w.Code, w.Body)
		}
		switch {
		case w.Code >= 500:
			t.Fatalf("%s: %d %s", what, w.Code, w.Body)
		case w.Code >= 400:
			if _, err := decodeError(w.Header(), w.Body.Bytes()); err != nil {
				t.Fatalf("%s: %d: %v", what, w.Code, err)
			}
		default:
			checkFileAnswer(t, what, rt.method, rt.path, w)
		}
		if rt.method == "PUT" && w.Code == http.StatusOK {
			sent, _ := url.ParseQuery(q) // what the handler read, as it read it
			back := call(context.Background(), "GET", base+"/files", url.Values{"path": {sent.Get("path")}}.Encode(), nil)
			if back.Code != http.StatusOK || !bytes.Equal(back.Body.Bytes(), body) {
				t.Fatalf("%s wrote %q; reading it back: %d %q", what, body, back.Code, back.Body)
			}
		}
		if w := call(context.Background(), "GET", base, "", nil); w.Code != http.StatusOK {
			t.Fatalf("the sandbox after %s: %d %s", what, w.Code, w.Body)
		}
	})
}

// checkFileAnswer checks that a successful answer of a file route has the
// shape that route promises.
func checkFileAnswer(t *testing.T, what, method, route string, w *httptest.ResponseRecorder) {
	t.Helper()
	ct := w.Header().Get("Content-Type")
	switch {
	case method == "DELETE":
		if w.Code != http.StatusNoContent {
			t.Fatalf("%s: %d, want 204", what, w.Code)
		}
	case method == "GET" && route == "/files":
		n, err := strconv.Atoi(w.Header().Get("Content-Length"))
		if w.Code != http.StatusOK || ct != "application/octet-stream" || err != nil || n != w.Body.Len() {
			t.Fatalf("%s: %d %q with Content-Length %q and %d bytes", what, w.Code, ct, w.Header().Get("Content-Length"), w.Body.Len())
		}
	case route == "/files/watch":
		sc := bufio.NewScanner(w.Body)
		for i := 0; sc.Scan(); i++ {
			var ev wire.FileEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || i == 0 && ev.Op != wire.FileEventReady {
				t.Fatalf("%s: event %d is %q (%v)", what, i, sc.Bytes(), err)
			}
		}
	case route == "/files/list":
		var list []wire.FileInfo
		if w.Code != http.StatusOK || ct != "application/json" || json.Unmarshal(w.Body.Bytes(), &list) != nil {
			t.Fatalf("%s: %d %q %s", what, w.Code, ct, w.Body)
		}
	default: // PUT, stat, mkdir: the file's FileInfo
		var fi wire.FileInfo
		if w.Code != http.StatusOK || ct != "application/json" || json.Unmarshal(w.Body.Bytes(), &fi) != nil || fi.Path == "" {
			t.Fatalf("%s: %d %q %s", what, w.Code, ct, w.Body)
		}
	}
}
