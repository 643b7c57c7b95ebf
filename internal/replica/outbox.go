package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Task kinds.
const (
	opPut      = "put"      // upload blob Digests[0] from the local store
	opSnapshot = "snapshot" // pack and upload the snapshot of App's Release
	opDelete   = "delete"   // delete Digests wherever no release refers to them
)

// task is one queued piece of work: a file in the outbox until done.
type task struct {
	Seq     uint64    `json:"seq"`
	Op      string    `json:"op"`
	Digests []string  `json:"digests,omitempty"`
	App     string    `json:"app,omitempty"`
	Release string    `json:"release,omitempty"`
	Size    int64     `json:"size,omitempty"` // bytes to upload, as far as known
	Queued  time.Time `json:"queued"`
}

// key identifies equal work: queueing a task equal to one queued is a no-op.
func (t task) key() string {
	return t.Op + "/" + t.App + "/" + t.Release + "/" + strings.Join(t.Digests, ",")
}

// outbox is a durable FIFO of tasks, one JSON file per task in dir, named
// by sequence number. A task is written (temporary file, fsync, rename,
// fsync of the directory) before add returns, and removed once done, so a
// crash loses none: New reads them back.
type outbox struct {
	dir string

	mu    sync.Mutex
	tasks []task // by Seq
	keys  map[string]bool
	next  uint64
	kick  chan struct{} // a task was added
}

func openOutbox(dir string) (*outbox, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	o := &outbox{dir: dir, keys: map[string]bool{}, next: 1, kick: make(chan struct{}, 1)}
	for _, e := range ents {
		name := e.Name()
		path := filepath.Join(dir, name)
		if strings.HasPrefix(name, ".tmp-") {
			os.Remove(path) // a write a crash interrupted: its add never returned
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, ".json"), 10, 64)
		if err != nil || !strings.HasSuffix(name, ".json") {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
		var t task
		if err := json.Unmarshal(b, &t); err != nil || t.Seq != seq || !validOp(t.Op) {
			// Written whole and renamed, so never torn; but a file that
			// is not a task is set aside rather than lost or retried forever.
			os.Rename(path, path+".bad")
			continue
		}
		o.tasks = append(o.tasks, t)
		o.keys[t.key()] = true
		o.next = max(o.next, seq+1)
	}
	sort.Slice(o.tasks, func(i, j int) bool { return o.tasks[i].Seq < o.tasks[j].Seq })
	return o, nil
}

func validOp(op string) bool { return op == opPut || op == opSnapshot || op == opDelete }

func (o *outbox) path(seq uint64) string {
	return filepath.Join(o.dir, fmt.Sprintf("%020d.json", seq))
}

// add queues t durably, unless an equal task is queued. It reports whether
// it queued it.
func (o *outbox) add(t task) (bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.keys[t.key()] {
		return false, nil
	}
	t.Seq = o.next
	b, err := json.Marshal(t)
	if err != nil {
		return false, err
	}
	if err := writeFileSync(o.dir, o.path(t.Seq), b); err != nil {
		return false, fmt.Errorf("outbox: %w", err)
	}
	o.next++
	o.tasks = append(o.tasks, t)
	o.keys[t.key()] = true
	select {
	case o.kick <- struct{}{}:
	default:
	}
	return true, nil
}

// first returns the oldest task.
func (o *outbox) first() (task, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tasks) == 0 {
		return task{}, false
	}
	return o.tasks[0], true
}

// done removes the task.
func (o *outbox) done(t task) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := range o.tasks {
		if o.tasks[i].Seq == t.Seq {
			o.tasks = append(o.tasks[:i], o.tasks[i+1:]...)
			delete(o.keys, t.key())
			break
		}
	}
	if err := os.Remove(o.path(t.Seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// backlog returns the number of tasks, the bytes they will upload, and
// when the oldest was queued.
func (o *outbox) backlog() (n int, bytes int64, oldest time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, t := range o.tasks {
		bytes += t.Size
	}
	if len(o.tasks) > 0 {
		oldest = o.tasks[0].Queued
	}
	return len(o.tasks), bytes, oldest
}

// pending reports whether a put of digest is queued: its local copy must
// stay until it is uploaded.
func (o *outbox) pending(digest string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.keys[task{Op: opPut, Digests: []string{digest}}.key()]
}

// writeFileSync writes b to path atomically and durably: a temporary file
// in dir, fsync, rename, fsync of dir.
func writeFileSync(dir, path string, b []byte) error {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
