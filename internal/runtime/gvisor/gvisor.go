// Package gvisor is the runtime.BoxRuntime for agent sandboxes: each box is
// a gVisor sandbox run by runsc (the systrap platform: no KVM needed), with
// no network, its template's root file system read-only under a private
// in-memory overlay, memory/CPU/pids limits, and the frost binary mounted
// at /.frost/frost as PID 1 (`frost agent init`) and as the agent that
// serves files and ports.
//
// A checkpoint is runsc's: `runsc checkpoint --image-path DIR` writes the
// sandbox's memory, kernel state and processes, including the overlay's
// upper layer (it lives in sandbox memory), so the writable layer travels
// with the checkpoint as a matched pair; `runsc restore` brings it all back.
// Checkpoints are restored only by the same runsc build (ImageVersion).
//
// Every runsc call uses the same global flags (state directory, platform,
// network, overlay): a restore must see the configuration the checkpoint
// was taken under.
package gvisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/frostdev/frost/internal/runtime"
)

// AgentPath is where the frost binary is mounted in every box.
const AgentPath = "/.frost/frost"

// Config configures the runtime.
type Config struct {
	// Runsc is the runsc binary (scripts/runsc.sh installs a pinned one).
	Runsc string
	// StateDir holds runsc's state and the boxes' OCI bundles.
	StateDir string
	// Agent is the frost binary to mount into boxes; "" means this
	// process's executable.
	Agent string
	// DebugLogs, if set, is a directory for runsc's debug logs.
	DebugLogs string
	Logger    *slog.Logger
}

// Runtime runs boxes under runsc.
type Runtime struct {
	cfg     Config
	version string
}

var _ runtime.BoxRuntime = (*Runtime)(nil)

// New checks runsc and removes boxes a previous process left behind (their
// state is unrecoverable: a server pauses every box before it stops).
func New(cfg Config) (*Runtime, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Agent == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("gvisor: the frost binary to mount as the sandbox agent: %w", err)
		}
		cfg.Agent = exe
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "bundles"), 0o700); err != nil {
		return nil, fmt.Errorf("gvisor: %w", err)
	}
	out, err := exec.Command(cfg.Runsc, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("gvisor: runsc at %q does not run (%v); install it with scripts/runsc.sh", cfg.Runsc, err)
	}
	version := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	r := &Runtime{cfg: cfg, version: version}
	r.cleanup()
	return r, nil
}

// Close removes what runsc left mounted in the state directory (the
// network namespace it creates for --network=none).
func (r *Runtime) Close() error {
	ns := filepath.Join(r.cfg.StateDir, "state", "null-netns")
	if _, err := os.Stat(ns); err == nil {
		if err := syscall.Unmount(ns, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("gvisor: unmount %s: %w", ns, err)
		}
		os.Remove(ns)
	}
	return nil
}

// Name implements runtime.BoxRuntime.
func (r *Runtime) Name() string { return "gvisor" }

// ImageVersion implements runtime.BoxRuntime: runsc's checkpoint format
// is its build's.
func (r *Runtime) ImageVersion() string { return "gvisor/1 " + r.version }

// args returns runsc's arguments: the global flags, then rest.
func (r *Runtime) args(rest ...string) []string {
	a := []string{"--root=" + filepath.Join(r.cfg.StateDir, "state"), "--platform=systrap", "--network=none", "--overlay2=root:memory"}
	if r.cfg.DebugLogs != "" {
		a = append(a, "--debug", "--debug-log="+r.cfg.DebugLogs+"/")
	}
	return append(a, rest...)
}

// runsc runs runsc to completion and returns its output on error. The
// output goes to a file, not a pipe: `run --detach` and `restore --detach`
// leave a sandbox process behind that inherits the descriptors, and a pipe
// would not reach EOF until that sandbox ends.
func (r *Runtime) runsc(ctx context.Context, rest ...string) error {
	out, err := os.CreateTemp("", "frost-runsc-*.log")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.CommandContext(ctx, r.cfg.Runsc, r.args(rest...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		return fmt.Errorf("runsc %s: %v: %s", rest[0], err, strings.TrimSpace(lastLines(string(b), 5)))
	}
	return nil
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cleanup kills and deletes every container in the state directory.
func (r *Runtime) cleanup() {
	out, err := exec.Command(r.cfg.Runsc, r.args("list", "--quiet")...).Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r.runsc(ctx, "delete", "--force", id)
		cancel()
		r.cfg.Logger.Info("removed a sandbox left by a previous server", "sandbox", id)
	}
	entries, _ := os.ReadDir(filepath.Join(r.cfg.StateDir, "bundles"))
	for _, e := range entries {
		os.RemoveAll(filepath.Join(r.cfg.StateDir, "bundles", e.Name()))
	}
}

// bundle writes the OCI bundle for spec and returns its directory.
func (r *Runtime) bundle(spec runtime.BoxSpec) (string, error) {
	if spec.RootFS == "" {
		return "", errors.New("gvisor: the template has no root file system")
	}
	if fi, err := os.Stat(spec.RootFS); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("gvisor: root file system %s is not a directory (%v); build it with scripts/rootfs.sh", spec.RootFS, err)
	}
	dir := filepath.Join(r.cfg.StateDir, "bundles", spec.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(ociSpec(spec, r.cfg.Agent), "", "  ")
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
}

// ociSpec is the OCI runtime configuration of a box.
func ociSpec(spec runtime.BoxSpec, agent string) map[string]any {
	env := map[string]string{
		"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME": "/root", "LANG": "C.UTF-8", "TERM": "xterm",
	}
	maps.Copy(env, spec.Env)
	var envList []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		envList = append(envList, k+"="+env[k])
	}
	resources := map[string]any{}
	if spec.Limits.MemoryBytes > 0 {
		resources["memory"] = map[string]any{"limit": spec.Limits.MemoryBytes}
	}
	if spec.Limits.Pids > 0 {
		resources["pids"] = map[string]any{"limit": spec.Limits.Pids}
	}
	if spec.Limits.CPUs > 0 {
		const period = 100000
		resources["cpu"] = map[string]any{"quota": int64(spec.Limits.CPUs * period), "period": period}
	}
	return map[string]any{
		"ociVersion": "1.0.0",
		"process": map[string]any{
			"terminal": false,
			"user":     map[string]any{"uid": 0, "gid": 0},
			"args":     []string{AgentPath, "agent", "init"},
			"env":      envList,
			"cwd":      "/",
			"capabilities": map[string]any{
				"bounding":  defaultCaps,
				"effective": defaultCaps,
				"permitted": defaultCaps,
			},
			"rlimits": []map[string]any{{"type": "RLIMIT_NOFILE", "hard": 65536, "soft": 65536}},
		},
		"root":     map[string]any{"path": spec.RootFS, "readonly": false},
		"hostname": "sandbox",
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": []string{"nosuid", "noexec", "nodev", "ro"}},
			{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=1777"}},
			{"destination": AgentPath, "type": "bind", "source": agent, "options": []string{"bind", "ro"}},
		},
		"linux": map[string]any{
			"namespaces": []map[string]any{{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}},
			"resources":  resources,
		},
	}
}

