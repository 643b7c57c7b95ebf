// Package testetcd starts a real etcd for tests: a single member on
// loopback, of the version scripts/etcd.sh builds (and `make test` installs
// through scripts/deps.sh), with its data in the test's temporary directory.
package testetcd

import (
	"bytes"
	"context"
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
	client, peer string // URLs
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
	s := &Server{bin: bin, dir: t.TempDir(), log: &testtool.SyncBuffer{}}
	addrs, err := testtool.FreeAddrs(2)
	if err != nil {
		return s, err
	}
	s.client, s.peer = "http://"+addrs[0], "http://"+addrs[1]
	if err := s.run(); err != nil {
		return s, err
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("etcd log:\n%s", s.log.String())
		}
	})
	return s, nil
}

// run starts the process and waits until etcd is healthy. On error the
// process is gone.
func (s *Server) run() error {
	s.exited = make(chan struct{})
	s.cmd = exec.Command(s.bin,
		"--name=test",
		"--data-dir="+filepath.Join(s.dir, "data"),
		"--listen-client-urls="+s.client,
		"--advertise-client-urls="+s.client,
		"--listen-peer-urls="+s.peer,
		"--initial-advertise-peer-urls="+s.peer,
		"--initial-cluster=test="+s.peer,
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

	deadline := time.Now().Add(30 * time.Second)
	for {
		if healthy(s.client) {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("etcd exited: %v", cmd.ProcessState)
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
