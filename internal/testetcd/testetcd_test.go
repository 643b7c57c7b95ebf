package testetcd

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// TestCluster: three members elect one leader; with the leader killed the
// other two elect another; the killed one comes back as a follower.
func TestCluster(t *testing.T) {
	ss := StartCluster(t, 3)
	if got := Endpoints(ss); len(got) != 3 {
		t.Fatalf("endpoints %q, want 3", got)
	}
	leader := waitLeader(t, ss)
	ss[leader].Kill()
	rest := append(append([]*Server{}, ss[:leader]...), ss[leader+1:]...)
	waitLeader(t, rest)
	if err := ss[leader].Restart(); err != nil {
		t.Fatal(err)
	}
	if lead, err := ss[leader].IsLeader(); err != nil || lead {
		t.Errorf("the restarted member: leader %v, %v; want a follower", lead, err)
	}
}

// waitLeader waits until exactly one of ss is the leader and returns it.
func waitLeader(t *testing.T, ss []*Server) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		leader, n := -1, 0
		for i, s := range ss {
			if lead, err := s.IsLeader(); err == nil && lead {
				leader, n = i, n+1
			}
		}
		if n == 1 {
			return leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d leaders after 30s, want 1", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