// defaultCaps are the capabilities of a box's processes (Docker's default
// set): root inside the sandbox, which gVisor's kernel confines.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Boot implements runtime.BoxRuntime.
func (r *Runtime) Boot(ctx context.Context, spec runtime.BoxSpec) (runtime.Box, error) {
	dir, err := r.bundle(spec)
	if err != nil {
		return nil, err
	}
	if err := r.runsc(ctx, "run", "--detach", "--bundle", dir, spec.ID); err != nil {
		r.remove(spec.ID)
		return nil, err
	}
	return &box{r: r, id: spec.ID}, nil
}

// Restore implements runtime.BoxRuntime.
func (r *Runtime) Restore(ctx context.Context, spec runtime.BoxSpec, dir string) (runtime.Box, error) {
	b, err := r.bundle(spec)
	if err != nil {
		return nil, err
	}
	if err := r.runsc(ctx, "restore", "--detach", "--image-path", dir, "--bundle", b, spec.ID); err != nil {
		r.remove(spec.ID)
		return nil, err
	}
	return &box{r: r, id: spec.ID}, nil
}

// remove deletes a container's runsc state and bundle, whatever state it
// is in.
func (r *Runtime) remove(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r.runsc(ctx, "delete", "--force", id)
	os.RemoveAll(filepath.Join(r.cfg.StateDir, "bundles", id))
}

// box is one running sandbox.
type box struct {
	r    *Runtime
	id   string
	once sync.Once
}

// Exec implements runtime.Box.
func (b *box) Exec(ctx context.Context, c runtime.Cmd) (int, error) {
	if len(c.Args) == 0 {
		return 0, errors.New("exec: no command")
	}
	rest := []string{"exec"}
	if c.Cwd != "" {
		rest = append(rest, "--cwd", c.Cwd)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		rest = append(rest, "--env", k+"="+c.Env[k])
	}
	rest = append(rest, b.id)
	rest = append(rest, c.Args...)
	cmd := exec.Command(b.r.cfg.Runsc, b.r.args(rest...)...)
	cmd.Stdin = c.Stdin
	if c.Stdin == nil {
		cmd.Stdin = bytes.NewReader(nil)
	}
	cmd.Stdout, cmd.Stderr = orDiscard(c.Stdout), orDiscard(c.Stderr)
	// runsc exec forwards SIGTERM/SIGKILL to the process in the sandbox.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("runsc exec: %w", err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			cmd.Process.Signal(syscall.SIGKILL)
		case <-done:
		}
	}()
	err := cmd.Wait()
	close(done)
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("runsc exec: %w", err)
	}
	return 0, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// Dial implements runtime.Box: the agent inside relays a TCP connection to
// the port over the exec's standard input and output (the box has no
// network interface the host could reach).
func (b *box) Dial(ctx context.Context, port int) (net.Conn, error) {
	host, inside := net.Pipe()
	var stderr bytes.Buffer
	go func() {
		code, err := b.Exec(context.Background(), runtime.Cmd{
			Args: []string{AgentPath, "agent", "relay", strconv.Itoa(port)}, Cwd: "/",
			Stdin: inside, Stdout: inside, Stderr: &stderr,
		})
		if err != nil || code != 0 {
			b.r.cfg.Logger.Debug("port relay ended", "sandbox", b.id, "port", port, "code", code, "err", err, "stderr", stderr.String())
		}
		inside.Close()
	}()
	return host, nil
}

// Checkpoint implements runtime.Box.
func (b *box) Checkpoint(ctx context.Context, dir string) error {
	if err := b.r.runsc(ctx, "checkpoint", "--image-path", dir, b.id); err != nil {
		return err
	}
	b.r.remove(b.id)
	return nil
}

// Kill implements runtime.Box.
func (b *box) Kill(ctx context.Context) error {
	b.r.remove(b.id)
	return nil
}
