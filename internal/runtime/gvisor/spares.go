package gvisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
)

// Spare sandboxes.
//
// `runsc restore` does two things: it creates the sandbox (starts the
// sentry and the gofer, sets up namespaces and the cgroup: ~210 ms on the
// machines Frost's CI runs on) and loads the checkpoint into it (~250 ms
// for a sandbox holding a 16 MiB file and a Python process). The first
// depends only on the box's configuration — its root file system and
// limits, never on its checkpoint — and runsc restores into a container
// that already exists. So the runtime keeps spares: containers created
// ahead of need for the configurations recently checkpointed, booted or
// restored, at most Config.Spares in all: one for each configuration
// wanted recently, and a second for the one wanted last when Spares
// leaves room (quota). A Restore (a resume, or a
// create from a template) takes a spare of its configuration and only
// loads the checkpoint; a Boot takes one and only starts it. A new spare
// is created in the background, spareDelay later: creating one is ~0.2 s
// of CPU, and on a machine of two cores it doubled the time of the first
// command after a resume, and of the pause that asked for it, when it ran
// at once. A second spare of the configuration in use is what a resume
// right after a pause, or a create right after another, finds while the
// first one's replacement waits its turn.
//
// A box in a spare keeps the spare's runsc ID; names/SANDBOX in the state
// directory records it, so Attach and Sweep find the box by its sandbox ID
// after a restart. A spare is a created, never started container: nothing
// of any sandbox is in it, and it holds no guest memory.

// spareKey is the configuration a spare fits.
type spareKey struct {
	rootfs string
	limits registry.SandboxLimits
}

func keyOf(spec runtime.BoxSpec) spareKey { return spareKey{spec.RootFS, spec.Limits} }

// spare is one created container.
type spare struct {
	id     string    // runsc's
	weight cpuWeight // raised when the spare is taken
}

// spares are the runtime's created containers, by configuration.
type spares struct {
	mu       sync.Mutex
	ready    map[spareKey][]spare // the next to take last
	creating map[spareKey]bool
	recent   []spareKey // least recently wanted first
	closed   bool
	done     chan struct{} // closed by closeSpares
	wg       sync.WaitGroup
}

// spareDelay is how long after it is wanted a spare is created, and how
// long it waits again while a boot, restore or checkpoint is running, or
// ended less than spareSettle ago (maxSpareWaits times at most).
const (
	spareDelay    = 500 * time.Millisecond
	spareSettle   = 200 * time.Millisecond
	maxSpareWaits = 20
)

// settled reports whether no boot, restore or checkpoint runs, nor ended
// within spareSettle: a user's steps come in bursts (a resume right after
// a pause, a create after another), and a spare begun in the gap between
// two of them lands on the second.
func (r *Runtime) settled() bool {
	return r.busy.Load() == 0 && r.clock().Sub(time.Unix(0, r.idleAt.Load())) >= spareSettle
}

// quiet waits spareDelay, and again while the runtime is not settled, up
// to maxSpareWaits times: a spare's creation should not share the cores
// with the work a user waits for (a resume that found no spare took
// 585 ms instead of 516 when one was created beside it). It reports false
// if the runtime closed meanwhile.
func (r *Runtime) quiet(done <-chan struct{}) bool {
	after := time.After
	if r.after != nil {
		after = r.after
	}
	for range maxSpareWaits {
		select {
		case <-after(spareDelay):
		case <-done:
			return false
		}
		if r.settled() {
			break
		}
	}
	return true
}

// spareIDPrefix starts every spare's runsc ID.
const spareIDPrefix = "spare"

// takeSpare returns the ready spare for spec's configuration, if there
// is one, and its CPU weight control (raise it before starting a box in
// it); it is then no longer a spare.
func (r *Runtime) takeSpare(spec runtime.BoxSpec) (string, cpuWeight, bool) {
	k := keyOf(spec)
	s := &r.spares
	s.mu.Lock()
	defer s.mu.Unlock()
	ready := s.ready[k]
	if len(ready) == 0 {
		return "", cpuWeight{}, false
	}
	sp := ready[len(ready)-1]
	if len(ready) == 1 {
		delete(s.ready, k)
	} else {
		s.ready[k] = ready[:len(ready)-1]
	}
	return sp.id, sp.weight, true
}

// hotSpares is how many spares the configuration wanted last gets at
// most.
const hotSpares = 2

// quota is how many spares configuration k gets: one for each of the
// Config.Spares configurations wanted last, and what is left over (up to
// hotSpares in all) for the one wanted last. Call with s.mu held (recent
// holds Config.Spares configurations at most).
func (r *Runtime) quota(k spareKey) int {
	s := &r.spares
	i := slices.Index(s.recent, k)
	switch {
	case i < 0:
		return 0
	case i == len(s.recent)-1:
		return min(hotSpares, 1+r.cfg.Spares-len(s.recent))
	}
	return 1
}

