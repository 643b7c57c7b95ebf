// Package gvisor is the runtime.BoxRuntime for agent sandboxes: each box is
// a gVisor sandbox run by runsc (the systrap platform: no KVM needed), with
// a network of its own (network_linux.go; none with Config.Network unset),
// its template's root file system read-only under a private
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
// was taken under, but for the network, which is the namespace's it
// restores into (a checkpoint restores with or without one), and the
// overlay's size, which a box is created with (half its memory: its files
// are memory, and past the size a write fails with ENOSPC rather than the
// host's OOM killer ending the whole sandbox) and a restore takes from
// the checkpoint. /tmp, a tmpfs mount of its own, is capped at a quarter;
// its size travels with checkpoints beside runsc's files (tmpFile).
package gvisor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/agent"
	"github.com/frostdev/frost/internal/registry"
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
	// Network, if set, gives every box a network: an address of its own
	// in this range, from which it reaches the internet through the host
	// and the host reaches its ports (network_linux.go). Unset, boxes
	// have no network interface, and their ports are reached through the
	// agent.
	Network netip.Prefix
	// ResolvConf names the host's name servers, the first IPv4 one of
	// which answers boxes' DNS ("": /etc/resolv.conf).
	ResolvConf string
	// DebugLogs, if set, is a directory for runsc's debug logs.
	DebugLogs string
	// Spares is how many spare containers the runtime keeps created ahead
	// of need: one for each configuration wanted recently, and a second
	// for the one wanted last when there is room (see spares.go); 0 means
	// DefaultSpares, a negative number none.
	Spares int
	Logger *slog.Logger
}

// DefaultSpares is Config.Spares's default: the default template's
// configuration and one more (or two for the only one in use). A spare
// costs two idle runsc processes, ~60 MB resident.
const DefaultSpares = 2

// Runtime runs boxes under runsc.
type Runtime struct {
	cfg     Config
	version string
	net     *network // nil without Config.Network
	// agent is the copy of Config.Agent new boxes mount (keepAgent).
	agent  string
	spares spares
	busy   atomic.Int32                         // boots, restores and checkpoints running
	idleAt atomic.Int64                         // when busy last fell to 0, Unix nanoseconds
	after  func(time.Duration) <-chan time.Time // time.After; tests replace it
	now    func() time.Time                     // time.Now; tests replace it
}

// working counts a boot, restore or checkpoint as running until the
// function it returns is called.
func (r *Runtime) working() (done func()) {
	r.busy.Add(1)
	return func() {
		if r.busy.Add(-1) == 0 {
			r.idleAt.Store(r.clock().UnixNano())
		}
	}
}

func (r *Runtime) clock() time.Time {
	if r.now != nil {
		return r.now()
	}
	return time.Now()
}

var _ runtime.BoxRuntime = (*Runtime)(nil)

