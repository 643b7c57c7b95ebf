package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/frostdev/frost/api"
)

// TestSandboxProcessesCLI: commands started in the background through the
// CLI, in a real gVisor sandbox, are listed, followed, fed and signalled
// by pid, before and after a pause (the table lives in the sandbox's init
// and is checkpointed with it).
func TestSandboxProcessesCLI(t *testing.T) {
	s, c := startSandboxServer(t, "")
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.SandboxCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	frost := func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		return s.runIn(s.cliEnv(s.token), stdin, args...)
	}
	start := func(args ...string) int {
		t.Helper()
		out, e, code := frost("", append([]string{"sandbox", "exec", sb.ID, "--background"}, args...)...)
		pid, err := strconv.Atoi(strings.TrimSpace(out))
		if code != 0 || err != nil || pid <= 0 {
			t.Fatalf("exec --background %v: %d %q %s", args, code, out, e)
		}
		return pid
	}
	// A command that cannot start says why (init's message), exit 1.
	if out, e, code := frost("", "sandbox", "exec", sb.ID, "--background", "--", "no-such-server"); code != 1 || out != "" ||
		!strings.Contains(e, "did not start (exit 127): no-such-server: command not found") || strings.Contains(e, "internal error") {
		t.Fatalf("exec --background of a command not found: %d %q %s", code, out, e)
	}
	srv := start("--tag", "srv", "--", "python3", "-m", "http.server", "8000", "--directory", "/tmp")
	repl := start("--tag", "repl", "--open-stdin", "--", "sh", "-c", `while read l; do echo "got $l"; done; echo eof; exit 3`)
	if status, body := waitPort(s, sb.ID, 8000, sb.Token, "/"); status != 200 {
		t.Fatalf("the background server: %d %s", status, body)
	}
	ps := func() string {
		t.Helper()
		out, e, code := frost("", "sandbox", "ps", sb.ID)
		if code != 0 {
			t.Fatalf("ps: %d %s", code, e)
		}
		return out
	}
	listed := func(out string, pid int, tag, stdin, cmd string) bool {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 4 && f[0] == strconv.Itoa(pid) && f[1] == tag && f[2] == stdin && strings.Contains(line, cmd) {
				return true
			}
		}
		return false
	}
	for _, when := range []string{"before the pause", "after it"} {
		out := ps()
		if !listed(out, srv, "srv", "closed", "python3 -m http.server") || !listed(out, repl, "repl", "open", "while read") {
			t.Fatalf("ps %s:\n%s", when, out)
		}
		if when == "before the pause" {
			if _, e, code := frost("", "sandbox", "pause", sb.ID); code != 0 {
				t.Fatalf("pause: %s", e)
			}
		}
	}
	// Follow the reader, then feed it and close its input.
	attach := exec.Command(frostBin, "sandbox", "attach", sb.ID, strconv.Itoa(repl))
	attach.Env = append(os.Environ(), "FROST_API=http://"+s.api, "FROST_TOKEN="+s.token)
	var followed bytes.Buffer
	attach.Stdout = &followed
	if err := attach.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // attached (a runsc exec of the agent)
	if _, e, code := frost("after the pause\n", "sandbox", "stdin", sb.ID, strconv.Itoa(repl), "--close"); code != 0 {
		t.Fatalf("stdin: %d %s", code, e)
	}
	err = attach.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || followed.String() != "got after the pause\neof\n" {
		t.Fatalf("attach: %v, output %q; want exit 3 and the reader's answer", err, followed.String())
	}
	if _, e, code := frost("", "sandbox", "signal", sb.ID, strconv.Itoa(srv), "KILL"); code != 0 {
		t.Fatalf("signal: %d %s", code, e)
	}
	if status, _ := portGet(s, sb.ID, 8000, sb.Token, "/"); status == 200 {
		t.Fatal("the server answers after its kill")
	}
	if out := ps(); strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("ps after both ended:\n%s", out)
	}
	if _, e, code := frost("", "sandbox", "signal", sb.ID, strconv.Itoa(srv)); code != 1 || !strings.Contains(e, "no running command") {
		t.Fatalf("signal to an ended command: %d %s", code, e)
	}
	if _, e, code := frost("", "sandbox", "attach", sb.ID, "nope"); code != 2 {
		t.Fatalf("attach with a bad pid: %d %s", code, e)
	}
}
