package sandbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/snapshot"
)

// In a cluster every node sees every sandbox's record (the registry is
// shared) but only one node holds a sandbox: the record's Node. It runs
// the sandbox, or keeps its checkpoint while it is paused, and only it
// changes the sandbox's state; every other node answers ElsewhereError,
// naming it, and a gateway re-sends the request there.
//
// A paused sandbox outlives its node. With shared storage (Config.Shared)
// the holder uploads each checkpoint after the pause and records it on
// the sandbox (registry.Sandbox.Shared). When the holder leaves the
// cluster (Config.Live says so), a node asked for the sandbox takes it
// over: it changes the record's Node to itself, on the condition that the
// record is still the one it read (so two nodes cannot both take it), then
// fetches the checkpoint, verifies it and resumes. Only a paused sandbox
// whose checkpoint reached shared storage is taken over; a running one's
// memory is on its node, and it waits for that node. When the old holder
// comes back it finds the record names another node: it answers
// ElsewhereError for the sandbox and deletes its stale local checkpoint.

// Shared carries checkpoints to and from the cluster's shared storage
// (replica.Replica).
type Shared interface {
	PutCheckpoint(ctx context.Context, store *snapshot.Store, want snapshot.Want) (registry.SharedSnapshot, error)
	GetCheckpoint(ctx context.Context, store *snapshot.Store, ref registry.SharedSnapshot, want snapshot.Want) error
	ForgetCheckpoint(owner string, ref registry.SharedSnapshot) error
}

// ElsewhereError is ErrElsewhere with the reason and, when it is a live
// member, the node that holds the sandbox (where a gateway re-sends the
// request).
type ElsewhereError struct {
	ID   string
	Node string // live holder, or ""
	Why  string
}

func (e *ElsewhereError) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("%v: %s", ErrElsewhere, e.Why)
	}
	return fmt.Sprintf("%v: sandbox %s: %s", ErrElsewhere, e.ID, e.Why)
}

func (e *ElsewhereError) Unwrap() error { return ErrElsewhere }

// Holder returns the live node err says holds the sandbox, or "".
func Holder(err error) string {
	var e *ElsewhereError
	if errors.As(err, &e) {
		return e.Node
	}
	return ""
}

// errMoved: the record changed under a conditional update.
var errMoved = errors.New("sandbox record changed")

// mine says whether this node holds the sandbox.
func (m *Manager) mine(rec registry.Sandbox) bool {
	if rec.Node != "" {
		return rec.Node == m.cfg.Node
	}
	return m.owns(rec.ID) // a record from before Node
}

// live says whether node is a live member of the cluster.
func (m *Manager) live(node string) bool {
	return m.cfg.Live != nil && node != "" && m.cfg.Live(node)
}

// elsewhere is the error for a sandbox another node holds; nil if this
// node may take it over (paused, its holder gone, its checkpoint shared).
func (m *Manager) elsewhere(rec registry.Sandbox) error {
	e := &ElsewhereError{ID: rec.ID}
	switch {
	case rec.Node == "":
		e.Why = fmt.Sprintf("it is another node's (tag %s), which runs it or resumes it", rec.ID[:min(len(rec.ID), len(m.cfg.IDTag))])
	case m.live(rec.Node):
		e.Node, e.Why = rec.Node, fmt.Sprintf("node %s holds it", rec.Node)
	case rec.State != registry.SandboxPaused:
		e.Why = fmt.Sprintf("node %s, which runs it, has left the cluster; its processes and memory are there, so it comes back with that node", rec.Node)
	case m.cfg.Shared == nil:
		e.Why = fmt.Sprintf("node %s, which has its checkpoint, has left the cluster, and the cluster has no shared storage (--s3) to resume it from elsewhere; it resumes when that node is back", rec.Node)
	case !copyOf(rec.Shared, rec.Snapshot):
		e.Why = fmt.Sprintf("node %s left the cluster before its checkpoint reached shared storage; it resumes when that node is back", rec.Node)
	default:
		return nil
	}
	return e
}

