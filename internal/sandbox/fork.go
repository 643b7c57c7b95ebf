package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
)

// Snapshots and forks: a sandbox's state now (files, memory, running
// processes) as a template others start from, or as new sandboxes at
// once. Both take the sandbox's checkpoint: a running sandbox is paused
// for it and resumed straight after, its expiry kept (its calls in flight
// detach, its commands run on, as across any pause); a paused one stays
// paused. The checkpoint is read out of the store while the sandbox
// resumes from it, pinned so that the resume's removal of it (a spent
// checkpoint) waits for the read.

// MaxForks bounds a fork's count.
const MaxForks = 16

// capture returns sandbox id's checkpoint as files in a temporary
// directory (remove it when done) and its record.
func (m *Manager) capture(ctx context.Context, id string) (dir string, rec registry.Sandbox, err error) {
	// One at a time: each takes its own checkpoint of the sandbox.
	s := m.state(id)
	s.capture.Lock()
	defer s.capture.Unlock()
	rec, err = m.record(ctx, id)
	if err != nil {
		return "", rec, err
	}
	running := rec.State == registry.SandboxRunning
	if !running && !m.mine(rec) && m.live(rec.Node) {
		return "", rec, m.elsewhere(rec) // its checkpoint is there
	}
	if running {
		if _, err := m.Pause(ctx, id); err != nil {
			return "", rec, err
		}
	}
	if rec, err = m.record(ctx, id); err != nil {
		return "", rec, err
	}
	// The checkpoint is read while the sandbox resumes from it: pinned,
	// so that the resume does not remove it under the read.
	unpin := m.pinCheckpoint(rec.Snapshot)
	defer unpin()
	resumed := make(chan error, 1)
	if running {
		go func() { resumed <- m.resumeAsBefore(ctx, id, rec.ExpiresAt) }()
	} else {
		resumed <- nil
	}
	dir, err = os.MkdirTemp(m.cfg.Dir, "capture-")
	if err == nil {
		if rec.State != registry.SandboxPaused || rec.Snapshot == "" {
			// Running in the registry with no box here (after a crash,
			// it boots afresh when used): no state to take but an old one.
			err = fmt.Errorf("%w: sandbox %s has no checkpoint yet", ErrInvalid, id)
		} else if err = m.pull(ctx, owner(id), rec.Snapshot, rec.Shared); err == nil {
			_, err = m.snaps.GetFiles(ctx, m.want(owner(id), rec.Snapshot), dir)
		}
	}
	if rerr := <-resumed; rerr != nil {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		if dir != "" {
			os.RemoveAll(dir)
		}
		return "", rec, err
	}
	return dir, rec, nil
}

// resumeAsBefore resumes a sandbox a capture paused: running, and
// expiring when it would have.
func (m *Manager) resumeAsBefore(ctx context.Context, id string, expires time.Time) error {
	bctx := context.WithoutCancel(ctx)
	_, err := m.Resume(bctx, id)
	if err == nil && expires.After(m.cfg.Now()) {
		_, err = m.reg.UpdateSandbox(bctx, id, false, func(r *registry.Sandbox) error {
			if r.State == registry.SandboxRunning {
				r.ExpiresAt = expires
			}
			return nil
		})
	}
	if err != nil {
		m.cfg.Logger.Error("sandbox not resumed as it was after its checkpoint was taken", "sandbox", id, "err", err)
		return fmt.Errorf("resume sandbox %s: %w", id, err)
	}
	return nil
}

// pin keeps a spent checkpoint in the store while a capture reads it.
type pin struct {
	readers int
	spent   bool // a resume spent it meanwhile: removed at the last unpin
}

// pinCheckpoint keeps checkpoint key from a resume's removal until the
// returned func is called.
func (m *Manager) pinCheckpoint(key string) func() {
	m.mu.Lock()
	p := m.pinned[key]
	if p == nil {
		p = &pin{}
		m.pinned[key] = p
	}
	p.readers++
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		p.readers--
		drop := p.readers == 0 && p.spent
		if p.readers == 0 {
			delete(m.pinned, key)
		}
		m.mu.Unlock()
		if drop {
			m.snaps.Delete(key)
		}
	}
}

