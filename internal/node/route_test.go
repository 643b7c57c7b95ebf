package node

import (
	"errors"
	"strings"
	"testing"
)

// routeNode is a node with only the config appName reads.
func routeNode(domain string) *Node { return &Node{cfg: Config{Domain: domain}} }

func TestAppName(t *testing.T) {
	cases := []struct {
		name   string
		domain string // "" means localhost
		host   string
		want   string
		ok     bool
	}{
		{name: "plain", host: "hello.localhost", want: "hello", ok: true},
		{name: "with port", host: "hello.localhost:8080", want: "hello", ok: true},
		{name: "port 80", host: "hello.localhost:80", want: "hello", ok: true},
		{name: "empty port", host: "hello.localhost:", want: "hello", ok: true},
		{name: "upper case name", host: "HELLO.localhost", want: "hello", ok: true},
		{name: "upper case domain", host: "hello.LOCALHOST:8080", want: "hello", ok: true},
		{name: "mixed case", host: "HeLLo.LocalHost", want: "hello", ok: true},
		{name: "trailing dot", host: "hello.localhost.", want: "hello", ok: true},
		{name: "trailing dot and port", host: "hello.localhost.:8080", want: "hello", ok: true},
		{name: "digits and dash", host: "a-1.localhost", want: "a-1", ok: true},
		{name: "two trailing dots", host: "hello.localhost..", ok: false},
		{name: "nested subdomain", host: "a.b.localhost", ok: false},
		{name: "nested subdomain with port", host: "www.hello.localhost:8080", ok: false},
		{name: "bare domain", host: "localhost", ok: false},
		{name: "bare domain with port", host: "localhost:8080", ok: false},
		{name: "bare domain trailing dot", host: "localhost.", ok: false},
		{name: "empty label", host: ".localhost", ok: false},
		{name: "empty label with port", host: ".localhost:8080", ok: false},
		{name: "empty", host: "", ok: false},
		{name: "only port", host: ":8080", ok: false},
		{name: "only dot", host: ".", ok: false},
		{name: "suffix without dot", host: "evillocalhost", ok: false},
		{name: "suffix without dot, port", host: "evillocalhost:8080", ok: false},
		{name: "domain as prefix", host: "hello.localhost.evil.com", ok: false},
		{name: "domain in the middle", host: "localhost.hello", ok: false},
		{name: "other domain", host: "hello.example.com", ok: false},
		{name: "ipv4", host: "127.0.0.1:8080", ok: false},
		{name: "ipv6 with port", host: "[::1]:8080", ok: false},
		{name: "ipv6 without port", host: "[::1]", ok: false},
		{name: "ipv6 bare", host: "::1", ok: false},
		{name: "ipv6 zone", host: "[fe80::1%25eth0]:8080", ok: false},

		{name: "multi-label domain", domain: "apps.example.com", host: "hello.apps.example.com", want: "hello", ok: true},
		{name: "multi-label domain, port, case", domain: "apps.example.com", host: "Hello.Apps.Example.com:443", want: "hello", ok: true},
		{name: "multi-label domain, parent only", domain: "apps.example.com", host: "hello.example.com", ok: false},
		{name: "multi-label domain, suffix trick", domain: "apps.example.com", host: "hello.evilapps.example.com", ok: false},
		{name: "multi-label domain, bare", domain: "apps.example.com", host: "apps.example.com", ok: false},
		{name: "multi-label domain, nested", domain: "apps.example.com", host: "x.hello.apps.example.com", ok: false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			domain := c.domain
			if domain == "" {
				domain = "localhost"
			}
			got, ok := routeNode(domain).appName(c.host)
			if got != c.want || ok != c.ok {
				t.Errorf("appName(%q) with domain %q = %q, %v; want %q, %v", c.host, domain, got, ok, c.want, c.ok)
			}
		})
	}
}

