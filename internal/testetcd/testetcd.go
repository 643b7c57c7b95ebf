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
	bin, err := Binary()
	if err != nil {
		t.Skipf("etcd %s not found (%v): run scripts/deps.sh (make test does)", Version, err)
	}
	// Two free ports are found by binding and releasing them, so another
	// process may take one before etcd does; then try again.
	for attempt := 1; ; attempt++ {
		s, err := start(t, bin)
		if err == nil {
			return []string{s.client}
		}
		if attempt == 3 || !strings.Contains(s.log.String(), "address already in use") {
			t.Fatalf("start etcd: %v\netcd log:\n%s", err, s.log.String())
		}
	}
}

type server struct {
	client string
	cmd    *exec.Cmd
	log    *testtool.SyncBuffer
	exited chan struct{}
}

// start runs one etcd and waits until it is healthy. On error the process
// is gone and s.log holds its output.
func start(t testing.TB, bin string) (*server, error) {
	addrs, err := testtool.FreeAddrs(2)
	if err != nil {
		return &server{log: &testtool.SyncBuffer{}}, err
	}
	client, peer := addrs[0], addrs[1]
	clientURL, peerURL := "http://"+client, "http://"+peer
	dir := t.TempDir()
	s := &server{client: clientURL, log: &testtool.SyncBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(bin,
		"--name=test",
		"--data-dir="+filepath.Join(dir, "data"),
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=test="+peerURL,
		"--initial-cluster-state=new",
		// A test's data dies with it: skip the fsyncs that would
		// otherwise dominate the time of every write.
		"--unsafe-no-fsync",
	)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = sysProcAttr()
	if err := s.cmd.Start(); err != nil {
		return s, err
	}
	go func() { s.cmd.Wait(); close(s.exited) }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		if healthy(clientURL) {
			break
		}
		select {
		case <-s.exited:
			return s, fmt.Errorf("etcd exited: %v", s.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return s, errors.New("etcd not healthy after 30s")
		}
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("etcd log:\n%s", s.log.String())
		}
	})
	return s, nil
}

// stop ends the process: SIGTERM, and SIGKILL if it has not exited in 10s.
func (s *server) stop() {
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
