package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/testguest"
)

// releaseOf returns an app's current release ID.
func (s *server) releaseOf(app string) string {
	s.t.Helper()
	var d struct {
		Release string `json:"release"`
		State   string `json:"state"`
	}
	if err := json.Unmarshal([]byte(s.mustFrost("app", app, "--json")), &d); err != nil {
		s.t.Fatal(err)
	}
	return d.Release
}

// stateOf returns an app's state, live or frozen.
func (s *server) stateOf(app string) string {
	s.t.Helper()
	var d struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(s.mustFrost("app", app, "--json")), &d); err != nil {
		s.t.Fatal(err)
	}
	return d.State
}

// counterOf extracts the probe's "counter" field.
func counterOf(body string) string {
	_, rest, _ := strings.Cut(body, `"counter":`)
	n, _, _ := strings.Cut(rest, ",")
	return n
}

// TestFreezeThawSessionAndRestart drives a session app through its life
// over the real binary: state kept while live; frozen by frost freeze and
// by idleness; thawed (Server-Timing says so) without running init,
// seeing a secret rotated while it slept, with no secret in any snapshot
// file; and thawed again, init still not run, after a server restart.
func TestFreezeThawSessionAndRestart(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	s.mustFrost("deploy", "s", testguest.Path(t, "probe"), "--mode", "session", "--env", "SECRET_ENV=first-secret", "--idle", "1h")
	for i, want := range []string{"0", "1", "2"} {
		resp, body := s.get("s", "/")
		if counterOf(body) != want || !strings.Contains(body, `"env":"first-secret"`) {
			t.Fatalf("request %d: %s", i, body)
		}
		if i > 0 && bootOf(resp) != "warm" {
			t.Fatalf("request %d boot %q, want warm", i, bootOf(resp))
		}
	}
	out := s.mustFrost("freeze", "s")
	if !strings.Contains(out, "frozen") || s.stateOf("s") != "frozen" {
		t.Fatalf("freeze: %s", out)
	}
	s.mustFrost("env", "set", "s", "SECRET_ENV=rotated-secret")
	resp, body := s.get("s", "/")
	if bootOf(resp) != "thaw" || !strings.Contains(resp.Header.Get("Server-Timing"), "wake;dur=") {
		t.Fatalf("after freeze: Server-Timing %q, want a thaw", resp.Header.Get("Server-Timing"))
	}
	if counterOf(body) != "0" || !strings.Contains(body, `"env":"rotated-secret"`) {
		t.Fatalf("after thaw: %s (want the post-init state and the rotated secret)", body)
	}
	if logs := s.mustFrost("logs", "s"); strings.Count(logs, "init ran") != 1 {
		t.Fatalf("init ran %d times, want once (at deploy):\n%s", strings.Count(logs, "init ran"), logs)
	}
	filepath.Walk(filepath.Join(data, "snapshots"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte("first-secret")) || bytes.Contains(b, []byte("rotated-secret")) {
				t.Errorf("snapshot file %s holds a secret", p)
			}
		}
		return nil
	})

	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, data)
	resp, body = s2.get("s", "/")
	if bootOf(resp) != "thaw" || counterOf(body) != "0" || !strings.Contains(body, `"env":"rotated-secret"`) {
		t.Fatalf("after restart: %q %s", resp.Header.Get("Server-Timing"), body)
	}
	if logs := s2.mustFrost("logs", "s"); strings.Contains(logs, "init ran") {
		t.Fatalf("init ran after the restart:\n%s", logs)
	}

	// Idle: frozen with no command after its idle timeout.
	s2.mustFrost("deploy", "idle", testguest.Path(t, "hello-c"), "--idle", "300ms")
	if resp, _ := s2.get("idle", "/"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s2.stateOf("idle") != "frozen" {
		if time.Now().After(deadline) {
			t.Fatal("an idle app was not frozen")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp, _ := s2.get("idle", "/"); bootOf(resp) != "thaw" {
		t.Fatalf("idle app woke %q, want thaw", bootOf(resp))
	}
}

// TestBadSnapshotsBootCold corrupts a baked snapshot on disk in every way
// the store must catch; each time the app boots cold (and says so), the
// fallback is counted, the bad snapshot is quarantined (unless it was
// simply missing), and the next freeze bakes a good one that thaws.
func TestBadSnapshotsBootCold(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	s.mustFrost("deploy", "other", testguest.Path(t, "hello-c"), "--bake")
	s.mustFrost("deploy", "p", testguest.Path(t, "probe"), "--bake", "--idle", "1h")
	rel, otherRel := s.releaseOf("p"), s.releaseOf("other")
	dir := filepath.Join(data, "snapshots", rel)
	manifest := filepath.Join(dir, "manifest.json")
	parts := func() map[string]string { // part name → file
		var m struct {
			Parts []struct{ Name, Sha256 string }
		}
		b, err := os.ReadFile(manifest)
		if err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(b, &m)
		out := map[string]string{}
		for _, p := range m.Parts {
			out[p.Name] = filepath.Join(dir, p.Sha256)
		}
		return out
	}
	edit := func(path string, fn func([]byte) []byte) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, fn(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	flip := func(at func(n int) int) func([]byte) []byte {
		return func(b []byte) []byte { b[at(len(b))] ^= 0x01; return b }
	}
	cases := []struct {
		name, reason string
		corrupt      func()
	}{
		{"flip memory first byte", "corrupt", func() { edit(parts()["memory"], flip(func(int) int { return 0 })) }},
		{"flip memory last byte", "corrupt", func() { edit(parts()["memory"], flip(func(n int) int { return n - 1 })) }},
		{"flip globals", "corrupt", func() { edit(parts()["globals"], flip(func(n int) int { return n / 2 })) }},
		{"flip fs", "corrupt", func() { edit(parts()["fs"], flip(func(n int) int { return n / 3 })) }},
		{"truncate memory", "corrupt", func() { edit(parts()["memory"], func(b []byte) []byte { return b[:len(b)/2] }) }},
		{"delete a part", "corrupt", func() { os.Remove(parts()["globals"]) }},
		{"flip manifest digest", "corrupt", func() {
			edit(manifest, func(b []byte) []byte {
				i := bytes.Index(b, []byte(`"sha256":"`)) + 10
				if b[i] == '0' {
					b[i] = '1'
				} else {
					b[i] = '0'
				}
				return b
			})
		}},
		{"other runtime version", "incompatible", func() {
			edit(manifest, func(b []byte) []byte { return bytes.Replace(b, []byte("frost-wasm/1"), []byte("frost-wasm/9"), 1) })
		}},
		{"another release's snapshot", "wrong_release", func() {
			b, err := os.ReadFile(filepath.Join(data, "snapshots", otherRel, "manifest.json"))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(manifest, b, 0o600)
		}},
		{"missing", "missing", func() { os.RemoveAll(dir) }},
	}
	for _, c := range cases {
		s.mustFrost("freeze", "p") // bakes if the last case left no snapshot
		if _, err := os.Stat(manifest); err != nil {
			t.Fatalf("%s: no snapshot before corrupting: %v", c.name, err)
		}
		c.corrupt()
		resp, body := s.get("p", "/")
		if resp.StatusCode != 200 || bootOf(resp) != "cold" || counterOf(body) != "0" {
			t.Fatalf("%s: %d boot %q: %s", c.name, resp.StatusCode, bootOf(resp), body)
		}
		var d struct {
			Counters struct {
				Fallbacks map[string]int `json:"fallbacks"`
			} `json:"counters"`
		}
		json.Unmarshal([]byte(s.mustFrost("app", "p", "--json")), &d)
		if d.Counters.Fallbacks[c.reason] == 0 {
			t.Fatalf("%s: fallbacks %v, want a %s", c.name, d.Counters.Fallbacks, c.reason)
		}
	}
	q, _ := os.ReadDir(filepath.Join(data, "snapshots", "quarantine"))
	if len(q) != len(cases)-1 {
		t.Errorf("%d snapshots quarantined, want %d (all but the missing one)", len(q), len(cases)-1)
	}
	// A fresh bake thaws again.
	s.mustFrost("freeze", "p")
	if resp, _ := s.get("p", "/"); bootOf(resp) != "thaw" {
		t.Fatalf("after a fresh bake: boot %q, want thaw", bootOf(resp))
	}
	if m := s.mustFrost("logs", "p"); !strings.Contains(m, "quarantined") {
		t.Errorf("logs do not say a snapshot was quarantined:\n%s", m)
	}
}