// wantSpare makes sure spec's configuration has its quota of spares
// ready or being created, and removes the spares configurations no longer
// have a quota for.
func (r *Runtime) wantSpare(spec runtime.BoxSpec) {
	if r.cfg.Spares <= 0 {
		return
	}
	k := keyOf(spec)
	s := &r.spares
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.recent = append(slices.DeleteFunc(s.recent, func(o spareKey) bool { return o == k }), k)
	if len(s.recent) > r.cfg.Spares {
		s.recent = s.recent[len(s.recent)-r.cfg.Spares:]
	}
	for key, ready := range s.ready {
		if q := r.quota(key); len(ready) > q {
			// Oldest first: the next to take is last.
			for _, sp := range ready[:len(ready)-q] {
				s.wg.Add(1)
				go func() { defer s.wg.Done(); r.remove(sp.id, "") }()
			}
			if q == 0 {
				delete(s.ready, key)
			} else {
				s.ready[key] = ready[len(ready)-q:]
			}
		}
	}
	if len(s.ready[k]) >= r.quota(k) || s.creating[k] {
		return
	}
	if s.ready == nil {
		s.ready, s.creating, s.done = map[spareKey][]spare{}, map[spareKey]bool{}, make(chan struct{})
	}
	s.creating[k] = true
	s.wg.Add(1)
	done := s.done
	go func() {
		defer s.wg.Done()
		// The first waits for a quiet moment; the next follows at once
		// while nothing else runs, so that the quota is back before the
		// user's next step rather than landing on it.
		for first := true; r.fillSpare(spec, k, done, first); first = false {
		}
	}()
}

// fillSpare creates one spare of configuration k (after a quiet moment if
// wait, or if the runtime is not settled) and adds it to the ready ones; true if
// k's quota wants another.
func (r *Runtime) fillSpare(spec runtime.BoxSpec, k spareKey, done <-chan struct{}, wait bool) bool {
	s := &r.spares
	var id string
	var weight cpuWeight
	err := errSparesClosed
	if !wait && r.settled() || r.quiet(done) {
		id, weight, err = r.createSpare(spec)
	}
	s.mu.Lock()
	keep := err == nil && !s.closed && len(s.ready[k]) < r.quota(k)
	if keep {
		// Older spares go to the front: the newest is taken first.
		s.ready[k] = append([]spare{{id, weight}}, s.ready[k]...)
	}
	more := err == nil && !s.closed && len(s.ready[k]) < r.quota(k)
	if !more {
		delete(s.creating, k)
	}
	s.mu.Unlock()
	if err != nil {
		if err != errSparesClosed {
			r.cfg.Logger.Warn("creating a spare sandbox failed", "err", err)
		}
	} else if !keep {
		r.remove(id, "")
	}
	return more
}

var errSparesClosed = errors.New("the runtime is closed")

// createSpare creates a container for spec's configuration, at the
// lowest CPU weight, and returns its ID and the weight's control (none if
// runsc set no weight: the host has no cgroup cpu controller for it).
func (r *Runtime) createSpare(spec runtime.BoxSpec) (string, cpuWeight, error) {
	b := make([]byte, 8)
	rand.Read(b)
	spec.ID = spareIDPrefix + hex.EncodeToString(b)
	dir, err := r.bundle(spec, true, r.mountsFor(spec))
	if err != nil {
		return "", cpuWeight{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pidFile := filepath.Join(dir, "pid")
	if err := r.runscBox(ctx, spec.Limits, "create", "--bundle", dir, "--pid-file", pidFile, spec.ID); err != nil {
		r.remove(spec.ID, "")
		return "", cpuWeight{}, err
	}
	weight, err := cpuWeightOf(readPid(pidFile))
	if errors.Is(err, errNoCPUController) {
		return spec.ID, cpuWeight{}, nil // runsc could set no weight either
	}
	if err == nil {
		var v string
		if v, err = weight.read(); err == nil && v != weight.low {
			weight = cpuWeight{} // runsc set no weight: nothing to raise
		}
	}
	if err != nil {
		// Kept: a box started in it may share the CPU at a low weight
		// (it yields to other work) but runs, and does not pay a
		// restore from nothing.
		r.cfg.Logger.Warn("a spare's CPU weight cannot be found; a box started in it may run at a low weight", "container", spec.ID, "err", err)
		weight = cpuWeight{}
	}
	return spec.ID, weight, nil
}

// isSpare reports whether id is one of this runtime's spares, ready or
// being created.
func (r *Runtime) isSpare(id string) bool {
	if !strings.HasPrefix(id, spareIDPrefix) {
		return false
	}
	s := &r.spares
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.creating) > 0 {
		return true // its ID is not known yet: keep every spare-named one
	}
	for _, ready := range s.ready {
		if slices.ContainsFunc(ready, func(sp spare) bool { return sp.id == id }) {
			return true
		}
	}
	return false
}

// closeSpares removes the ready spares and waits for those being created
// (they remove themselves).
func (r *Runtime) closeSpares() {
	s := &r.spares
	s.mu.Lock()
	if !s.closed && s.done != nil {
		close(s.done)
	}
	s.closed = true
	ready := s.ready
	s.ready = nil
	s.mu.Unlock()
	for _, sps := range ready {
		for _, sp := range sps {
			r.remove(sp.id, "")
		}
	}
	s.wg.Wait()
}

// namesDir holds names/SANDBOX files: the runsc ID of a sandbox whose box
// is a spare's container.
func (r *Runtime) namesDir() string { return filepath.Join(r.cfg.StateDir, "names") }

// setName records that sandbox name runs in runsc container id.
func (r *Runtime) setName(name, id string) error {
	path := filepath.Join(r.namesDir(), name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// runscID returns the runsc ID of sandbox name's box.
func (r *Runtime) runscID(name string) string {
	if b, err := os.ReadFile(filepath.Join(r.namesDir(), name)); err == nil && len(b) > 0 {
		return string(b)
	}
	return name
}

// names returns the sandbox of every runsc ID that runs one under
// another name.
func (r *Runtime) names() map[string]string {
	out := map[string]string{}
	entries, _ := os.ReadDir(r.namesDir())
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(r.namesDir(), e.Name())); err == nil {
			out[string(b)] = e.Name()
		}
	}
	return out
}