// New checks runsc. Boxes a previous process left running (it crashed, or
// was killed) stay: Attach adopts them, Sweep removes the ones nobody
// claims.
func New(cfg Config) (*Runtime, error) {
	if err := supported(); err != nil {
		return nil, err
	}
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
	if cfg.Spares == 0 {
		cfg.Spares = DefaultSpares
	}
	for _, d := range []string{"bundles", "names"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o700); err != nil {
			return nil, fmt.Errorf("gvisor: %w", err)
		}
	}
	out, err := exec.Command(cfg.Runsc, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("gvisor: runsc at %q does not run (%v); install it with scripts/runsc.sh", cfg.Runsc, err)
	}
	version := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	r := &Runtime{cfg: cfg, version: version}
	if r.agent, err = keepAgent(cfg.StateDir, cfg.Agent); err != nil {
		return nil, fmt.Errorf("gvisor: keeping the agent %s: %w", cfg.Agent, err)
	}
	if cfg.Network.IsValid() {
		if r.net, err = openNetwork(cfg.Network, cfg.StateDir, cfg.ResolvConf, cfg.Logger); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Close removes the spares and what runsc left mounted in the state
// directory (the network namespace it creates for --network=none).
func (r *Runtime) Close() error {
	r.closeSpares()
	if r.net != nil {
		if err := r.net.close(); err != nil {
			return fmt.Errorf("gvisor: sandbox network rules: %w", err)
		}
	}
	ns := filepath.Join(r.cfg.StateDir, "state", "null-netns")
	if _, err := os.Stat(ns); err == nil {
		if err := unmountDetached(ns); err != nil {
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
	return r.boxArgs(registry.SandboxLimits{}, rest...)
}

// boxArgs returns the arguments of a runsc call that makes a box (run,
// create, restore) with limits l: the overlay sized for its memory.
func (r *Runtime) boxArgs(l registry.SandboxLimits, rest ...string) []string {
	network := "--network=none"
	if r.net != nil {
		network = "--network=sandbox"
	}
	overlay := "--overlay2=root:memory"
	if n := OverlayBytes(l); n > 0 {
		overlay += ",size=" + strconv.FormatInt(n, 10)
	}
	a := []string{"--root=" + filepath.Join(r.cfg.StateDir, "state"), "--platform=systrap", network, overlay}
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
	return r.runscBox(ctx, registry.SandboxLimits{}, rest...)
}

// runscBox is runsc for a call that makes a box with limits l (boxArgs).
func (r *Runtime) runscBox(ctx context.Context, l registry.SandboxLimits, rest ...string) error {
	out, err := os.CreateTemp("", "frost-runsc-*.log")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.CommandContext(ctx, r.cfg.Runsc, r.boxArgs(l, rest...)...)
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

// Attach implements runtime.Attacher: it adopts a box a previous process
// left running, if runsc still runs it.
func (r *Runtime) Attach(ctx context.Context, id string) (runtime.Box, bool) {
	rid := r.runscID(id)
	st, err := r.state(ctx, rid)
	if err != nil || st.ID != rid || st.Status != "running" {
		return nil, false
	}
	return newBox(r, rid, runtime.BoxSpec{ID: id}, r.bundleMounts(rid)), true
}

// containerState is what `runsc state` says of a container.
type containerState struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Pid    int    `json:"pid"` // the sandbox process's, on the host
}

// state asks runsc about container rid.
func (r *Runtime) state(ctx context.Context, rid string) (containerState, error) {
	var st containerState
	out, err := exec.CommandContext(ctx, r.cfg.Runsc, r.args("state", rid)...).Output()
	if err != nil {
		return st, fmt.Errorf("gvisor: runsc state %s: %w", rid, err)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("gvisor: runsc state %s: %q: %w", rid, out, err)
	}
	return st, nil
}

// Sweep implements runtime.Attacher: it kills and deletes every box in the
// state directory that keep does not claim, and their bundles.
func (r *Runtime) Sweep(keep func(id string) bool) {
	names := r.names()
	claimed := func(rid string) bool {
		if r.isSpare(rid) {
			return true
		}
		if name, ok := names[rid]; ok {
			return keep(name)
		}
		return keep(rid)
	}
	out, err := exec.Command(r.cfg.Runsc, r.args("list", "--quiet")...).Output()
	if err == nil {
		for _, rid := range strings.Fields(string(out)) {
			if claimed(rid) {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			r.runsc(ctx, "delete", "--force", rid)
			cancel()
			r.cfg.Logger.Info("removed a sandbox nobody owns", "sandbox", names[rid], "container", rid)
		}
	}
	if r.net != nil {
		for _, rid := range r.net.containers() {
			if !claimed(rid) {
				r.net.remove(rid)
			}
		}
	}
	entries, _ := os.ReadDir(filepath.Join(r.cfg.StateDir, "bundles"))
	for _, e := range entries {
		if !claimed(e.Name()) {
			os.RemoveAll(filepath.Join(r.cfg.StateDir, "bundles", e.Name()))
		}
	}
	for _, name := range names {
		if !keep(name) {
			os.Remove(filepath.Join(r.namesDir(), name))
		}
	}
}

// mounts are what of a box's OCI spec its checkpoints depend on: runsc
// restores a checkpoint only into a spec with the mounts it was taken
// with, options included, and only with the very agent binary its init
// was started from (a frost binary of other content there, after an
// upgrade, and the restored sandbox dies at once). A checkpoint carries
// them in files beside runsc's (tmpFile, agentFile); one without them,
// from before, was made with no /tmp size and Config.Agent's path.
type mounts struct {
	tmp   int64  // /tmp's size (a tmpfs mount of its own; 0: not capped)
	agent string // the host file mounted at AgentPath
}

const (
	tmpFile   = "frost-tmp-bytes"
	agentFile = "frost-agent" // the agent's ID: its directory under agents/
)

// mountsFor are the mounts of a new box of spec.
func (r *Runtime) mountsFor(spec runtime.BoxSpec) mounts {
	return mounts{tmp: TmpBytes(spec.Limits), agent: r.agent}
}

// mountsOf are the mounts of the checkpoint in dir.
func (r *Runtime) mountsOf(dir string) (mounts, error) {
	m := mounts{agent: r.cfg.Agent}
	if b, err := os.ReadFile(filepath.Join(dir, tmpFile)); err == nil {
		m.tmp, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	if b, err := os.ReadFile(filepath.Join(dir, agentFile)); err == nil {
		id := strings.TrimSpace(string(b))
		m.agent = filepath.Join(r.cfg.StateDir, "agents", id, "frost")
		if _, err := os.Stat(m.agent); err != nil || id == "" || strings.ContainsAny(id, "/.") {
			return m, fmt.Errorf("gvisor: the checkpoint was made with frost agent %q, which this machine does not have (another frost version made it)", id)
		}
	}
	return m, nil
}

// write records m in checkpoint directory dir.
func (m mounts) write(dir, agents string) error {
	if m.tmp > 0 {
		if err := os.WriteFile(filepath.Join(dir, tmpFile), []byte(strconv.FormatInt(m.tmp, 10)+"\n"), 0o600); err != nil {
			return err
		}
	}
	if rel, err := filepath.Rel(agents, m.agent); err == nil && filepath.Base(rel) == "frost" && !strings.HasPrefix(rel, "..") {
		return os.WriteFile(filepath.Join(dir, agentFile), []byte(filepath.Dir(rel)+"\n"), 0o600)
	}
	return nil // Config.Agent's path, as before agents were kept
}

// keepAgent copies the frost binary at src to agents/ID/frost under
// stateDir, ID its content's, unless there already, and returns its path:
// boxes mount that copy, which an upgrade leaves in place for the
// checkpoints made with it.
func keepAgent(stateDir, src string) (string, error) {
	f, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	dir := filepath.Join(stateDir, "agents", hex.EncodeToString(h.Sum(nil))[:16])
	path := filepath.Join(dir, "frost")
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".frost-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		tmp.Close()
		return "", err
	}
	_, err = io.Copy(tmp, f)
	if err == nil {
		err = tmp.Chmod(0o755)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return path, err
}

// bundle writes the OCI bundle for spec with mounts m and returns its
// directory.
func (r *Runtime) bundle(spec runtime.BoxSpec, spare bool, m mounts) (string, error) {
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
	netns := ""
	if r.net != nil {
		// A spare runs nothing until it is taken, with its box's egress.
		e := spec.Egress
		if spare {
			e = registry.Egress{Offline: true}
		}
		var err error
		if netns, err = r.net.add(spec.ID, e); err != nil {
			return "", err
		}
	}
	b, err := json.MarshalIndent(ociSpec(spec, spare, netns, m), "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
	}
	if err != nil {
		r.remove(spec.ID, "")
		return "", err
	}
	return dir, nil
}

// ociSpec is the OCI runtime configuration of a box, or of a spare for
// its configuration (created at the lowest CPU weight: cgroup.go), in the
// network namespace at netns (none: one of runsc's own, with no network),
// with mounts m.
func ociSpec(spec runtime.BoxSpec, spare bool, netns string, m mounts) map[string]any {
	env := map[string]string{
		"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME": "/root", "LANG": "C.UTF-8", "TERM": "xterm",
	}
	// spec.Env is not init's: init's configuration must match across a
	// checkpoint and the restores of it (a template's snapshot is restored
	// into sandboxes with other environments); the manager hands each
	// command its sandbox's environment instead.
	var envList []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		envList = append(envList, k+"="+env[k])
	}
	resources := map[string]any{}
	if spec.Limits.MemoryBytes > 0 {
		resources["memory"] = map[string]any{"limit": spec.Limits.MemoryBytes}
	}
	// The pids limit is RLIMIT_NPROC, which gVisor's kernel enforces
	// inside the sandbox: a fork bomb stalls at it while the sandbox lives.
	// A host cgroup pids limit counts the sandbox's own threads too and
	// kills the whole sandbox when reached; it is only a backstop.
	rlimits := []map[string]any{{"type": "RLIMIT_NOFILE", "hard": 65536, "soft": 65536}}
	if spec.Limits.Pids > 0 {
		rlimits = append(rlimits, map[string]any{"type": "RLIMIT_NPROC", "hard": spec.Limits.Pids, "soft": spec.Limits.Pids})
	}
	resources["pids"] = map[string]any{"limit": hostPidsBackstop}
	cpu := map[string]any{}
	if spec.Limits.CPUs > 0 {
		const period = 100000
		cpu["quota"], cpu["period"] = int64(spec.Limits.CPUs*period), period
	}
	if spare {
		cpu["shares"] = spareShares
	}
	if len(cpu) > 0 {
		resources["cpu"] = cpu
	}
	network := map[string]any{"type": "network"}
	if netns != "" {
		network["path"] = netns
	}
	tmpOptions := []string{"nosuid", "nodev", "mode=1777"}
	if m.tmp > 0 {
		tmpOptions = append(tmpOptions, "size="+strconv.FormatInt(m.tmp, 10))
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
			"rlimits": rlimits,
		},
		"root":     map[string]any{"path": spec.RootFS, "readonly": false},
		"hostname": "sandbox",
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": []string{"nosuid", "noexec", "nodev", "ro"}},
			{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": tmpOptions},
			{"destination": AgentPath, "type": "bind", "source": m.agent, "options": []string{"bind", "ro"}},
		},
		"linux": map[string]any{
			"namespaces": []map[string]any{{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, network},
			"resources":  resources,
		},
	}
}

// TmpBytes is the most a box with limits l may hold in /tmp (a file
// system of its own, memory too): a quarter of its memory, so that its
// files, here and in OverlayBytes, leave a quarter to its processes.
// 0: no limit.
func TmpBytes(l registry.SandboxLimits) int64 { return l.MemoryBytes / 4 }

// bundleMounts are the mounts in container rid's bundle, for a box
// adopted after a restart.
func (r *Runtime) bundleMounts(rid string) mounts {
	m := mounts{agent: r.cfg.Agent}
	var spec struct {
		Mounts []struct {
			Destination, Source string
			Options             []string
		} `json:"mounts"`
	}
	b, err := os.ReadFile(filepath.Join(r.cfg.StateDir, "bundles", rid, "config.json"))
	if err != nil || json.Unmarshal(b, &spec) != nil {
		return m
	}
	for _, mt := range spec.Mounts {
		switch mt.Destination {
		case AgentPath:
			m.agent = mt.Source
		case "/tmp":
			for _, o := range mt.Options {
				if v, ok := strings.CutPrefix(o, "size="); ok {
					m.tmp, _ = strconv.ParseInt(v, 10, 64)
				}
			}
		}
	}
	return m
}

// OverlayBytes is the most a box with limits l may hold in files written
// to its root file system (the overlay's upper layer, which is memory):
// half its memory, as Linux sizes a tmpfs by default, so that a sandbox
// that fills its disk gets ENOSPC with memory left for its processes,
// not killed whole by the host when files and processes pass its limit.
// 0: no limit (a box without a memory limit).
func OverlayBytes(l registry.SandboxLimits) int64 { return l.MemoryBytes / 2 }

// hostPidsBackstop caps a sandbox's host tasks (its own threads included).
const hostPidsBackstop = 4096

// defaultCaps are the capabilities of a box's processes (Docker's default
// set): root inside the sandbox, which gVisor's kernel confines.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Boot implements runtime.BoxRuntime.
func (r *Runtime) Boot(ctx context.Context, spec runtime.BoxSpec) (runtime.Box, error) {
	defer r.working()()
	defer r.wantSpare(spec)
	if b, ok := r.inSpare(ctx, spec, "start"); ok {
		return b, nil
	}
	m := r.mountsFor(spec)
	dir, err := r.bundle(spec, false, m)
	if err != nil {
		return nil, err
	}
	if err := r.runscBox(ctx, spec.Limits, "run", "--detach", "--bundle", dir, spec.ID); err != nil {
		r.remove(spec.ID, "")
		return nil, err
	}
	return newBox(r, spec.ID, spec, m), nil
}

// inSpare starts spec's box in the spare of its configuration, if one is
// ready: `runsc start`, or with more arguments `runsc restore …`. A spare
// that fails is removed, and the caller does without.
func (r *Runtime) inSpare(ctx context.Context, spec runtime.BoxSpec, cmd ...string) (*box, bool) {
	id, weight, ok := r.takeSpare(spec)
	if !ok {
		return nil, false
	}
	err := weight.raise()
	if err == nil && r.net != nil {
		err = r.net.setEgress(id, spec.Egress)
	}
	if err == nil {
		err = r.setName(spec.ID, id)
	}
	if err == nil {
		err = r.runscBox(ctx, spec.Limits, append(cmd, id)...)
	}
	if err != nil {
		r.cfg.Logger.Warn("a spare sandbox failed; going without", "sandbox", spec.ID, "container", id, "err", err)
		r.remove(id, spec.ID)
		return nil, false
	}
	return newBox(r, id, spec, r.mountsFor(spec)), true // as spares are made
}

// newBox returns the box of spec, run by runsc as container id (spec.ID,
// or the spare it was started in), with mounts m.
func newBox(r *Runtime, id string, spec runtime.BoxSpec, m mounts) *box {
	b := &box{r: r, id: id, spec: spec, mounts: m, sessions: map[*session]struct{}{}}
	if r.net != nil {
		b.addr, _ = r.net.guest(id)
	}
	return b
}

// Restore implements runtime.BoxRuntime.
func (r *Runtime) Restore(ctx context.Context, spec runtime.BoxSpec, dir string) (runtime.Box, error) {
	defer r.working()()
	defer r.wantSpare(spec)
	// Its mounts are the checkpoint's: a spare for spec has those of a
	// new box of spec, which serve only a checkpoint with the same.
	m, err := r.mountsOf(dir)
	if err != nil {
		return nil, err
	}
	if m == r.mountsFor(spec) {
		if b, ok := r.inSpare(ctx, spec, "restore", "--detach", "--image-path", dir); ok {
			return b, nil
		}
	}
	b, err := r.bundle(spec, false, m)
	if err != nil {
		return nil, err
	}
	if err := r.runscBox(ctx, spec.Limits, "restore", "--detach", "--image-path", dir, "--bundle", b, spec.ID); err != nil {
		r.remove(spec.ID, "")
		return nil, err
	}
	return newBox(r, spec.ID, spec, m), nil
}

// remove deletes container id's runsc state and bundle, whatever state it
// is in, and the record that sandbox name (if given) runs in it.
func (r *Runtime) remove(id, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r.runsc(ctx, "delete", "--force", id)
	if r.net != nil {
		r.net.remove(id)
	}
	os.RemoveAll(filepath.Join(r.cfg.StateDir, "bundles", id))
	if name != "" && name != id && r.runscID(name) == id {
		os.Remove(filepath.Join(r.namesDir(), name))
	}
}

// box is one running sandbox.
type box struct {
	r      *Runtime
	id     string          // runsc's container
	spec   runtime.BoxSpec // spec.ID is the sandbox's; RootFS is "" for an attached box
	mounts mounts          // which its checkpoints carry
	addr   netip.Addr      // its address on its network; invalid: it has none

	mu       sync.Mutex
	sessions map[*session]struct{} // live runsc exec calls
	seq      int
	// cgroup: where Stats reads, found on its first call (stats.go).
	cgroup    *cgroupFiles
	cgroupErr error
}

// session is one live `runsc exec`. gVisor cannot checkpoint a sandbox
// while one is live, and killing the host-side client does not stop the
// process inside; pidFile names that process, for `runsc kill --pid`.
type session struct {
	pidFile string
	done    chan struct{}
}

// Exec implements runtime.Box.
func (b *box) Exec(ctx context.Context, c runtime.Cmd) (int, error) {
	if len(c.Args) == 0 {
		return 0, errors.New("exec: no command")
	}
	ss := b.open()
	if ss == nil {
		return 0, errors.New("exec: the sandbox is being checkpointed")
	}
	defer b.close(ss)
	rest := []string{"exec", "--internal-pid-file", ss.pidFile, b.id}
	if c.Raw {
		rest = append(rest, c.Args...)
	} else {
		// The command runs as a child of the sandbox's init, not of
		// this exec, so that what it leaves running survives a pause.
		rest = append(rest, AgentPath, "agent", "run")
		if c.Cwd != "" {
			rest = append(rest, "--cwd", c.Cwd)
		}
		if c.Tag != "" {
			rest = append(rest, "--tag", c.Tag)
		}
		if c.TTY != nil {
			rest = append(rest, "--tty", c.TTY.String())
		}
		for _, k := range slices.Sorted(maps.Keys(c.Env)) {
			rest = append(rest, "--env", k+"="+c.Env[k])
		}
		rest = append(rest, "--")
		rest = append(rest, c.Args...)
	}
	cmd := exec.Command(b.r.cfg.Runsc, b.r.args(rest...)...)
	// runsc exec hands its standard descriptors to the sandbox, which may
	// keep them open after the command exits (a background job started
	// with `&` is enough). So the pipes are ours: once runsc exec has
	// exited, output already written is drained and the rest abandoned,
	// rather than waiting for an EOF that may never come.
	stdout, stderr := orDiscard(c.Stdout), orDiscard(c.Stderr)
	// A command's relay writes init's frames (its pid, output and exit)
	// to its stdout, and its own failures to its stderr.
	var frames *agent.Output
	var relayErr bytes.Buffer
	if !c.Raw {
		frames = &agent.Output{Stdout: c.Stdout, Stderr: c.Stderr, Started: c.Started}
		stdout, stderr = frames, runtime.Head(&relayErr, 16<<10)
	}
	outs, err := newPipes(stdout, stderr)
	if err != nil {
		return 0, fmt.Errorf("runsc exec: %w", err)
	}
	defer outs.close()
	cmd.Stdout, cmd.Stderr = outs.w[0], outs.w[1]
	var stdinW *os.File
	if c.Stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return 0, fmt.Errorf("runsc exec: %w", err)
		}
		defer r.Close()
		cmd.Stdin, stdinW = r, w
	}
	// runsc exec forwards SIGTERM/SIGKILL to the process in the sandbox.
	cmd.SysProcAttr = ownGroup()
	if err := cmd.Start(); err != nil {
		if stdinW != nil {
			stdinW.Close()
		}
		return 0, fmt.Errorf("runsc exec: %w", err)
	}
	outs.closeWriters() // the child has its copies
	if stdinW != nil {
		go func() {
			io.Copy(stdinW, c.Stdin)
			stdinW.Close()
		}()
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			if runtime.Detached(ctx, c) {
				b.detach(ss)
			} else {
				b.stop(ss, done)
			}
		case <-done:
		}
	}()
	err = cmd.Wait()
	close(done)
	if stdinW != nil {
		stdinW.Close() // a writer still copying stops at its next write
	}
	outs.drain(200 * time.Millisecond)
	if ctx.Err() != nil {
		return -1, ctx.Err()
	}
	if frames != nil {
		code, msg, ok := frames.Exit()
		if !ok {
			why := relayErr.String()
			var ae api.Error
			if json.Unmarshal(relayErr.Bytes(), &ae) == nil && ae.Message != "" {
				why = ae.Message
			} else if err != nil {
				why = err.Error() + ": " + why
			}
			return 0, fmt.Errorf("runsc exec: the command's relay ended without its exit: %s", strings.TrimSpace(why))
		}
		if msg != "" && c.Stderr != nil {
			fmt.Fprintf(c.Stderr, "frost: %s\n", msg) // as a shell says it
		}
		return code, nil
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

// pipes carry a command's stdout and stderr to writers.
type pipes struct {
	r, w   [2]*os.File
	copied [2]chan struct{}
}

func newPipes(stdout, stderr io.Writer) (*pipes, error) {
	p := &pipes{}
	for i, dst := range []io.Writer{stdout, stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			p.close()
			return nil, err
		}
		p.r[i], p.w[i] = r, w
		p.copied[i] = make(chan struct{})
		go func() {
			if _, err := io.Copy(dst, r); err != nil {
				io.Copy(io.Discard, r) // never leave the writer blocked
			}
			close(p.copied[i])
		}()
	}
	return p, nil
}

func (p *pipes) closeWriters() {
	for i, w := range p.w {
		if w != nil {
			w.Close()
			p.w[i] = nil
		}
	}
}

// drain waits for the copies to reach EOF, or, if something in the
// sandbox still holds a write end, until the pipes have been quiet for
// the grace period, then stops them.
func (p *pipes) drain(grace time.Duration) {
	for i, r := range p.r {
		if r == nil {
			continue
		}
		r.SetReadDeadline(time.Now().Add(grace))
		<-p.copied[i]
	}
}

func (p *pipes) close() {
	p.closeWriters()
	for _, r := range p.r {
		if r != nil {
			r.Close()
		}
	}
}

// open registers a new exec session, or returns nil while the box is
// being checkpointed.
func (b *box) open() *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sessions == nil {
		return nil
	}
	b.seq++
	ss := &session{pidFile: filepath.Join(b.r.cfg.StateDir, "bundles", b.id, fmt.Sprintf("exec-%d.pid", b.seq)), done: make(chan struct{})}
	b.sessions[ss] = struct{}{}
	return ss
}

func (b *box) close(ss *session) {
	b.mu.Lock()
	delete(b.sessions, ss)
	b.mu.Unlock()
	os.Remove(ss.pidFile)
	close(ss.done)
}

// stop ends a session's process inside the sandbox: SIGTERM (the agent's
// run client passes it on as a kill of the command), then SIGKILL if it is
// still there after a moment.
func (b *box) stop(ss *session, done <-chan struct{}) {
	pid := readPid(ss.pidFile)
	if pid <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b.r.runsc(ctx, "kill", "--pid", strconv.Itoa(pid), b.id, "TERM")
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		b.r.runsc(ctx, "kill", "--pid", strconv.Itoa(pid), b.id, "KILL")
	}
}

