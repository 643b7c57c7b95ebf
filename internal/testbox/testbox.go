// Package testbox gives Go tests what real gVisor sandboxes need: the
// pinned runsc (scripts/runsc.sh), the base template's root file system
// (scripts/rootfs.sh) and a static frost binary to mount as the in-sandbox
// agent. The scripts build once and cache under $FROST_CACHE (default
// ~/.cache/frost); `make test` runs them first through scripts/deps.sh, so
// here they only print their cached paths.
//
// Need skips a test only where runsc truly cannot run (not root, not
// Linux), saying why; a missing or broken install fails the test.
package testbox

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Env is what sandbox tests need.
type Env struct {
	Runsc  string // the runsc binary
	RootFS string // the base template's root file system
	Agent  string // a static frost binary
}

var (
	once   sync.Once
	env    Env
	envErr error
	skip   string
)

// Need returns the environment, or skips t where runsc cannot run.
func Need(t testing.TB) Env {
	t.Helper()
	once.Do(setup)
	if skip != "" {
		t.Skip(skip)
	}
	if envErr != nil {
		t.Fatalf("testbox: %v", envErr)
	}
	return env
}

func setup() {
	if goruntime.GOOS != "linux" {
		skip = "gVisor runs on Linux only"
		return
	}
	if os.Geteuid() != 0 {
		skip = "runsc needs root here (rootless runsc cannot set up the sandbox without user namespaces mapped for it); run the tests as root"
		return
	}
	root, err := repoRoot()
	if err != nil {
		envErr = err
		return
	}
	if env.Runsc, envErr = script(root, "FROST_RUNSC", "scripts/runsc.sh"); envErr != nil {
		return
	}
	if env.RootFS, envErr = script(root, "FROST_ROOTFS", "scripts/rootfs.sh"); envErr != nil {
		return
	}
	dir, err := os.MkdirTemp("", "frost-testbox-")
	if err != nil {
		envErr = err
		return
	}
	env.Agent = filepath.Join(dir, "frost")
	cmd := exec.Command("go", "build", "-o", env.Agent, "./cmd/frost")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		envErr = fmt.Errorf("build the agent: %v\n%s", err, out)
	}
}

// Cleanup removes every sandbox runsc still runs under the state root
// (a server killed by a test leaves them) and what runsc left mounted
// there, so that the test's temporary directory can be removed.
func Cleanup(runsc, stateRoot string) {
	if out, err := exec.Command(runsc, "--root="+stateRoot, "list", "--quiet").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			exec.Command(runsc, "--root="+stateRoot, "delete", "--force", id).Run()
		}
	}
	// A container whose `runsc create` was cut short (its server killed)
	// is not in runsc's list, but its sandbox and gofer processes live on.
	killByRoot(stateRoot)
	ns := filepath.Join(stateRoot, "null-netns")
	if _, err := os.Stat(ns); err == nil {
		syscall.Unmount(ns, syscall.MNT_DETACH)
	}
	cleanupNetworks(filepath.Join(filepath.Dir(stateRoot), "netns"))
}

// killByRoot kills the processes run with --root=stateRoot.
func killByRoot(stateRoot string) {
	arg := []byte("\x00--root=" + stateRoot + "\x00")
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, arg) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// script returns $name if set, else the last line the script prints.
func script(root, name, path string) (string, error) {
	if v := os.Getenv(name); v != "" {
		return v, nil
	}
	cmd := exec.Command("bash", filepath.Join(root, path))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %v\n%s", path, err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return lines[len(lines)-1], nil
}

// repoRoot finds the module root from the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
