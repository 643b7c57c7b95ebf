package testetcd

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestBinaryFromEnv(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "etcd")
	t.Setenv("FROST_ETCD", missing)
	if _, err := Binary(); err == nil || !strings.Contains(err.Error(), "FROST_ETCD") {
		t.Fatalf("Binary with FROST_ETCD=%s = %v, want an error naming FROST_ETCD", missing, err)
	}
}

// TestStart: two servers at once, each healthy on its own port.
func TestStart(t *testing.T) {
	a, b := Start(t), Start(t)
	if len(a) != 1 || len(b) != 1 || a[0] == b[0] {
		t.Fatalf("endpoints %q and %q, want one each, different", a, b)
	}
	for _, e := range append(a, b...) {
		if !healthy(e) {
			t.Errorf("%s is not healthy", e)
		}
	}
}

// TestRestart: a killed member comes back on its endpoint.
func TestRestart(t *testing.T) {
	s := StartServer(t)
	e := s.Endpoints()[0]
	s.Kill()
	if healthy(e) {
		t.Fatal("healthy after Kill")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if !healthy(e) {
		t.Fatalf("%s is not healthy after Restart", e)
	}
	if err := s.Restart(); err == nil {
		t.Fatal("Restart of a running member did not fail")
	}
}
