// Package frostproc starts and stops `frost server` processes for the
// benchmark and soak programs under bench/, on loopback ports and
// throwaway data directories.
package frostproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/frostdev/frost/api"
)

// Server is a running frost server.
type Server struct {
	Cmd  *exec.Cmd
	Data string
	API  *api.Client
	// Token is the admin token.
	Token string
	// HTTP is the app listener's host:port; Client dials it for any host.
	HTTP   string
	Client *http.Client
	done   chan struct{}
	stderr *strings.Builder
}

var (
	apiRE  = regexp.MustCompile(`control API: (http://\S+)`)
	httpRE = regexp.MustCompile(`apps:\s+http://NAME\.localhost:(\d+)/`)
)

// Start runs `frost server` with args on loopback ports and a fresh data
// directory and waits until it is ready.
func Start(ctx context.Context, bin string, args ...string) (*Server, error) {
	data, err := os.MkdirTemp("", "frost-wake-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append([]string{"server", "--data", data, "--http", "127.0.0.1:0", "--api", "127.0.0.1:0", "--log-level", "warn"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s := &Server{Cmd: cmd, Data: data, done: make(chan struct{}), stderr: &strings.Builder{}}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { cmd.Wait(); close(s.done) }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var apiURL string
	timeout := time.After(time.Minute)
	for apiURL == "" || s.HTTP == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				s.Stop()
				return nil, fmt.Errorf("frost server exited: %s", s.stderr)
			}
			if m := apiRE.FindStringSubmatch(l); m != nil {
				apiURL = m[1]
			}
			if m := httpRE.FindStringSubmatch(l); m != nil {
				s.HTTP = "127.0.0.1:" + m[1]
			}
		case <-timeout:
			s.Stop()
			return nil, errors.New("frost server not ready after a minute")
		}
	}
	go func() {
		for range lines {
		}
	}()
	tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		s.Stop()
		return nil, err
	}
	s.Token = strings.TrimSpace(string(tok))
	s.API = api.NewClient(apiURL, s.Token)
	s.Client = &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		MaxIdleConnsPerHost: 4,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.HTTP)
		},
	}}
	return s, nil
}

// Stop stops the server (SIGINT, then SIGKILL after 10s) and removes its
// data directory.
func (s *Server) Stop() {
	s.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.Cmd.Process.Kill()
		<-s.done
	}
	os.RemoveAll(s.Data)
}

// RSS is the server's resident set size in bytes.
func (s *Server) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/PID/status")
}

// FDs is the number of files the server has open.
func (s *Server) FDs() (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.Cmd.Process.Pid))
	return len(ents), err
}