// dropSpent removes a checkpoint a resume spent, or leaves that to the
// last capture still reading it.
func (m *Manager) dropSpent(key string) {
	m.mu.Lock()
	if p := m.pinned[key]; p != nil {
		p.spent = true
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	m.snaps.Delete(key)
}

// Snapshot makes template name from sandbox id as it is now: sandboxes
// created from it start with its files, memory and running processes. A
// name the caller already uses is refused (its own or, for a tenant, the
// admin's): a snapshot never replaces a template. A tenant's snapshot is
// its own template, under a name of its own: no other tenant sees it, and
// another tenant's of the same name is no obstacle.
func (m *Manager) Snapshot(ctx context.Context, id, name string) (api.Template, error) {
	if !api.ValidTemplateName(name) {
		return api.Template{}, fmt.Errorf("%w: template name %q: use 1-63 lower-case letters, digits and '-'", ErrInvalid, name)
	}
	// A tenant's name is taken by its own or the admin's; the admin's
	// by whatever its key holds: its own, or a tenant's recorded under
	// its plain name before names were per tenant.
	tenant, isTenant := registry.TenantOf(ctx)
	var held registry.Template
	var err error
	if isTenant {
		held, _, err = m.template(ctx, name)
	} else {
		held, err = m.reg.GetTemplate(ctx, name)
	}
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, registry.ErrNotFound):
	case err != nil:
		return api.Template{}, err
	case held.Tenant == "":
		return api.Template{}, fmt.Errorf("%w: template %q exists (the admin's); pick another name", ErrInvalid, name)
	case held.Tenant == tenant:
		return api.Template{}, fmt.Errorf("%w: template %q exists; pick another name", ErrInvalid, name)
	default:
		return api.Template{}, fmt.Errorf("%w: template %q exists (a tenant's); pick another name", ErrInvalid, name)
	}
	dir, rec, err := m.capture(ctx, id)
	if err != nil {
		return api.Template{}, err
	}
	defer os.RemoveAll(dir)
	base, err := m.reg.GetTemplate(ctx, rec.Template)
	if err != nil {
		return api.Template{}, fmt.Errorf("snapshot of %s: its template %q: %w", id, rec.Template, err)
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("snapshot/%s/%s/%d", name, id, rec.Pauses)))
	k := hex.EncodeToString(sum[:])
	if _, err := m.putCheckpoint(ctx, dir, templateOwner(name), k, map[string]string{"rootfs": base.RootFS, "from": id}); err != nil {
		return api.Template{}, fmt.Errorf("snapshot of %s: %w", id, err)
	}
	t := registry.Template{Name: name, Runtime: m.rt.Name(), RootFS: base.RootFS, Snapshot: k, From: id, Tenant: tenant, Node: m.cfg.Node, CreatedAt: m.cfg.Now().UTC()}
	if err := m.saveTemplate(ctx, &t); err != nil {
		return api.Template{}, err
	}
	return m.templateView(t), nil
}

// Fork starts n new sandboxes, each where sandbox id is now: its files,
// memory and running processes, its template, limits, environment,
// metadata and port setting; timeout, if not 0, replaces its timeout.
// They are the caller's (a tenant's forks are the tenant's) and run on
// this node; they start together. The forks that started are returned
// with the error of those that did not.
func (m *Manager) Fork(ctx context.Context, id string, n int, timeout time.Duration) ([]api.Sandbox, error) {
	if n < 1 || n > MaxForks {
		return nil, fmt.Errorf("%w: fork count %d: want 1 to %d", ErrInvalid, n, MaxForks)
	}
	if timeout < 0 || timeout > m.cfg.MaxTimeout {
		return nil, fmt.Errorf("%w: timeout %v: want 0 (the sandbox's) up to %v", ErrInvalid, timeout, m.cfg.MaxTimeout)
	}
	dir, src, err := m.capture(ctx, id)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if timeout == 0 {
		timeout = src.Timeout
	}
	req := api.SandboxCreateRequest{Template: src.Template, Timeout: api.Duration(timeout), OnTimeout: src.OnTimeout,
		MemoryBytes: src.Limits.MemoryBytes, CPUs: src.Limits.CPUs, Pids: src.Limits.Pids,
		Env: src.Env, Metadata: src.Metadata, PublicPorts: src.PublicPorts, Network: networkView(src.Egress)}
	// All at once, from the checkpoint files capture read and verified
	// (runsc only reads them): each restore waits mostly on runsc, and
	// takes a spare container where one is ready. A fork's record names
	// the sandbox's template, whose root file system a cold boot would
	// use; a fork that cannot restore fails instead.
	made := make([]api.Sandbox, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { made[i], errs[i] = m.create(ctx, req, dir) })
	}
	wg.Wait()
	var out []api.Sandbox
	var failed []error
	for i := range n {
		if errs[i] != nil {
			failed = append(failed, errs[i])
		} else {
			out = append(out, made[i])
		}
	}
	if len(failed) > 0 {
		return out, fmt.Errorf("%d of %d forks of %s did not start: %w", len(failed), n, id, errors.Join(failed...))
	}
	return out, nil
}

// DeleteTemplate removes a template and its checkpoint; sandboxes made
// from it keep running (their own checkpoints are theirs). The base
// template stays. ref is as the caller sees it (Manager.template): a
// tenant deletes only its own (another's is not found; the admin's is
// ErrForbidden), the admin a tenant's as TENANT/NAME.
func (m *Manager) DeleteTemplate(ctx context.Context, ref string) error {
	if ref == "base" {
		return fmt.Errorf("%w: the base template cannot be deleted", ErrInvalid)
	}
	t, key, err := m.template(ctx, ref)
	if err != nil {
		return err
	}
	if tenant, ok := registry.TenantOf(ctx); ok && t.Tenant != tenant {
		return fmt.Errorf("%w: template %q is the admin's", ErrForbidden, ref)
	}
	if err := m.reg.DeleteTemplate(ctx, key); err != nil {
		return err
	}
	m.dropTemplateCheckpoint(t)
	return nil
}
