package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/frostdev/frost/internal/testguest"
)

// TestHotReloadUnderLoad deploys new releases while clients hammer the app:
// no request may fail, and new requests switch to the new release.
func TestHotReloadUnderLoad(t *testing.T) {
	s := startServer(t, "")
	s.mustFrost("deploy", "app", testguest.Path(t, "hello-c"), "--concurrency", "1000")
	var stop atomic.Bool
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var firstFailure string
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				resp, body, err := s.do("GET", "app", "/", nil, nil)
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					mu.Lock()
					if firstFailure == "" {
						firstFailure = body
						if err != nil {
							firstFailure = err.Error()
						}
					}
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	guests := []string{"go-httpwasm", "hello-c", "cgi", "hello-c"}
	for _, g := range guests {
		time.Sleep(200 * time.Millisecond)
		s.mustFrost("deploy", "app", testguest.Path(t, g), "--concurrency", "1000")
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed during deploys; first: %s", failed.Load(), failed.Load()+ok.Load(), firstFailure)
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d requests completed", ok.Load())
	}
	if _, body := s.get("app", "/"); body != "hello from frost\n" {
		t.Errorf("after the last deploy the app answers %q", body)
	}
	s.mustFrost("deploy", "app", testguest.Path(t, "cgi"))
	if _, body := s.get("app", "/"); !strings.Contains(body, "method=GET") {
		t.Errorf("the new release does not serve: %q", body)
	}
}

func TestEnvSetWithoutRedeploy(t *testing.T) {
	s := startServer(t, "")
	s.mustFrost("deploy", "cgi", testguest.Path(t, "cgi"), "--env", "GREETING=hi")
	s.mustFrost("deploy", "probe", testguest.Path(t, "probe"), "--env", "SECRET_ENV=one")
	if _, body := s.get("cgi", "/"); !strings.Contains(body, "GREETING=hi") {
		t.Fatalf("deploy env not seen: %q", body)
	}
	if _, body := s.get("probe", "/"); !strings.Contains(body, `"env":"one"`) {
		t.Fatalf("deploy env not seen by http-wasm guest: %q", body)
	}
	s.mustFrost("env", "set", "cgi", "GREETING=hello", "OTHER=1")
	s.mustFrost("env", "set", "probe", "SECRET_ENV=two")
	if _, body := s.get("cgi", "/"); !strings.Contains(body, "GREETING=hello") {
		t.Errorf("env set not seen: %q", body)
	}
	if _, body := s.get("probe", "/"); !strings.Contains(body, `"env":"two"`) {
		t.Errorf("env set not seen by http-wasm guest: %q", body)
	}
	keys := s.mustFrost("env", "ls", "cgi")
	if !strings.Contains(keys, "GREETING") || strings.Contains(keys, "hello") {
		t.Errorf("env ls shows %q (keys only)", keys)
	}
}

// TestRestartKeepsAppsAndCompiledCode restarts the server: apps answer again
// and nothing is recompiled (the compile cache gains no entries).
func TestRestartKeepsAppsAndCompiledCode(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end case; runs without -short")
	}
	data := t.TempDir()
	s := startServer(t, data)
	s.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	// A 26 MiB module: the CLI, not on a terminal, reports the upload in
	// plain lines.
	_, errs, code := s.frost("deploy", "big", testguest.Path(t, "big"))
	if code != 0 || !strings.Contains(errs, "uploading big.wasm: 50% (") || !strings.Contains(errs, "uploading big.wasm: 100% (") || strings.Contains(errs, "\r") {
		t.Fatalf("deploy big: exit %d, stderr %q", code, errs)
	}
	if _, body := s.get("big", "/"); !strings.Contains(body, "big ok") {
		t.Fatalf("big: %q", body)
	}
	before := cacheEntries(t, data)
	if len(before) == 0 {
		t.Fatal("no compiled code on disk")
	}
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, data)
	for _, app := range []string{"hello", "big"} {
		resp, body := s2.get(app, "/")
		if resp.StatusCode != 200 {
			t.Fatalf("%s after restart: %d %s", app, resp.StatusCode, body)
		}
	}
	after := cacheEntries(t, data)
	if len(after) != len(before) {
		t.Errorf("restart recompiled: cache entries %d → %d", len(before), len(after))
	}
}

func cacheEntries(t *testing.T, data string) []string {
	var out []string
	filepath.Walk(filepath.Join(data, "cache"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestLargeModuleDoesNotBlockOthers deploys a module of tens of MiB while
// another app keeps serving.
func TestLargeModuleDoesNotBlockOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end case; runs without -short")
	}
	s := startServer(t, "")
	s.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	big := testguest.Path(t, "big")
	fi, _ := os.Stat(big)
	if fi.Size() < 20<<20 {
		t.Fatalf("big guest is only %d bytes", fi.Size())
	}
	done := make(chan string)
	go func() {
		_, errs, code := s.frost("deploy", "big", big)
		if code != 0 {
			done <- errs
		}
		close(done)
	}()
	var served int
	var worst time.Duration
	for deploying := true; deploying; {
		select {
		case msg, open := <-done:
			if open {
				t.Fatalf("deploy big: %s", msg)
			}
			deploying = false
		default:
			start := time.Now()
			resp, _ := s.get("hello", "/")
			if resp.StatusCode != 200 {
				t.Fatalf("hello during a big compile: %d", resp.StatusCode)
			}
			worst = max(worst, time.Since(start))
			served++
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("served %d requests during the big deploy; slowest %s", served, worst)
	if served < 10 {
		t.Errorf("only %d requests were served while the big module compiled", served)
	}
	if _, body := s.get("big", "/"); !strings.Contains(body, "big ok") {
		t.Errorf("big: %q", body)
	}
}

// TestSIGTERMDrains starts a long request, sends SIGTERM, and expects the
// request to finish with 200 before the server exits.
func TestSIGTERMDrains(t *testing.T) {
	s := startServer(t, "")
	s.mustFrost("deploy", "slow", testguest.Path(t, "spin"), "--timeout", "30s")
	// Calibrate a work size that takes about a second.
	n := 1 << 20
	for {
		start := time.Now()
		s.get("slow", "/?mode=work&n="+itoa(n))
		if time.Since(start) > 500*time.Millisecond || n > 1<<34 {
			break
		}
		n *= 4
	}
	type result struct {
		status int
		err    error
	}
	res := make(chan result, 1)
	go func() {
		resp, _, err := s.do("GET", "slow", "/?mode=work&n="+itoa(n*2), nil, nil)
		if err != nil {
			res <- result{0, err}
			return
		}
		res <- result{resp.StatusCode, nil}
	}()
	time.Sleep(200 * time.Millisecond)
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("server exit: %v\n%s", err, s.stderr.String())
	}
	r := <-res
	if r.err != nil || r.status != 200 {
		t.Fatalf("in-flight request during SIGTERM: %d %v", r.status, r.err)
	}
	if !strings.Contains(s.stderr.String(), "draining") {
		t.Errorf("server did not report draining")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
