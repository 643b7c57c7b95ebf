package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/testtool"
)

var frostBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "frost-e2e-bin")
	if err != nil {
		panic(err)
	}
	frostBin = filepath.Join(dir, "frost")
	cmd := exec.Command("go", "build", "-o", frostBin, "../cmd/frost")
	// Static, as `make build` makes it: the binary is also the agent Frost
	// mounts into sandboxes, whose root file system may have no libc.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build frost:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running `frost server` process.
type server struct {
	t      testing.TB
	data   string
	cmd    *exec.Cmd
	api    string // host:port
	http   string // host:port
	https  string // host:port, with --https
	token  string
	stderr *testtool.SyncBuffer
	done   chan error
	client *http.Client
}

var (
	apiRE   = regexp.MustCompile(`control API: http://(\S+)`)
	httpRE  = regexp.MustCompile(`apps:\s+http://NAME\.\S+?:(\d+)/`)
	httpsRE = regexp.MustCompile(`apps \(TLS\):\s+https://NAME\.\S+?:(\d+)/`)
)

// startServer starts frost server on free loopback ports with data dir data
// ("" = a new temp dir) and waits until it is ready.
func startServer(t testing.TB, data string, extra ...string) *server {
	t.Helper()
	if data == "" {
		data = t.TempDir()
	}
	args := append([]string{"server", "--data", data, "--http", "127.0.0.1:0", "--api", "127.0.0.1:0", "--log-level", "debug"}, extra...)
	cmd := exec.Command(frostBin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, data: data, cmd: cmd, stderr: &testtool.SyncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() { s.kill() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(60 * time.Second)
	tls := slices.Contains(extra, "--https")
	for s.api == "" || s.http == "" || tls && s.https == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("frost server exited before it was ready; stderr:\n%s", s.stderr.String())
			}
			if m := apiRE.FindStringSubmatch(l); m != nil {
				s.api = m[1]
			}
			if m := httpRE.FindStringSubmatch(l); m != nil {
				s.http = "127.0.0.1:" + m[1]
			}
			if m := httpsRE.FindStringSubmatch(l); m != nil {
				s.https = "127.0.0.1:" + m[1]
			}
		case <-deadline:
			t.Fatalf("frost server not ready after 60s; stderr:\n%s", s.stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	s.token = strings.TrimSpace(string(tok))
	s.client = &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			// Every app name resolves to this server's app listener.
			var d net.Dialer
			return d.DialContext(ctx, network, s.http)
		},
	}, Timeout: 60 * time.Second}
	return s
}

// stop sends sig and waits for the process to exit.
func (s *server) stop(sig syscall.Signal) error {
	if s.cmd.ProcessState != nil {
		return nil
	}
	s.cmd.Process.Signal(sig)
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(60 * time.Second):
		s.cmd.Process.Kill()
		return fmt.Errorf("server did not exit within 60s after %v", sig)
	}
}

func (s *server) kill() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		<-s.done
	}
}

// frost runs the CLI against this server and returns stdout, stderr and the exit code.
func (s *server) frost(args ...string) (string, string, int) {
	s.t.Helper()
	return s.run(s.cliEnv(s.token), args...)
}

// cliEnv is the environment that points the CLI at this server's API
// with token tok.
func (s *server) cliEnv(tok string) []string {
	return []string{"FROST_API=http://" + s.api, "FROST_TOKEN=" + tok}
}

// mustFrost runs the CLI and fails the test unless it exits 0.
func (s *server) mustFrost(args ...string) string {
	s.t.Helper()
	out, errs, code := s.frost(args...)
	if code != 0 {
		s.t.Fatalf("frost %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// do sends a request to app and returns the response with its body read.
func (s *server) do(method, app, path string, body io.Reader, hdr map[string]string) (*http.Response, string, error) {
	req, err := http.NewRequest(method, "http://"+app+".localhost"+path, body)
	if err != nil {
		return nil, "", err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// get is do(GET) that fails the test on a transport error.
func (s *server) get(app, path string) (*http.Response, string) {
	s.t.Helper()
	resp, body, err := s.do("GET", app, path, nil, nil)
	if err != nil {
		s.t.Fatalf("GET %s%s: %v", app, path, err)
	}
	return resp, body
}

// apiReq calls the control API with the admin token (or tok if not "").
func (s *server) apiReq(method, path, tok string, body io.Reader) (*http.Response, string) {
	s.t.Helper()
	req, _ := http.NewRequest(method, "http://"+s.api+path, body)
	if tok != "-" {
		if tok == "" {
			tok = s.token
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// bootOf returns the boot kind from a response's Server-Timing header.
func bootOf(resp *http.Response) string {
	st := resp.Header.Get("Server-Timing")
	_, rest, ok := strings.Cut(st, "boot;desc=")
	if !ok {
		return ""
	}
	kind, _, _ := strings.Cut(rest, ",")
	return strings.TrimSpace(kind)
}

// frostNoEnv runs the CLI with neither FROST_API nor FROST_TOKEN set.
func (s *server) frostNoEnv(args ...string) (string, string, int) {
	return s.run(nil, args...)
}

// frostWithToken runs the CLI with FROST_TOKEN=tok.
func (s *server) frostWithToken(tok string, args ...string) (string, string, int) {
	s.t.Helper()
	return s.run(s.cliEnv(tok), args...)
}

// run runs the CLI with the environment less any FROST_ variable, plus env.
func (s *server) run(env []string, args ...string) (string, string, int) {
	s.t.Helper()
	return s.runIn(env, "", args...)
}

// runIn is run with stdin as the CLI's standard input ("": none, as for
// a terminal's).
func (s *server) runIn(env []string, stdin string, args ...string) (string, string, int) {
	s.t.Helper()
	cmd := exec.Command(frostBin, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	base := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FROST_") {
			base = append(base, kv)
		}
	}
	cmd.Env = append(base, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("frost %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}
