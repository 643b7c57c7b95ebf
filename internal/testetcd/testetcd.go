// Package testetcd starts a real etcd for tests: a single member, or a
// cluster of several, on loopback, of the version scripts/etcd.sh builds
// (and `make test` installs through scripts/deps.sh), with its data in the
// test's temporary directory. A test can kill a member and start it again.
package testetcd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/testtool"
)

// Version is the etcd version the tests run; scripts/etcd.sh pins the same.
const Version = "v3.7.3"

// Binary returns the etcd binary the tests run: $FROST_ETCD if set, else
// where scripts/etcd.sh installs it ($FROST_CACHE, default ~/.cache/frost,
// then etcd/VERSION/etcd). It is an error if the file is not there.
func Binary() (string, error) { return testtool.Binary("FROST_ETCD", "etcd", Version) }

// Start starts a single-member etcd on free loopback ports and returns its
// client endpoints once it is healthy. It stops (SIGTERM, then SIGKILL) when
// the test ends, and its log is shown if the test failed. Without the binary
// the test skips, saying how to install it.
func Start(t testing.TB) (endpoints []string) {
	t.Helper()
	return StartServer(t).Endpoints()
}

// StartServer is Start for a test that takes etcd away and brings it back:
// Kill and Restart.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skipf("etcd %s not found (%v): run scripts/deps.sh (make test does)", Version, err)
	}
	// Two free ports are found by binding and releasing them, so another
	// process may take one before etcd does; then try again.
	for attempt := 1; ; attempt++ {
		s, err := start(t, bin)
		if err == nil {
			return s
		}
		if attempt == 3 || !strings.Contains(s.log.String(), "address already in use") {
			t.Fatalf("start etcd: %v\netcd log:\n%s", err, s.log.String())
		}
	}
}

// Server is one etcd member a test started.
type Server struct {
	bin, dir     string
	name         string
	client, peer string // URLs
	initial      string // --initial-cluster: every member's name=peer URL
	log          *testtool.SyncBuffer

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Endpoints returns the member's client URLs.
func (s *Server) Endpoints() []string { return []string{s.client} }

// Kill kills the member (SIGKILL, as a crash or a lost machine would) and
// waits for it to be gone.
func (s *Server) Kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// Restart starts a killed member again, on the same ports with the same
// data, and waits until it is healthy.
func (s *Server) Restart() error {
	select {
	case <-s.exited:
	default:
		return errors.New("etcd is still running")
	}
	return s.run()
}

// start makes a member on free ports and runs it. On error the process is
// gone and s.log holds its output.
func start(t testing.TB, bin string) (*Server, error) {
	ss, err := members(t, bin, 1)
	if err != nil {
		return &Server{log: &testtool.SyncBuffer{}}, err
	}
	s := ss[0]
	if err := s.run(); err != nil {
		return s, err
	}
	cleanup(t, ss)
	return s, nil
}

// members makes n members of one cluster on free ports, not started.
func members(t testing.TB, bin string, n int) ([]*Server, error) {
	addrs, err := testtool.FreeAddrs(2 * n)
	if err != nil {
		return nil, err
	}
	ss := make([]*Server, n)
	var initial []string
	for i := range ss {
		s := &Server{bin: bin, dir: t.TempDir(), name: fmt.Sprintf("m%d", i+1), log: &testtool.SyncBuffer{}}
		s.client, s.peer = "http://"+addrs[2*i], "http://"+addrs[2*i+1]
		initial = append(initial, s.name+"="+s.peer)
		ss[i] = s
	}
	for _, s := range ss {
		s.initial = strings.Join(initial, ",")
	}
	return ss, nil
}

// cleanup stops ss when the test ends, showing their logs if it failed.
func cleanup(t testing.TB, ss []*Server) {
	t.Cleanup(func() {
		for _, s := range ss {
			s.stop()
		}
		if t.Failed() {
			for _, s := range ss {
				t.Logf("etcd %s log:\n%s", s.name, s.log.String())
			}
		}
	})
}

// StartCluster starts an etcd cluster of n members on loopback (n odd: a
// majority must stay for it to serve) and returns them once every one is
// healthy; they stop when the test ends. Endpoints lists their client
// URLs. Without the binary the test skips.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skipf("etcd %s not found (%v): run scripts/deps.sh (make test does)", Version, err)
	}
	ss, err := members(t, bin, n)
	if err != nil {
		t.Fatal(err)
	}
	cleanup(t, ss)
	// Each waits for a quorum: all start before any is waited on.
	for _, s := range ss {
		if err := s.launch(); err != nil {
			t.Fatalf("start etcd %s: %v", s.name, err)
		}
	}
	for _, s := range ss {
		if err := s.waitHealthy(); err != nil {
			t.Fatalf("etcd %s: %v", s.name, err)
		}
	}
	return ss
}

// Endpoints returns the client URLs of ss.
func Endpoints(ss []*Server) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.client)
	}
	return out
}

// IsLeader says whether the member is its cluster's leader now.
func (s *Server) IsLeader() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.client+"/v3/maintenance/status", strings.NewReader("{}"))
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var st struct {
		Header struct {
			MemberID string `json:"member_id"`
		} `json:"header"`
		Leader string `json:"leader"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return false, fmt.Errorf("etcd %s status: %w", s.name, err)
	}
	return st.Leader != "" && st.Leader == st.Header.MemberID, nil
}

// run starts the process and waits until etcd is healthy. On error the
// process is gone.
func (s *Server) run() error {
	if err := s.launch(); err != nil {
		return err
	}
	return s.waitHealthy()
}

// launch starts the process.
func (s *Server) launch() error {
	s.exited = make(chan struct{})
	s.cmd = exec.Command(s.bin,
		"--name="+s.name,
		"--data-dir="+filepath.Join(s.dir, "data"),
		"--listen-client-urls="+s.client,
		"--advertise-client-urls="+s.client,
		"--listen-peer-urls="+s.peer,
		"--initial-advertise-peer-urls="+s.peer,
		"--initial-cluster="+s.initial,
		"--initial-cluster-state=new",
		// A test's data dies with it: skip the fsyncs that would
		// otherwise dominate the time of every write.
		"--unsafe-no-fsync",
	)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = sysProcAttr()
	if err := s.cmd.Start(); err != nil {
		close(s.exited)
		return err
	}
	cmd, exited := s.cmd, s.exited
	go func() { cmd.Wait(); close(exited) }()
	return nil
}

// waitHealthy waits until the member says it is healthy (it has a
// leader); on error the process is gone.
func (s *Server) waitHealthy() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if healthy(s.client) {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("etcd exited: %v", s.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return errors.New("etcd not healthy after 30s")
		}
	}
}

// stop ends the process if it runs: SIGTERM, and SIGKILL if it has not
// exited in 10s.
func (s *Server) stop() {
	if s.exited == nil {
		return // never started
	}
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// healthy reports whether etcd's /health says so.
func healthy(clientURL string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientURL+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(b.String(), `"health":"true"`)
}
