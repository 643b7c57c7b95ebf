package api

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Agent sandboxes: full Linux environments (gVisor) with an explicit
// lifecycle. docs/API.md documents the routes under /v1/sandboxes.

// Sandbox states.
const (
	SandboxRunning = "running"
	SandboxPaused  = "paused"
)

// SandboxCreateRequest is the body of POST /v1/sandboxes. Zero fields take
// the server's defaults.
type SandboxCreateRequest struct {
	// Template names what the sandbox starts from ("base" by default).
	Template string `json:"template,omitempty"`
	// Timeout is how long the sandbox may run before OnTimeout applies
	// (default 5m); it restarts on every resume.
	Timeout Duration `json:"timeout,omitempty"`
	// OnTimeout is "pause" (default: checkpoint to storage) or "kill".
	OnTimeout string `json:"on_timeout,omitempty"`
	// MemoryBytes caps the sandbox's memory; CPUs its CPU time (1.5 = one
	// and a half cores); Pids its number of processes and threads.
	MemoryBytes int64   `json:"memory_bytes,omitempty"`
	CPUs        float64 `json:"cpus,omitempty"`
	Pids        int     `json:"pids,omitempty"`
	// Env is every process's initial environment.
	Env map[string]string `json:"env,omitempty"`
	// Metadata is the caller's, returned as given.
	Metadata map[string]string `json:"metadata,omitempty"`
	// PublicPorts lets anyone who can reach Frost's app listener reach
	// the sandbox's ports; by default a request needs its access token.
	PublicPorts bool `json:"public_ports,omitempty"`
	// Network limits what the sandbox may connect to (default: the
	// internet, on a server that gives sandboxes a network).
	Network *SandboxNetwork `json:"network,omitempty"`
}

// SandboxNetwork is what a sandbox may connect to. With none of it set,
// the sandbox reaches the internet: every address but its server's,
// other sandboxes' and the link-local range (cloud metadata).
type SandboxNetwork struct {
	// Offline cuts the sandbox off from every address but AllowOut's.
	Offline bool `json:"offline,omitempty"`
	// AllowOut and DenyOut are IPv4 addresses or CIDR ranges
	// ("203.0.113.7", "10.0.0.0/8", "0.0.0.0/0") the sandbox may or may
	// not connect to; AllowOut wins where they overlap. AllowOut takes
	// host names too ("pypi.org", "*.github.com" for every name under
	// it): their addresses are let through once the sandbox looks the
	// name up, for as long as the answer lives; with Offline, the
	// sandbox's name server answers only those names.
	AllowOut []string `json:"allow_out,omitempty"`
	DenyOut  []string `json:"deny_out,omitempty"`
}

// ParseEgress reads an AllowOut or DenyOut entry: an IPv4 address or
// CIDR range.
func ParseEgress(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		return netip.PrefixFrom(a, 32), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q: want an IPv4 address or CIDR range (sandboxes have IPv4 only)", s)
}

// HostPattern reads an AllowOut host name: a DNS name ("pypi.org"), or
// "*." and one ("*.github.com": every name under it, not itself), lower
// case, without the final dot.
func HostPattern(s string) (string, bool) {
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	name := strings.TrimPrefix(s, "*.")
	if len(name) == 0 || len(name) > 253 || !strings.Contains(name, ".") {
		return "", false
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return "", false
	}
	return s, true
}

// MatchHost says whether DNS name (lower case, no final dot) matches a
// HostPattern.
func MatchHost(pattern, name string) bool {
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(name, "."+rest)
	}
	return name == pattern
}

// SandboxMetric is one sample of what a running sandbox used, as its
// node's accounting sees it (for gVisor, the sandbox's cgroup: its
// processes' memory, its in-memory writable layer, the runtime's share).
type SandboxMetric struct {
	Time time.Time `json:"time"`
	// CPUCount is how many CPUs the sandbox may use; CPUUsedPct the share
	// of them it used since the sample before (0-100).
	CPUCount   float64 `json:"cpu_count"`
	CPUUsedPct float64 `json:"cpu_used_pct"`
	// MemUsed is the bytes it held, MemCache the page cache among them,
	// MemTotal what it may hold.
	MemUsed  int64 `json:"mem_used"`
	MemCache int64 `json:"mem_cache"`
	MemTotal int64 `json:"mem_total"`
	// NetIn and NetOut are the bytes it received and sent over its
	// network since the sample before (packets' bytes on its link).
	NetIn  int64 `json:"net_in"`
	NetOut int64 `json:"net_out"`
}