// takeOver makes this node the holder of rec, a paused sandbox whose
// holder left, if the record is still rec; errMoved if it changed.
func (m *Manager) takeOver(ctx context.Context, rec registry.Sandbox) (registry.Sandbox, error) {
	from := rec.Node
	now := m.cfg.Now().UTC()
	got, err := m.reg.UpdateSandbox(ctx, rec.ID, false, func(r *registry.Sandbox) error {
		if r.Node != from || r.State != registry.SandboxPaused || r.Snapshot != rec.Snapshot {
			return errMoved
		}
		r.Node, r.UpdatedAt = m.cfg.Node, now
		return nil
	})
	if err != nil {
		return rec, err
	}
	m.tookOver.Add(1)
	m.cfg.Logger.Info("took over a paused sandbox whose node left the cluster", "sandbox", rec.ID, "from", from)
	return got, nil
}

// fetch brings the paused sandbox's shared checkpoint into the local
// store if it is not there. An error that may pass (shared storage
// unreachable) is ElsewhereError: booting cold would lose the sandbox's
// state; one that will not (the copy is damaged or gone) is returned as
// it is, and the caller falls back as for a bad local checkpoint.
func (m *Manager) fetch(ctx context.Context, rec registry.Sandbox) error {
	err := m.pull(ctx, owner(rec.ID), rec.Snapshot, rec.Shared)
	switch {
	case err == nil, errors.Is(err, errNoCopy):
		return nil // restore says what is wrong, if anything
	case ctx.Err() != nil:
		return err
	case errors.Is(err, snapshot.ErrCorrupt), errors.Is(err, snapshot.ErrNotFound):
		return err
	}
	return &ElsewhereError{ID: rec.ID, Why: fmt.Sprintf("its checkpoint is in shared storage, which cannot be reached now (%v); try again", err)}
}

// errNoCopy: a checkpoint missing here has no copy in shared storage.
var errNoCopy = errors.New("no shared copy")

// pull brings checkpoint key of owner into the local store from ref, its
// copy in shared storage, unless it is here already (then nil, even if
// it is damaged: restoring it says so). errNoCopy if it is not here and
// ref is not a copy of it (or there is no shared storage).
func (m *Manager) pull(ctx context.Context, owner, key string, ref *registry.SharedSnapshot) error {
	if _, _, _, err := m.snaps.Stat(key); !errors.Is(err, snapshot.ErrNotFound) {
		return nil
	}
	if !copyOf(ref, key) || m.cfg.Shared == nil {
		return errNoCopy
	}
	return m.cfg.Shared.GetCheckpoint(ctx, m.snaps, *ref, m.want(owner, key))
}

// copyOf says whether ref is the shared copy of checkpoint key.
func copyOf(ref *registry.SharedSnapshot, key string) bool {
	return ref != nil && ref.Release == key
}

// share uploads the paused sandbox's checkpoint k to shared storage and
// records it, if the sandbox is still paused at k on this node.
func (m *Manager) share(ctx context.Context, id, k string) error {
	ref, err := m.cfg.Shared.PutCheckpoint(ctx, m.snaps, m.want(owner(id), k))
	if err != nil {
		return err
	}
	_, err = m.reg.UpdateSandbox(ctx, id, false, func(r *registry.Sandbox) error {
		if r.State != registry.SandboxPaused || r.Snapshot != k || !m.mine(*r) || copyOf(r.Shared, k) {
			return errMoved
		}
		r.Shared = &ref
		return nil
	})
	if err != nil {
		// Nothing refers to the upload.
		m.cfg.Shared.ForgetCheckpoint(owner(id), ref)
		if errors.Is(err, errMoved) || errors.Is(err, registry.ErrNotFound) {
			return nil
		}
		return err
	}
	m.shares.Add(1)
	return nil
}

// startShare starts uploading a checkpoint in the background, unless an
// upload of the sandbox is under way or failed less than shareRetry ago
// (force: a fresh pause, try now).
func (m *Manager) startShare(id, k string, force bool) {
	if m.cfg.Shared == nil {
		return
	}
	now := m.cfg.Now()
	m.mu.Lock()
	if m.sharing[id] || !force && now.Before(m.shareAfter[id]) || m.done && !force {
		m.mu.Unlock()
		return
	}
	m.sharing[id] = true
	m.mu.Unlock()
	m.uploads.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		err := m.share(ctx, id, k)
		m.mu.Lock()
		delete(m.sharing, id)
		if err != nil {
			m.shareAfter[id] = m.cfg.Now().Add(shareRetry)
		} else {
			delete(m.shareAfter, id)
		}
		m.mu.Unlock()
		if err != nil {
			m.cfg.Logger.Warn("sandbox checkpoint not shared yet; retrying", "sandbox", id, "in", shareRetry, "err", err)
		}
	})
}

