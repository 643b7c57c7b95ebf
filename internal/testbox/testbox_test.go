package testbox

import (
	"bufio"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKillByRoot: a process run with --root=DIR (as runsc's sandbox and
// gofer are) is killed; one with another root is not.
func TestKillByRoot(t *testing.T) {
	dir := t.TempDir()
	// A loop, not a lone `sleep 60`: bash would exec that in its own
	// place, and the process's arguments would no longer name the root.
	// It says "up" first: Start returns once the exec has begun, but the
	// kernel fills in the new process's arguments (what /proc/PID/cmdline
	// reads) a little later, so a process only just started can show none.
	const loop = "echo up; while :; do sleep 1; done"
	mine := exec.Command("bash", "-c", loop, "runsc-sandbox", "--root="+dir+"/state")
	other := exec.Command("bash", "-c", loop, "runsc-sandbox", "--root="+dir+"/state2")
	for _, c := range []*exec.Cmd{mine, other} {
		out, err := c.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(out).ReadString('\n'); line != "up\n" {
			c.Process.Kill()
			t.Fatalf("the loop said %q, %v; want up", line, err)
		}
	}
	defer other.Process.Kill()
	killByRoot(dir + "/state")
	done := make(chan error, 1)
	go func() { done <- mine.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("the process under the root ended with %v, want killed", err)
		}
	case <-time.After(10 * time.Second):
		mine.Process.Kill()
		t.Fatal("the process under the root was not killed")
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the process under another root is gone: %v", err)
	}
}
