package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBuildsForEveryPlatform builds frost and the Go client for each system
// the Makefile's PLATFORMS names (what `make dist` ships): a Linux-only
// call outside a file built for Linux alone breaks the build elsewhere,
// and nothing else here would notice.
func TestBuildsForEveryPlatform(t *testing.T) {
	if testing.Short() {
		t.Skip("cross builds take a minute each from a cold cache")
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^PLATFORMS\s*:=\s*(.+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile names no PLATFORMS")
	}
	goBin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	for _, p := range strings.Fields(string(m[1])) {
		goos, goarch, ok := strings.Cut(p, "/")
		if !ok {
			t.Fatalf("PLATFORMS: %q is not OS/ARCH", p)
		}
		t.Run(goos+"-"+goarch, func(t *testing.T) {
			cmd := exec.Command(goBin, "build", "-o", t.TempDir(), "../../cmd/frost", "../../api/...")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("GOOS=%s GOARCH=%s go build: %v\n%s", goos, goarch, err, out)
			}
		})
	}
}
