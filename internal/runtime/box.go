package runtime

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
)

// Agent sandboxes ("boxes" here, to keep them apart from the isolation
// every runtime provides): full Linux environments with an explicit
// lifecycle, run by a BoxRuntime (gvisor today, microvm later). The
// sandbox manager (package sandbox) owns IDs, records, tokens, timeouts and
// the snapshot store; a BoxRuntime only starts, checkpoints, restores and
// kills boxes and runs commands in them.

// BoxSpec is what a BoxRuntime needs to start a box.
type BoxSpec struct {
	// ID names the box; lower-case letters and digits.
	ID string
	// RootFS is the host directory of its root file system. It is never
	// written: the box writes to a private layer that is part of its
	// checkpoint.
	RootFS string
	Limits registry.SandboxLimits
	// Env is the sandbox's environment. Runtimes may leave it out of the
	// box's own configuration (so that a checkpoint restores into boxes
	// of other environments): the caller passes it with every command.
	Env map[string]string
	// Egress says where the box may connect to, for runtimes that give
	// boxes a network.
	Egress registry.Egress
}

// BoxRuntime starts agent sandboxes.
type BoxRuntime interface {
	// Name is the runtime's registry name, e.g. "gvisor".
	Name() string
	// ImageVersion names the checkpoint format: a checkpoint is restored
	// only by a runtime reporting the same version.
	ImageVersion() string
	// Boot starts a box from spec.RootFS.
	Boot(ctx context.Context, spec BoxSpec) (Box, error)
	// Restore starts a box from a checkpoint that Box.Checkpoint wrote into
	// dir (the files, byte for byte, wherever they were kept meanwhile).
	// Its processes, memory and writable layer are as they were.
	Restore(ctx context.Context, spec BoxSpec, dir string) (Box, error)
}

// Cmd is a command to run in a box.
type Cmd struct {
	Args []string
	Cwd  string
	Env  map[string]string
	// Stdin is the command's standard input (nil: empty).
	Stdin io.Reader
	// Stdout and Stderr receive its output as it comes (nil: discarded).
	Stdout, Stderr io.Writer
	// Raw runs Args directly in the runtime's own exec session, rather
	// than as a child of the box's init; for the box's short-lived
	// helpers (the agent's file and port verbs), never for user commands:
	// what a raw command leaves running does not survive a checkpoint.
	Raw bool
	// Tag names the command in the box's process table (not Raw).
	Tag string
	// Started, if set, is called with the command's process id in the box
	// once it runs, before any of its output (not Raw). A command the box
	// cannot start returns before.
	Started func(pid int)
	// TTY runs the command on a pseudo-terminal of this size (not Raw):
	// its output comes to Stdout, its input goes to the terminal, and the
	// end of Stdin leaves the terminal open.
	TTY *api.TTY
}

// Box is a running agent sandbox.
type Box interface {
	// Exec runs cmd and returns its exit code. Ending ctx kills it,
	// unless ctx ended with ErrDetach as its cause (and cmd is not Raw):
	// then Exec returns and the command runs on.
	Exec(ctx context.Context, cmd Cmd) (int, error)
	// Dial connects to a TCP port inside the box, from the host.
	Dial(ctx context.Context, port int) (net.Conn, error)
	// Checkpoint writes the box's whole state (memory, processes, its
	// writable layer) as files into dir, an empty directory, and stops
	// the box: it no longer runs, nothing of it stays in memory.
	Checkpoint(ctx context.Context, dir string) error
	// Kill stops the box and frees everything it held.
	Kill(ctx context.Context) error
}

// BoxStats is what a box uses, as its runtime's host-side accounting
// sees it (the sandbox's cgroup for gVisor: its guest's memory, its
// in-memory writable layer and the runtime's own share).
type BoxStats struct {
	// CPU is the CPU time the box has used since it started.
	CPU time.Duration
	// Memory is the bytes it holds now, Cache the part of them that is
	// page cache (file contents the kernel could drop).
	Memory, Cache int64
	// MemoryLimit is what it may hold: its limit, or the machine's
	// memory where it has none.
	MemoryLimit int64
	// CPUs is how many CPUs it may use: its limit, or the machine's.
	CPUs float64
	// NetIn and NetOut are the bytes it received and sent over its
	// network since it started (0 without one).
	NetIn, NetOut int64
}

// Stater is a Box that reports what it uses.
type Stater interface {
	Stats() (BoxStats, error)
}

// Ender is a Box that can say whether it ended on its own (the host
// killed it: out of memory, say), which the caller of a failed call asks
// to tell a dead box from a call that failed.
type Ender interface {
	// Ended reports whether the box has stopped, and why as far as the
	// host can tell ("it ran out of memory ...").
	Ended(ctx context.Context) (why string, ended bool)
}

// ErrDetach, as the cause of an Exec's context ending
// (context.WithCancelCause), ends the call but not its command: the
// command runs on in the box, its later output dropped unless something
// attaches to it, its input still open. A pause detaches every call in flight, so that their commands
// are checkpointed with the box and go on after it is restored, as on a
// machine that was suspended.
var ErrDetach = errors.New("detached from the command")

// Detached says whether ctx, an Exec's, ended by a detach that leaves
// cmd running (see Box.Exec).
func Detached(ctx context.Context, cmd Cmd) bool {
	return !cmd.Raw && errors.Is(context.Cause(ctx), ErrDetach)
}

// Head returns a writer that passes the first n bytes written on to w and
// takes the rest without passing it on, never failing: for keeping the
// start of a command's output (an error message) without ever blocking
// the command.
func Head(w io.Writer, n int) io.Writer { return &head{w: w, n: n} }

type head struct {
	w io.Writer
	n int
}

func (h *head) Write(p []byte) (int, error) {
	if h.n > 0 {
		k := min(len(p), h.n)
		h.w.Write(p[:k])
		h.n -= k
	}
	return len(p), nil
}

// EgressSetter is a Box whose network rules change while it runs.
type EgressSetter interface {
	SetEgress(registry.Egress) error
}

// Attacher is implemented by BoxRuntimes whose boxes outlive the process
// that started them (runsc's do): after a crash, the next process adopts
// the boxes its records name and sweeps away the rest.
type Attacher interface {
	// Attach returns the running box id, if there is one.
	Attach(ctx context.Context, id string) (Box, bool)
	// Sweep stops and removes every box keep does not claim.
	Sweep(keep func(id string) bool)
}