// readPid reads a pid file, waiting briefly for runsc to write it.
func readPid(path string) int {
	for i := 0; i < 50; i++ {
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0
}

// detach ends a session's process inside the sandbox, the agent's run
// client, with SIGKILL, which it cannot pass on: the command it asked init
// to start runs on (package agent).
func (b *box) detach(ss *session) {
	if pid := readPid(ss.pidFile); pid > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b.r.runsc(ctx, "kill", "--pid", strconv.Itoa(pid), b.id, "KILL")
	}
}

// quiesce ends every live exec session and refuses new ones, so that the
// box can be checkpointed. Commands started through the agent keep
// running: only their clients end.
func (b *box) quiesce() {
	b.mu.Lock()
	live := slices.Collect(maps.Keys(b.sessions))
	b.sessions = nil
	b.mu.Unlock()
	for _, ss := range live {
		b.detach(ss)
		select {
		case <-ss.done:
		case <-time.After(5 * time.Second):
		}
	}
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// Dial implements runtime.Box: a TCP connection to the box's address, or
// one the agent inside relays to 127.0.0.1:PORT over an exec's standard
// input and output, for a box with no network or a server listening on
// loopback only (a development server's default).
func (b *box) Dial(ctx context.Context, port int) (net.Conn, error) {
	if b.addr.IsValid() {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(b.addr, uint16(port)).String())
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return c, err
		}
	}
	host, inside := net.Pipe()
	var stderr bytes.Buffer
	go func() {
		code, err := b.Exec(context.Background(), runtime.Cmd{
			Args: []string{AgentPath, "agent", "relay", strconv.Itoa(port)}, Raw: true,
			Stdin: inside, Stdout: inside, Stderr: &stderr,
		})
		if err != nil || code != 0 {
			b.r.cfg.Logger.Debug("port relay ended", "sandbox", b.id, "port", port, "code", code, "err", err, "stderr", stderr.String())
		}
		inside.Close()
	}()
	return host, nil
}

// SetEgress implements runtime.EgressSetter: its rules change at once
// (connections already let through stay).
func (b *box) SetEgress(e registry.Egress) error {
	if !b.addr.IsValid() {
		return nil // no network: it reaches nothing anyway
	}
	return b.r.net.setEgress(b.id, e)
}

// Checkpoint implements runtime.Box.
func (b *box) Checkpoint(ctx context.Context, dir string) error {
	defer b.r.working()()
	b.quiesce()
	if err := b.r.runsc(ctx, "checkpoint", "--image-path", dir, b.id); err != nil {
		return err
	}
	if err := b.mounts.write(dir, filepath.Join(b.r.cfg.StateDir, "agents")); err != nil {
		return err
	}
	b.r.remove(b.id, b.spec.ID)
	if b.spec.RootFS != "" {
		b.r.wantSpare(b.spec) // for its resume
	}
	return nil
}

// Kill implements runtime.Box.
func (b *box) Kill(ctx context.Context) error {
	b.r.remove(b.id, b.spec.ID)
	return nil
}
