// Package sandboxtest is a fake runtime.BoxRuntime for unit tests of the
// logic around sandboxes (the manager, the E2B compatibility layer): its
// boxes keep files in memory, answer the agent's read, write and stat, echo
// other commands, and checkpoint their files as JSON. Real sandboxes
// (runsc) are tested in internal/runtime/gvisor and e2e.
package sandboxtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/agent"
	"github.com/frostdev/frost/internal/registry/bolt"
	"github.com/frostdev/frost/internal/runtime"
	"github.com/frostdev/frost/internal/sandbox"
	"github.com/frostdev/frost/internal/snapshot"
)

// New returns an empty fake runtime.
func New() *Runtime { return &Runtime{Live: map[string]*Box{}} }

// Runtime is the fake runtime; Live holds its running boxes by ID.
type Runtime struct {
	mu    sync.Mutex
	Boots int
	Live  map[string]*Box
}

func (f *Runtime) Name() string         { return "fake" }
func (f *Runtime) ImageVersion() string { return "fake/1" }

func (f *Runtime) Boot(ctx context.Context, spec runtime.BoxSpec) (runtime.Box, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Boots++
	b := &Box{rt: f, id: spec.ID, files: map[string]string{}}
	f.Live[spec.ID] = b
	return b, nil
}

func (f *Runtime) Restore(ctx context.Context, spec runtime.BoxSpec, dir string) (runtime.Box, error) {
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	b := &Box{rt: f, id: spec.ID}
	if err := json.Unmarshal(data, &b.files); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.Live[spec.ID] = b
	f.mu.Unlock()
	return b, nil
}

type Box struct {
	rt    *Runtime
	id    string
	mu    sync.Mutex
	files map[string]string
	// Block, if set, holds every exec until closed.
	Block chan struct{}
	// blocked counts the execs Block holds now.
	blocked atomic.Int32
	// Detached and Stopped count the execs Block held whose context
	// ended: with runtime.ErrDetach as its cause (the command would run
	// on), or otherwise (it would be killed).
	Detached, Stopped atomic.Int32
}

// Blocked returns how many execs Block holds now.
func (b *Box) Blocked() int { return int(b.blocked.Load()) }

func (b *Box) Exec(ctx context.Context, c runtime.Cmd) (int, error) {
	if b.Block != nil {
		b.blocked.Add(1)
		defer b.blocked.Add(-1)
		select {
		case <-b.Block:
		case <-ctx.Done():
			if runtime.Detached(ctx, c) {
				b.Detached.Add(1)
			} else {
				b.Stopped.Add(1)
			}
			return -1, ctx.Err()
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out, errw := orDiscard(c.Stdout), orDiscard(c.Stderr)
	if len(c.Args) >= 4 && c.Args[0] == sandbox.AgentPath && c.Args[1] == "agent" {
		verb, p := c.Args[2], c.Args[3]
		switch verb {
		case "write":
			data, _ := io.ReadAll(c.Stdin)
			b.files[p] = string(data)
			return 0, nil
		case "read":
			v, ok := b.files[p]
			if !ok {
				fmt.Fprintf(errw, `{"code":"not_found","message":"no %s"}`, p)
				return agent.ExitNotFound, nil
			}
			io.WriteString(out, v)
			return 0, nil
		case "stat":
			v, ok := b.files[p]
			if !ok {
				return agent.ExitNotFound, nil
			}
			json.NewEncoder(out).Encode(api.FileInfo{Path: p, Name: filepath.Base(p), Type: "file", Size: int64(len(v))})
			return 0, nil
		}
		return agent.ExitUsage, nil
	}
	fmt.Fprintf(out, "ran %s env=%s cwd=%s", strings.Join(c.Args, " "), c.Env["K"], c.Cwd)
	return 0, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

func (b *Box) Dial(ctx context.Context, port int) (net.Conn, error) {
	return nil, errors.New("no ports in the fake")
}

func (b *Box) Checkpoint(ctx context.Context, dir string) error {
	b.mu.Lock()
	data, _ := json.Marshal(b.files)
	b.mu.Unlock()
	if err := os.WriteFile(filepath.Join(dir, "state.json"), data, 0o600); err != nil {
		return err
	}
	return b.Kill(ctx)
}

func (b *Box) Kill(ctx context.Context) error {
	b.rt.mu.Lock()
	delete(b.rt.Live, b.id)
	b.rt.mu.Unlock()
	return nil
}

// Manager is a sandbox manager over a fake runtime, for tests: its
// registry (bbolt), checkpoint store and scratch space in Dir.
type Manager struct {
	*sandbox.Manager
	Reg   *bolt.Store
	Snaps *snapshot.Store
	Dir   string
}

// NewManager returns a manager over rt with a fresh registry and store in
// a test directory (closed when the test ends); opts adjust its Config
// (a clock, an ID tag) before it starts.
func NewManager(t testing.TB, rt *Runtime, opts ...func(*sandbox.Config)) *Manager {
	t.Helper()
	dir := t.TempDir()
	reg, err := bolt.Open(filepath.Join(dir, "reg.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	snaps, err := snapshot.Open(filepath.Join(dir, "snaps"), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := sandbox.DefaultConfig()
	cfg.Dir = filepath.Join(dir, "scratch")
	cfg.BaseRootFS = dir // any directory
	cfg.Key = []byte("0123456789abcdef0123456789abcdef")
	for _, o := range opts {
		o(&cfg)
	}
	m, err := sandbox.New(cfg, reg, snaps, rt)
	if err != nil {
		t.Fatal(err)
	}
	return &Manager{Manager: m, Reg: reg, Snaps: snaps, Dir: dir}
}
