package e2b

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry/bolt"
	"github.com/frostdev/frost/internal/sandbox"
	"github.com/frostdev/frost/internal/sandbox/sandboxtest"
	"github.com/frostdev/frost/internal/snapshot"
)

func newManager(t *testing.T) *sandbox.Manager {
	t.Helper()
	dir := t.TempDir()
	reg, err := bolt.Open(filepath.Join(dir, "reg.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	snaps, err := snapshot.Open(filepath.Join(dir, "snaps"), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := sandbox.DefaultConfig()
	cfg.Dir, cfg.BaseRootFS, cfg.Key = filepath.Join(dir, "scratch"), dir, []byte("0123456789abcdef0123456789abcdef")
	m, err := sandbox.New(cfg, reg, snaps, sandboxtest.New())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// envelopes splits a Connect stream into (flag, message) pairs.
func envelopes(t *testing.T, b []byte) (flags []byte, msgs []string) {
	t.Helper()
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("truncated envelope: %q", b)
		}
		n := binary.BigEndian.Uint32(b[1:5])
		flags = append(flags, b[0])
		msgs = append(msgs, string(b[5:5+n]))
		b = b[5+n:]
	}
	return flags, msgs
}

func TestEnvdRoutingAuthAndStart(t *testing.T) {
	m := newManager(t)
	sb, err := m.Create(context.Background(), api.SandboxCreateRequest{Env: map[string]string{"K": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "next") })
	srv := httptest.NewServer(NewEnvd(m).Wrap("frost.test", next))
	defer srv.Close()

	do := func(host string, hdr map[string]string, path string, body []byte) (int, []byte) {
		req, _ := http.NewRequest("POST", srv.URL+path, bytes.NewReader(body))
		if host != "" {
			req.Host = host
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	// Not for envd: the next handler.
	if _, b := do("", nil, "/", nil); string(b) != "next" {
		t.Fatalf("plain request: %q", b)
	}
	if _, b := do("", map[string]string{"E2b-Sandbox-Id": sb.ID, "E2b-Sandbox-Port": "8000"}, "/", nil); string(b) != "next" {
		t.Fatalf("another port: %q", b)
	}
	// For envd, without and with the access token.
	if st, _ := do("", map[string]string{"E2b-Sandbox-Id": sb.ID}, "/filesystem.Filesystem/Stat", []byte(`{"path":"/x"}`)); st != 401 {
		t.Fatalf("no token: %d", st)
	}
	if st, _ := do("49983-"+sb.ID+".frost.test", map[string]string{"X-Access-Token": "bogus"}, "/filesystem.Filesystem/Stat", []byte(`{"path":"/x"}`)); st != 401 {
		t.Fatalf("bad token by host: %d", st)
	}
	tok := map[string]string{"E2b-Sandbox-Id": sb.ID, "X-Access-Token": sb.Token}
	if st, b := do("", tok, "/filesystem.Filesystem/Stat", []byte(`{"path":"/nope"}`)); st != 404 || !strings.Contains(string(b), `"not_found"`) {
		t.Fatalf("stat of a missing file: %d %s", st, b)
	}
	if st, b := do("", tok, "/process.Process/Connect", []byte(`{}`)); st != 501 || !strings.Contains(string(b), "unimplemented") {
		t.Fatalf("unimplemented method: %d %s", st, b)
	}
	if st, b := do("", tok, "/process.Process/SendSignal", []byte(`{"process":{"pid":4242},"signal":"SIGNAL_SIGKILL"}`)); st != 404 || !strings.Contains(string(b), `"not_found"`) {
		t.Fatalf("signal to no process: %d %s", st, b)
	}

	// Start: start first, then output, then end, then end-of-stream.
	req, _ := json.Marshal(map[string]any{"process": map[string]any{"cmd": "/bin/bash", "args": []string{"-l", "-c", "echo hi"}}})
	env := append([]byte{0, 0, 0, 0, 0}, req...)
	binary.BigEndian.PutUint32(env[1:5], uint32(len(req)))
	st, b := do("", tok, "/process.Process/Start", env)
	if st != 200 {
		t.Fatalf("start: %d %s", st, b)
	}
	flags, msgs := envelopes(t, b)
	if len(msgs) != 4 || !strings.Contains(msgs[0], `"start"`) || !strings.Contains(msgs[1], `"stdout"`) ||
		!strings.Contains(msgs[2], `"end"`) || !strings.Contains(msgs[2], `"exitCode":0`) || flags[3] != 2 || msgs[3] != "{}" {
		t.Fatalf("stream: flags %v, messages %q", flags, msgs)
	}
	// The sandbox's environment reached the command (the fake echoes K).
	var ev struct {
		Event struct {
			Data struct {
				Stdout []byte `json:"stdout"`
			} `json:"data"`
		} `json:"event"`
	}
	json.Unmarshal([]byte(msgs[1]), &ev)
	if !strings.Contains(string(ev.Event.Data.Stdout), "env=v") {
		t.Fatalf("stdout %q: the sandbox's env did not reach the command", ev.Event.Data.Stdout)
	}
}
