package flight

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestDo: concurrent callers of one key share one call and its result; a
// caller whose context ends stops waiting without ending the call; a key
// is free again once its call is over.
func TestDo(t *testing.T) {
	var g Group
	var runs atomic.Int32
	release := make(chan struct{})
	fn := func(context.Context) (any, error) {
		runs.Add(1)
		<-release
		return "v", nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error)
	go func() { _, err := g.Do(ctx, "k", fn); cancelled <- err }()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			v, err := g.Do(context.Background(), "k", fn)
			if v != "v" || err != nil {
				t.Errorf("Do = %v, %v", v, err)
			}
		})
	}
	for g.waiting("k") < 9 {
		runtime.Gosched()
	}
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled caller got %v", err)
	}
	close(release)
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Errorf("%d calls for one key, want 1", n)
	}
	if _, err := g.Do(context.Background(), "k", func(context.Context) (any, error) { return nil, errors.New("again") }); err == nil || err.Error() != "again" {
		t.Errorf("a later call = %v, want its own error", err)
	}
}

// waiting is how many callers joined key's call under way.
func (g *Group) waiting(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.calls[key]; c != nil {
		return c.callers
	}
	return 0
}
