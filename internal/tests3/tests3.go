// Package tests3 starts a real S3-compatible server for tests: versitygw, of
// the version scripts/versitygw.sh installs (and `make test` installs through
// scripts/deps.sh), with its posix backend storing objects as plain files in
// the test's temporary directory, on a loopback port, over plain HTTP.
package tests3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/testtool"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Version is the versitygw version the tests run; scripts/versitygw.sh pins
// the same.
const Version = "v1.8.0"

// The fixed credentials, region and bucket of every test server.
const (
	AccessKey = "frosttestaccess"
	SecretKey = "frost-test-secret-key"
	Region    = "us-east-1"
	Bucket    = "frost-test"
)

// Binary returns the versitygw binary the tests run: $FROST_VERSITYGW if
// set, else where scripts/versitygw.sh installs it ($FROST_CACHE, default
// ~/.cache/frost, then versitygw/VERSION/versitygw). It is an error if the
// file is not there.
func Binary() (string, error) { return testtool.Binary("FROST_VERSITYGW", "versitygw", Version) }

// forceSidecar makes Start use a sidecar directory even where xattrs work,
// so the test of this package covers both ways of keeping metadata.
var forceSidecar bool

// Server is a running versitygw with one empty bucket.
type Server struct {
	Endpoint  string // host:port on 127.0.0.1, plain HTTP
	AccessKey string // root access key
	SecretKey string // root secret key
	Region    string
	Bucket    string // created by Start

	p *process
}

// Start starts versitygw on a free loopback port with its data in a new
// temporary directory, waits until it answers, and creates Bucket. It is
// killed when the test ends, and its log is shown if the test failed.
// Without the binary the test skips, saying how to install it.
func Start(t testing.TB) Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Skipf("versitygw %s not found (%v): run scripts/deps.sh (make test does)", Version, err)
	}
	dir := t.TempDir()
	data, meta := filepath.Join(dir, "data"), filepath.Join(dir, "meta")
	for _, d := range []string{data, meta} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p := &process{t: t, bin: bin, data: data, log: &testtool.SyncBuffer{}}
	if forceSidecar || !userXattrs(data) {
		p.sidecar = meta
	}
	t.Cleanup(func() {
		p.kill() // the data dies with the test: no need to be graceful
		if t.Failed() {
			t.Logf("versitygw log:\n%s", p.log.String())
		}
	})
	// The port is found by binding and releasing it, so another process
	// may take it before versitygw does; then try another.
	for attempt := 1; ; attempt++ {
		addrs, err := testtool.FreeAddrs(1)
		if err != nil {
			t.Fatal(err)
		}
		p.addr = addrs[0]
		err = p.start()
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(p.log.String(), "address already in use") {
			t.Fatalf("start versitygw: %v", err)
		}
	}
	s := Server{Endpoint: p.addr, AccessKey: AccessKey, SecretKey: SecretKey, Region: Region, Bucket: Bucket, p: p}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client(t).MakeBucket(ctx, Bucket, minio.MakeBucketOptions{Region: Region}); err != nil {
		t.Fatalf("create bucket %s: %v", Bucket, err)
	}
	return s
}

// Client returns a minio client for the server, for tests that work on the
// bucket behind a store's back. It does not retry: a stopped server fails
// its calls at once.
func (s Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:     s.Region,
		MaxRetries: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Sidecar reports whether versitygw keeps object metadata in a sidecar
// directory because the temporary directory has no user xattrs.
func (s Server) Sidecar() bool { return s.p.sidecar != "" }

// Stop stops the server (SIGTERM, then SIGKILL after a second) and
// returns once it has exited: connections are refused until Restart.
// Stopping a stopped server does nothing. Call it from the test's goroutine.
func (s Server) Stop() { s.p.stop() }

// Kill kills the server (SIGKILL) and returns once it has exited, cutting
// off requests in flight. Killing a stopped server does nothing. Call it
// from the test's goroutine.
func (s Server) Kill() { s.p.kill() }

// Restart starts the server again, on the same port with the same data, if
// it is stopped, and waits until it answers. The test fails if it cannot
// (another process took the port, say). Call it from the test's goroutine.
func (s Server) Restart() {
	s.p.t.Helper()
	if s.p.running() {
		return
	}
	if err := s.p.start(); err != nil {
		s.p.t.Fatalf("restart versitygw: %v", err)
	}
}

// process is one versitygw and how to start it again.
type process struct {
	t       testing.TB
	bin     string
	data    string // the posix backend's root: one directory per bucket
	sidecar string // metadata directory, or "" for xattrs on data
	addr    string // 127.0.0.1:port
	log     *testtool.SyncBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// start runs versitygw and waits until it answers HTTP. On error the
// process is gone and p.log holds its output.
func (p *process) start() error {
	args := []string{
		"--access", AccessKey,
		"--secret", SecretKey,
		"--region", Region,
		"--port", p.addr,
		"--keep-alive", // reuse connections, as real S3 does
		"--quiet",      // no per-request log lines
		"posix",
	}
	if p.sidecar != "" {
		args = append(args, "--sidecar", p.sidecar)
	}
	args = append(args, p.data)
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	for !answers(p.addr) {
		select {
		case <-exited:
			return fmt.Errorf("versitygw exited: %v", cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return errors.New("versitygw does not answer after 30s")
		}
	}
	return nil
}

// kill ends the process at once.
func (p *process) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop ends the process: SIGTERM, and SIGKILL if it has not exited in a
// second. versitygw waits for requests in flight, which a test may hold
// open, and its HTTP server (fasthttp) counts a connection that has not yet
// carried a request as busy for 5s; Go's HTTP client leaves such
// connections behind after bursts of concurrent requests.
func (p *process) stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// answers reports whether an HTTP server answers at addr: any response,
// even an error for an unsigned request, means versitygw is serving.
func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 5)
	n, _ := c.Read(buf)
	return string(buf[:n]) == "HTTP/"
}