func TestValidAppName(t *testing.T) {
	cases := []struct {
		name  string
		input string
		ok    bool
	}{
		{"one letter", "a", true},
		{"word", "hello", true},
		{"digits and dashes", "a1-b2-c3", true},
		{"double dash", "a--b", true},
		{"63 characters", "a" + strings.Repeat("b", 62), true},
		{"64 characters", "a" + strings.Repeat("b", 63), false},
		{"empty", "", false},
		{"upper case", "Hello", false},
		{"leading digit", "1abc", false},
		{"leading dash", "-abc", false},
		{"trailing dash", "abc-", false},
		{"only dash", "-", false},
		{"dot", "a.b", false},
		{"underscore", "a_b", false},
		{"space", "a b", false},
		{"slash", "a/b", false},
		{"colon", "a:8080", false},
		{"NUL", "a\x00", false},
		{"non-ASCII letter", "café", false},
		{"Kelvin sign", "\u212a", false},
		{"invalid UTF-8", "a\xff", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := ValidAppName(c.input)
			if (err == nil) != c.ok {
				t.Fatalf("ValidAppName(%q) = %v; want ok=%v", c.input, err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("ValidAppName(%q) = %v; want an error wrapping ErrInvalid", c.input, err)
			}
		})
	}
}

// isASCII reports whether s is all ASCII: net/http refuses a Host header
// with any other byte, so only such hosts reach appName from the network.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// FuzzAppName checks that appName never panics and never maps a host to a
// name it does not spell, and that every valid app name is reachable.
//
// The stronger invariant "every accepted name passes ValidAppName" does NOT
// hold: appName accepts any non-empty label without a dot ("a_b", "-x",
// 64+ characters), which is harmless because no such app can exist, and it
// folds non-ASCII letters to ASCII ("\u212a.localhost", the Kelvin sign, is
// app "k"), which net/http's Host validation keeps off the wire today. The
// checks below are the ones the router relies on.
func FuzzAppName(f *testing.F) {
	for _, s := range []string{
		"hello.localhost", "hello.localhost:8080", "HELLO.LOCALHOST.", "a.b.localhost",
		"localhost", "", "evillocalhost", "[::1]:8080", "[x.localhost]:1", ".localhost",
		"a_b.localhost", "\u212a.localhost", "hello.localhost.:", "x.localhost..",
	} {
		f.Add(s)
	}
	n := routeNode("localhost")
	f.Fuzz(func(t *testing.T, host string) {
		name, ok := n.appName(host)
		if !ok {
			if name != "" {
				t.Fatalf("appName(%q) refused but returned %q", host, name)
			}
			return
		}
		if name == "" || strings.Contains(name, ".") {
			t.Fatalf("appName(%q) = %q: empty or dotted", host, name)
		}
		if strings.ToLower(name) != name {
			t.Fatalf("appName(%q) = %q: not lower case", host, name)
		}
		// Routing is stable: the name's own address routes to it.
		if again, ok := n.appName(name + ".localhost"); !ok || again != name {
			t.Fatalf("appName(%q) = %q, but appName(%q) = %q, %v", host, name, name+".localhost", again, ok)
		}
		// For hosts that can arrive over HTTP, an app is reached only by
		// its own label (case-insensitively): no aliasing.
		if isASCII(host) && ValidAppName(name) == nil {
			label, _, _ := strings.Cut(strings.ToLower(host), ".")
			label = strings.TrimPrefix(label, "[")
			if label != name {
				t.Fatalf("appName(%q) = %q: a valid app reached through label %q", host, name, label)
			}
		}
	})
}

// FuzzValidAppName checks that every name ValidAppName accepts routes to
// itself from every spelling of its address.
func FuzzValidAppName(f *testing.F) {
	for _, s := range []string{"a", "hello", "a-1", "-a", "a-", "A", "", "a.b", strings.Repeat("a", 64)} {
		f.Add(s)
	}
	n := routeNode("localhost")
	f.Fuzz(func(t *testing.T, name string) {
		if ValidAppName(name) != nil {
			return
		}
		for _, host := range []string{
			name + ".localhost",
			strings.ToUpper(name) + ".LOCALHOST",
			name + ".localhost.",
			name + ".localhost:8080",
			name + ".localhost.:80",
		} {
			if got, ok := n.appName(host); !ok || got != name {
				t.Fatalf("valid name %q: appName(%q) = %q, %v", name, host, got, ok)
			}
		}
	})
}
