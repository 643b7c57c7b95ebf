package sandbox

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTokens(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := &Manager{cfg: Config{Key: []byte("0123456789abcdef0123456789abcdef"), TokenTTL: time.Hour, Now: func() time.Time { return now }}}
	tok := m.Token("aaaaaaaaaaaaaaaaaaaa")
	if err := m.CheckToken("aaaaaaaaaaaaaaaaaaaa", tok); err != nil {
		t.Fatalf("own token refused: %v", err)
	}
	if err := m.CheckToken("bbbbbbbbbbbbbbbbbbbb", tok); err == nil {
		t.Fatal("a token opened another sandbox")
	}
	// Any change to the expiry or the MAC is refused.
	exp, mac, _ := strings.Cut(tok, ".")
	for _, bad := range []string{"", "x", exp, exp + ".", "." + mac, exp + "." + mac[:len(mac)-2] + "AA", "AAAAAAAAAAA." + mac} {
		if err := m.CheckToken("aaaaaaaaaaaaaaaaaaaa", bad); err == nil {
			t.Errorf("token %q accepted", bad)
		}
	}
	other := &Manager{cfg: Config{Key: []byte("another key, another server....."), TokenTTL: time.Hour, Now: m.cfg.Now}}
	if err := other.CheckToken("aaaaaaaaaaaaaaaaaaaa", tok); err == nil {
		t.Fatal("a token signed with another key was accepted")
	}
	now = now.Add(2 * time.Hour)
	if err := m.CheckToken("aaaaaaaaaaaaaaaaaaaa", tok); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
}

func TestPortTarget(t *testing.T) {
	id := "abcdefghij0123456789"
	for host, want := range map[string]string{
		"8000-" + id + ".localhost":       "8000",
		"8000-" + id + ".localhost:8080":  "8000",
		"8000-" + id + ".LOCALHOST":       "8000",
		"1-" + id + ".localhost":          "1",
		"65535-" + id + ".localhost":      "65535",
		"65536-" + id + ".localhost":      "",
		"0-" + id + ".localhost":          "",
		"08000-" + id + ".localhost":      "",
		"8000-short.localhost":            "",
		"web-" + id + ".localhost":        "",
		"8000-" + id + ".other.localhost": "",
		"8000-" + id + ".example.com":     "",
		"hello.localhost":                 "",
	} {
		gotID, port, ok := target(host, ".localhost")
		switch {
		case want == "" && ok:
			t.Errorf("%s: taken for sandbox port %s:%d", host, gotID, port)
		case want != "" && (!ok || gotID != id || want != strconv.Itoa(port)):
			t.Errorf("%s: %q %d %v, want port %s", host, gotID, port, ok, want)
		}
	}
}
