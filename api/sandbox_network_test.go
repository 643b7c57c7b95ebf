package api

import "testing"

func TestHostPattern(t *testing.T) {
	for in, want := range map[string]string{
		"pypi.org": "pypi.org", "PyPI.org.": "pypi.org", "*.github.com": "*.github.com",
		"files.pythonhosted.org": "files.pythonhosted.org", "_dmarc.example.com": "_dmarc.example.com",
		"localhost": "", "*.com": "", "exa mple.com": "", "-a.com": "", "a-.com": "", "1.2.3.4": "", "": "", "*.": "", "a..com": "",
	} {
		got, ok := HostPattern(in)
		if ok != (want != "") || got != want && ok {
			t.Errorf("HostPattern(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"pypi.org", "pypi.org", true}, {"pypi.org", "x.pypi.org", false},
		{"*.github.com", "api.github.com", true}, {"*.github.com", "a.b.github.com", true},
		{"*.github.com", "github.com", false}, {"*.github.com", "evilgithub.com", false},
	} {
		if got := MatchHost(c.pattern, c.name); got != c.want {
			t.Errorf("MatchHost(%q, %q) = %v", c.pattern, c.name, got)
		}
	}
}
