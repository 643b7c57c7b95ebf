package node

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/runtime"
)

// logHub keeps the last lines of every app in memory and fans new lines out
// to followers. Guest output must never block a request: a follower that
// cannot keep up loses lines (it is told how many).
type logHub struct {
	mu   sync.Mutex
	size int
	apps map[string]*logRing
	now  func() time.Time
}

// logRing holds an app's last lines. It grows as lines arrive (a quiet app,
// say one of thousands frozen, costs a few words) and, once it holds the
// hub's size, wraps: next is then the oldest line.
type logRing struct {
	lines []api.LogLine
	next  int
	subs  map[chan api.LogLine]struct{}
}

func newLogHub(size int, now func() time.Time) *logHub {
	return &logHub{size: size, apps: make(map[string]*logRing), now: now}
}

func (h *logHub) ring(app string) *logRing {
	r := h.apps[app]
	if r == nil {
		r = &logRing{subs: make(map[chan api.LogLine]struct{})}
		h.apps[app] = r
	}
	return r
}

// add appends a line. Safe for concurrent use; never blocks.
func (h *logHub) add(l api.LogLine) {
	if l.Time.IsZero() {
		l.Time = h.now()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.ring(l.App)
	if len(r.lines) < h.size {
		r.lines = append(r.lines, l)
	} else {
		r.lines[r.next] = l
		r.next = (r.next + 1) % len(r.lines)
	}
	for c := range r.subs {
		select {
		case c <- l:
		default: // slow follower: drop
		}
	}
}

// tail returns up to n of the app's most recent lines, oldest first.
func (h *logHub) tail(app string, n int) []api.LogLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tailLocked(app, n)
}

// tailLocked is tail with h.mu held.
func (h *logHub) tailLocked(app string, n int) []api.LogLine {
	r := h.apps[app]
	if r == nil {
		return nil
	}
	all := make([]api.LogLine, 0, len(r.lines))
	all = append(all, r.lines[r.next:]...)
	all = append(all, r.lines[:r.next]...)
	if n >= 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// follow streams the app's last n lines and then new ones to fn until ctx
// ends or fn errs.
func (h *logHub) follow(ctx context.Context, app string, n int, fn func(api.LogLine) error) error {
	c := make(chan api.LogLine, 256)
	// Subscribe and copy the tail in one critical section, so no line is
	// both in the tail and on the channel, and none falls between them.
	h.mu.Lock()
	h.ring(app).subs[c] = struct{}{}
	backlog := h.tailLocked(app, n)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.ring(app).subs, c)
		h.mu.Unlock()
	}()
	for _, l := range backlog {
		if err := fn(l); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case l := <-c:
			if err := fn(l); err != nil {
				return err
			}
		}
	}
}

// drop forgets an app's lines (the app was deleted). Followers stay
// subscribed, but a later app of the same name starts with no old lines.
func (h *logHub) drop(app string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.apps[app]
	switch {
	case r == nil:
	case len(r.subs) == 0:
		delete(h.apps, app)
	default:
		r.lines, r.next = nil, 0
	}
}

func logLineFor(app, release string, err error) api.LogLine {
	level := "error"
	if errors.Is(err, runtime.ErrCanceled) {
		level = "info" // the client's doing, not the app's failure
	}
	return api.LogLine{App: app, Release: release, Stream: "frost", Level: level, Message: err.Error()}
}