// shareRetry is how long after a failed upload the next one starts.
const shareRetry = 5 * time.Second

// tidyLocal deletes the local checkpoints no sandbox this node holds is
// paused at: those of sandboxes taken over by another node while this one
// was away, killed meanwhile, or left by a crash between a checkpoint and
// its record.
func (m *Manager) tidyLocal(recs []registry.Sandbox) {
	keep := map[string]bool{}
	for _, r := range recs {
		if r.Snapshot != "" && m.mine(r) {
			keep[r.Snapshot] = true
		}
	}
	m.dropLocal("sandbox-", func(s snapshot.Info) bool { return keep[s.Release] },
		"deleted a checkpoint no sandbox here is paused at")
}

// dropLocal deletes the local checkpoints whose owner starts with prefix
// and that keep says not to keep, logging msg for each.
func (m *Manager) dropLocal(prefix string, keep func(snapshot.Info) bool, msg string) {
	list, err := m.snaps.List()
	if err != nil {
		return
	}
	for _, s := range list {
		if strings.HasPrefix(s.App, prefix) && !keep(s) {
			m.snaps.Delete(s.Release)
			m.cfg.Logger.Info(msg, "owner", s.App, "checkpoint", s.Release)
		}
	}
}

// templateGrace: a template checkpoint no template builds from any more
// is kept this long after its last use, for a create that read the
// template just before a rebuild replaced it. tidyTemplatesEvery is how
// often Run looks for such checkpoints.
const (
	templateGrace      = 10 * time.Minute
	tidyTemplatesEvery = 10 * time.Minute
)

// tidyTemplates deletes the local checkpoints of templates that no
// template is built from any more, unused for grace: a rebuild replaces
// the checkpoint on the node that built it, but every node that fetched
// the old one for its creates would otherwise keep it for good.
func (m *Manager) tidyTemplates(ctx context.Context, grace time.Duration) {
	tpls, err := m.reg.ListTemplates(ctx)
	if err != nil {
		m.cfg.Logger.Warn("sandbox: tidying template checkpoints", "err", err)
		return
	}
	current := map[string]bool{}
	for _, t := range tpls {
		current[t.Snapshot] = true
	}
	cutoff := time.Now().Add(-grace)
	m.dropLocal(templateOwner(""), func(s snapshot.Info) bool {
		return current[s.Release] || !s.LastUsed.Before(cutoff) || !s.Created.Before(cutoff)
	}, "deleted the checkpoint of a template rebuilt since")
}

// HolderOf returns the live node that holds sandbox id, when that is not
// this node: a data-plane request (a port, E2B's envd) for it is answered
// with a replay to that node before anything else is done with it. ""
// when this node holds it or may take it over, or on one machine. It
// reads the registry only when the sandbox is not running here.
func (m *Manager) HolderOf(ctx context.Context, id string) string {
	if m.cfg.Live == nil {
		return ""
	}
	m.mu.Lock()
	s := m.sbs[id]
	m.mu.Unlock()
	if s != nil && s.life.TryRLock() {
		running := s.box != nil
		s.life.RUnlock()
		if running {
			return ""
		}
	}
	rec, err := m.reg.GetSandbox(ctx, id)
	if err != nil || m.mine(rec) {
		return ""
	}
	return Holder(m.elsewhere(rec))
}

// fetchTemplate makes sure the built template's checkpoint is in the
// local store before a create restores it: fetched from shared storage
// if it is there, else (the checkpoint only on the node that built it)
// ElsewhereError naming that node, where a gateway re-sends the create. A
// create must not boot the bare root file system instead: the sandbox
// would lack what the template's setup installed.
func (m *Manager) fetchTemplate(ctx context.Context, tpl registry.Template) error {
	if tpl.Node == "" || tpl.Node == m.cfg.Node {
		return nil // built here, or on one machine
	}
	err := m.pull(ctx, templateOwner(tpl.Name), tpl.Snapshot, tpl.Shared)
	if err == nil {
		return nil
	}
	e := &ElsewhereError{Why: fmt.Sprintf("template %s's checkpoint is on node %s (%v)", tpl.Name, tpl.Node, err)}
	if m.live(tpl.Node) {
		e.Node = tpl.Node
	} else {
		e.Why += ", which has left the cluster; build the template again"
	}
	return e
}
