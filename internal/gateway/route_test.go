package gateway

import (
	"strconv"
	"strings"
	"testing"

	"github.com/frostdev/frost/api"
)

func TestParse(t *testing.T) {
	id := SandboxTag("n1") + "abcdefghij0123456"[:SandboxIDLen-TagLen]
	for _, c := range []struct {
		host string
		want Route
	}{
		{"web.frost.test", Route{Kind: KindApp, App: "web"}},
		{"WEB.Frost.Test.:8443", Route{Kind: KindApp, App: "web"}},
		{"a--b.frost.test", Route{Kind: KindApp, App: "a--b"}},
		{"0-n1--web.frost.test", Route{Kind: KindPinned, App: "web", Node: "n1"}},
		{"0-node-2--a--b.frost.test:80", Route{Kind: KindPinned, App: "a--b", Node: "node-2"}},
		{"8000-" + id + ".frost.test", Route{Kind: KindSandbox, Sandbox: id, Port: 8000, NodeTag: SandboxTag("n1")}},
		// Not Frost's.
		{"frost.test", Route{}},
		{"web.other.test", Route{}},
		{"a.b.frost.test", Route{}},
		{"0-n1.frost.test", Route{}},
		{"0---web.frost.test", Route{}},
		{"0-N1--web.frost.test", Route{Kind: KindPinned, App: "web", Node: "n1"}},
		{"0-n1--9web.frost.test", Route{}},
		{"08000-" + id + ".frost.test", Route{}},
		{"70000-" + id + ".frost.test", Route{}},
		{"8000-" + id[:19] + ".frost.test", Route{}},
		{"8000-" + strings.ToUpper(id) + ".frost.test", Route{Kind: KindSandbox, Sandbox: id, Port: 8000, NodeTag: SandboxTag("n1")}},
		{"9web.frost.test", Route{}},
		{"wéb.frost.test", Route{}},
		{"web.frost.test.evil", Route{}},
	} {
		if got := Parse(c.host, "frost.test"); got != c.want {
			t.Errorf("Parse(%q) = %+v, want %+v", c.host, got, c.want)
		}
	}
}

func TestValidNodeName(t *testing.T) {
	for _, ok := range []string{"n", "n1", "node-2", "a-b-c"} {
		if err := ValidNodeName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1n", "-n", "n-", "a--b", "N1", "n_1", strings.Repeat("a", 33)} {
		if ValidNodeName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSandboxTag(t *testing.T) {
	seen := map[string]string{}
	for _, n := range []string{"n1", "n2", "n3", "node-a", "node-b"} {
		tag := SandboxTag(n)
		if len(tag) != TagLen || !validSandboxID(tag+strings.Repeat("0", SandboxIDLen-TagLen)) {
			t.Fatalf("tag %q of %q", tag, n)
		}
		if other, dup := seen[tag]; dup {
			t.Errorf("%q and %q share tag %q", n, other, tag)
		}
		seen[tag] = n
	}
	if SandboxTag("n1") != SandboxTag("n1") {
		t.Error("tags are not deterministic")
	}
}

// FuzzParse: whatever the host, Parse does not panic and what it returns
// is well formed: an app route names a valid app, a pinned one a valid
// node, a sandbox one a valid port and ID, and printing the route back
// parses to the same route.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"web.frost.test", "0-n1--web.frost.test", "8000-0000abcdefghij012345.frost.test", "", ".", "0-", "1-", "a.frost.test:99999", "[::1]:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		r := Parse(host, "frost.test")
		var back string
		switch r.Kind {
		case KindNone:
			return
		case KindApp:
			if api.ValidAppName(r.App) != nil {
				t.Fatalf("%q: app %q", host, r.App)
			}
			back = r.App
		case KindPinned:
			if api.ValidAppName(r.App) != nil || ValidNodeName(r.Node) != nil {
				t.Fatalf("%q: %+v", host, r)
			}
			back = "0-" + r.Node + "--" + r.App
		case KindSandbox:
			if r.Port < 1 || r.Port > 65535 || !validSandboxID(r.Sandbox) || r.NodeTag != r.Sandbox[:TagLen] {
				t.Fatalf("%q: %+v", host, r)
			}
			back = strconv.Itoa(r.Port) + "-" + r.Sandbox
		}
		if again := Parse(back+".frost.test", "frost.test"); again != r {
			t.Fatalf("%q → %+v → %q → %+v", host, r, back, again)
		}
	})
}