// Sandbox is an agent sandbox as the API shows it.
type Sandbox struct {
	ID string `json:"id"`
	// Tenant owns the sandbox ("" for the admin).
	Tenant    string            `json:"tenant,omitempty"`
	Template  string            `json:"template"`
	State     string            `json:"state"` // SandboxRunning or SandboxPaused
	Limits    SandboxLimits     `json:"limits"`
	EnvKeys   []string          `json:"env_keys,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	Timeout   Duration          `json:"timeout"`
	OnTimeout string            `json:"on_timeout"`
	ExpiresAt time.Time         `json:"expires_at"`
	CreatedAt time.Time         `json:"created_at"`
	Pauses    int               `json:"pauses"`
	// Boot says how it last came up: "cold" (booted from the template's
	// root file system), "restore" (from the template's snapshot),
	// "resume" (from its own pause), "fork" (from the checkpoint of the
	// sandbox it was forked from) or "reattach" (found still running
	// after a server crash).
	Boot string `json:"boot,omitempty"`
	// Snapshot is its checkpoint while paused.
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	// Node, in a cluster, is the node that holds it: runs it, or keeps
	// its checkpoint while it is paused.
	Node string `json:"node,omitempty"`
	// Token authorises requests to its ports (header X-Frost-Sandbox-Token
	// or query frost_token); PortURL is where port P answers, with P for
	// "{port}".
	Token       string `json:"token,omitempty"`
	PortURL     string `json:"port_url"`
	PublicPorts bool   `json:"public_ports,omitempty"`
	// Network is what it may connect to, when limited.
	Network *SandboxNetwork `json:"network,omitempty"`
}

// SandboxLimits are a sandbox's resource limits.
type SandboxLimits struct {
	MemoryBytes int64   `json:"memory_bytes"`
	CPUs        float64 `json:"cpus"`
	Pids        int     `json:"pids"`
}

// ExecRequest starts a command in a sandbox: the first line of the body of
// POST /v1/sandboxes/{id}/exec. With Stdin set, the rest of the body is the
// command's standard input (streamed; its end closes stdin); otherwise
// stdin is empty.
type ExecRequest struct {
	// Cmd is the program and its arguments; it is not run by a shell
	// unless it names one (["bash", "-lc", "..."]).
	Cmd []string `json:"cmd"`
	// Cwd is the working directory (default "/root").
	Cwd string `json:"cwd,omitempty"`
	// Env is added to the sandbox's environment for this command.
	Env map[string]string `json:"env,omitempty"`
	// Timeout kills the command after this long (default: none beyond the
	// sandbox's own timeout).
	Timeout Duration `json:"timeout,omitempty"`
	Stdin   bool     `json:"stdin,omitempty"`
	// Tag names the command for the process list, beside its pid.
	Tag string `json:"tag,omitempty"`
	// Background starts the command and answers at once, with its pid:
	// it runs on, reachable through /v1/sandboxes/{id}/processes (its
	// output, signals, input: with Stdin set its input stays open for
	// processes/{pid}/stdin, and the request's body is not read). No
	// Timeout with it.
	Background bool `json:"background,omitempty"`
	// TTY runs the command on a pseudo-terminal of this size, as its
	// controlling terminal and its standard input, output and error: its
	// output (a terminal's: "\r\n" line ends, echoed input) comes as
	// "stdout", its input goes to the terminal, and
	// processes/{pid}/resize changes the size. A terminal's input does
	// not close: the end of the request's stdin leaves it open.
	TTY *TTY `json:"tty,omitempty"`
}

// TTY is a terminal's size in character cells, each 1 to 65535 (POST
// /v1/sandboxes/{id}/processes/{pid}/resize takes it as its body).
type TTY struct {
	Cols int `json:"cols"`
	Rows int `json:"rows"`
}

// ParseTTY reads a terminal size written COLSxROWS, such as 80x24.
func ParseTTY(s string) (TTY, error) {
	c, r, ok := strings.Cut(s, "x")
	cols, err1 := strconv.Atoi(c)
	rows, err2 := strconv.Atoi(r)
	if !ok || err1 != nil || err2 != nil {
		return TTY{}, fmt.Errorf("terminal size %q: want COLSxROWS, such as 80x24", s)
	}
	size := TTY{Cols: cols, Rows: rows}
	return size, size.Check()
}

// String writes the size as ParseTTY reads it.
func (t TTY) String() string { return fmt.Sprintf("%dx%d", t.Cols, t.Rows) }

// Check reports a size a terminal cannot have.
func (t TTY) Check() error {
	if t.Cols < 1 || t.Cols > 65535 || t.Rows < 1 || t.Rows > 65535 {
		return fmt.Errorf("terminal size %dx%d: columns and rows must be 1 to 65535", t.Cols, t.Rows)
	}
	return nil
}

// Process is a command running in a sandbox, started by an exec (Frost's
// or E2B's): GET /v1/sandboxes/{id}/processes lists them. The list is
// kept by the sandbox's init, so it survives a pause: a command started
// before one is listed, signalled, fed and followed after the resume, on
// whichever node the sandbox resumed.
type Process struct {
	// Pid is its process id in the sandbox.
	Pid int      `json:"pid"`
	Tag string   `json:"tag,omitempty"`
	Cmd []string `json:"cmd"`
	Cwd string   `json:"cwd,omitempty"`
	// Env is the environment it was started with beyond init's (the
	// sandbox's and the exec's).
	Env map[string]string `json:"env,omitempty"`
	// Stdin: its standard input is open (it was started with stdin and
	// nothing has closed it).
	Stdin bool `json:"stdin,omitempty"`
	// TTY is the size of its terminal, if it runs on one (ExecRequest.TTY).
	TTY *TTY `json:"tty,omitempty"`
}

// SignalRequest is the body of POST
// /v1/sandboxes/{id}/processes/{pid}/signal.
type SignalRequest struct {
	// Signal is a name (TERM, KILL, INT, HUP, QUIT, USR1, USR2, STOP,
	// CONT; SIGTERM too) or a number; default TERM. It goes to the
	// command's process group: what the command started gets it too.
	Signal string `json:"signal,omitempty"`
}

// ExecEvent is one line of the answer of POST /v1/sandboxes/{id}/exec
// and GET /v1/sandboxes/{id}/processes/{pid}/output (newline-delimited
// JSON, streamed as the command runs): first one with the command's Pid,
// then its output as it comes, then exactly one final event with Exit
// set, or with Error set if the command could not be run or the stream
// was cut short (by a pause, say: the command runs on).
type ExecEvent struct {
	// Pid, on the first event, is the command's process id in the
	// sandbox (see Process).
	Pid int `json:"pid,omitempty"`
	// Stream is "stdout" or "stderr" for output; Data its bytes.
	Stream string `json:"stream,omitempty"`
	Data   []byte `json:"data,omitempty"`
	// Exit is the command's exit code, on the final event.
	Exit *int `json:"exit_code,omitempty"`
	// TimedOut: the command was killed by ExecRequest.Timeout.
	TimedOut bool   `json:"timed_out,omitempty"`
	Error    *Error `json:"error,omitempty"`
}

// FileInfo describes a file in a sandbox.
type FileInfo struct {
	Path    string    `json:"path"`
	Name    string    `json:"name"`
	Type    string    `json:"type"` // "file", "dir", "symlink" or "other"
	Size    int64     `json:"size"`
	Mode    string    `json:"mode"` // permission bits, octal, e.g. "0644"
	ModTime time.Time `json:"mod_time"`
	// Target is a symlink's target.
	Target string `json:"target,omitempty"`
}

// ArchiveStats is what PUT /v1/sandboxes/{id}/files/archive unpacked.
type ArchiveStats struct {
	Files    int   `json:"files"`
	Dirs     int   `json:"dirs"`
	Symlinks int   `json:"symlinks"`
	Bytes    int64 `json:"bytes"` // of the files' contents
}

// FileEvent is one line of GET /v1/sandboxes/{id}/files/watch: a change
// under the watched directory.
type FileEvent struct {
	Op   string   `json:"op"` // "create", "write" or "remove"
	Path string   `json:"path"`
	Info FileInfo `json:"info,omitzero"`
}

// Template is what sandboxes start from (GET /v1/templates).
type Template struct {
	Name   string   `json:"name"`
	RootFS string   `json:"rootfs"`
	Setup  []string `json:"setup,omitempty"`
	// From is the sandbox a snapshot template was taken of.
	From string `json:"from,omitempty"`
	// Tenant owns it, when a tenant took it (only that tenant sees and
	// uses it); "" for the admin's templates, which every tenant may use.
	Tenant string `json:"tenant,omitempty"`
	// Snapshot is the built template's checkpoint: sandboxes created from
	// it restore it instead of booting.
	Snapshot  *Snapshot `json:"snapshot,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// ForkRequest is the body of POST /v1/sandboxes/{id}/fork.
type ForkRequest struct {
	// Count is how many sandboxes to start (1 by default, at most 16).
	Count int `json:"count,omitempty"`
	// Timeout replaces the sandbox's own in the forks (0: keep it).
	Timeout Duration `json:"timeout,omitempty"`
}

// SnapshotRequest is the body of POST /v1/sandboxes/{id}/snapshot.
type SnapshotRequest struct {
	// Name is the new template's: 1-63 lower-case letters, digits and
	// '-', not one in use.
	Name string `json:"name"`
}

// TemplateBuildRequest is the body of POST /v1/templates.
type TemplateBuildRequest struct {
	Name string `json:"name"`
	// FromRootFS is a directory on the server ("" rebuilds the template's
	// own); Run are shell commands run once, in order, before the
	// checkpoint.
	FromRootFS string   `json:"from_rootfs,omitempty"`
	Run        []string `json:"run,omitempty"`
}
