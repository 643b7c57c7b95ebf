package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/testguest"
)

// startCLI starts the CLI against s without waiting for it.
func (s *server) startCLI(args ...string) *exec.Cmd {
	s.t.Helper()
	cmd := exec.Command(frostBin, args...)
	cmd.Env = append(os.Environ(), "FROST_API=http://"+s.api, "FROST_TOKEN="+s.token)
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	return cmd
}

// appsOf is frost apps --json.
func (s *server) appsOf() map[string]api.App {
	s.t.Helper()
	var list []api.App
	if err := json.Unmarshal([]byte(s.mustFrost("apps", "--json")), &list); err != nil {
		s.t.Fatal(err)
	}
	m := map[string]api.App{}
	for _, a := range list {
		m[a.Name] = a
	}
	return m
}

// leftovers lists temporary files under dir.
func leftovers(t *testing.T, dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasPrefix(fi.Name(), ".tmp") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestKillDuringDeploy: kill -9 the server while a 26 MiB module is being
// uploaded, stored and compiled, at several moments, and restart it on the
// same data each time. The app deployed before always answers; the new app
// is either wholly there (and serves) or absent; a deploy after the restart
// succeeds.
func TestKillDuringDeploy(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end case; runs without -short")
	}
	data := t.TempDir()
	s := startServer(t, data)
	s.mustFrost("deploy", "hello", testguest.Path(t, "hello-c"))
	for _, delay := range []time.Duration{50 * time.Millisecond, 400 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second} {
		cli := s.startCLI("deploy", "big", testguest.Path(t, "big"))
		time.Sleep(delay)
		s.kill()
		cli.Wait()
		s = startServer(t, data)
		if resp, body := s.get("hello", "/"); resp.StatusCode != 200 || body != "hello from frost\n" {
			t.Fatalf("kill -9 %v into a deploy: hello answers %d %q", delay, resp.StatusCode, body)
		}
		if _, ok := s.appsOf()["big"]; ok {
			if _, body := s.get("big", "/"); !strings.Contains(body, "big ok") {
				t.Fatalf("kill -9 %v into a deploy: big is listed but answers %q", delay, body)
			}
			t.Logf("kill -9 %v into the deploy: it had committed", delay)
		} else {
			t.Logf("kill -9 %v into the deploy: it had not committed", delay)
		}
		if got := leftovers(t, data); len(got) > 0 {
			t.Errorf("kill -9 %v into a deploy: temporary files left after the restart: %v", delay, got)
		}
		s.mustFrost("deploy", "big", testguest.Path(t, "big"))
		if _, body := s.get("big", "/"); !strings.Contains(body, "big ok") {
			t.Fatalf("deploy after the restart: big answers %q", body)
		}
		s.mustFrost("rm", "big")
	}
}

// TestKillDuringFreeze: kill -9 the server while it writes the 64 MiB
// snapshot of a session app, at several moments, and restart it. The app
// then answers with the right memory (thawed from a whole snapshot or
// booted cold; never from a half-written one), no snapshot is counted
// corrupt, and no temporary file is left.
func TestKillDuringFreeze(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end case; runs without -short")
	}
	data := t.TempDir()
	s := startServer(t, data)
	s.mustFrost("deploy", "fat", testguest.Path(t, "fat-64"), "--mode", "session", "--memory", "256MiB", "--idle", "1h")
	_, want := s.get("fat", "/?i=7")
	if !strings.HasPrefix(want, "fat word[7]=") {
		t.Fatalf("fat answers %q", want)
	}
	for _, delay := range []time.Duration{20 * time.Millisecond, 150 * time.Millisecond, 500 * time.Millisecond} {
		if resp, body := s.get("fat", "/?i=7"); resp.StatusCode != 200 || body != want {
			t.Fatalf("before the freeze: %d %q", resp.StatusCode, body)
		}
		// A fresh snapshot each round: the deploy's is dropped with a new release.
		cli := s.startCLI("freeze", "fat")
		time.Sleep(delay)
		s.kill()
		cli.Wait()
		s = startServer(t, data)
		resp, body := s.get("fat", "/?i=7")
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("kill -9 %v into a freeze: %d %q, want %q", delay, resp.StatusCode, body, want)
		}
		d := s.appDetail("fat")
		if d.Counters.Fallbacks["corrupt"] != 0 || d.Counters.Fallbacks["incompatible"] != 0 {
			t.Fatalf("kill -9 %v into a freeze: fallbacks %v", delay, d.Counters.Fallbacks)
		}
		t.Logf("kill -9 %v into the freeze: woke %s", delay, bootOf(resp))
		if got := leftovers(t, data); len(got) > 0 {
			t.Errorf("kill -9 %v into a freeze: temporary files left after the restart: %v", delay, got)
		}
		// The snapshot a restart finds must be whole: delete it for the next round.
		s.mustFrost("freeze", "fat")
		if err := s.stop(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		os.RemoveAll(filepath.Join(data, "snapshots", d.Release))
		s = startServer(t, data)
	}
}
