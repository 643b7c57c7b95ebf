package sandbox

import (
	"context"
	"time"
)

// SampleAll takes one round of metrics samples (Run), for tests.
func (m *Manager) SampleAll() { m.sampleAll() }

// Expire runs one pass of the timeout loop (Run), for tests.
func (m *Manager) Expire(ctx context.Context) { m.expire(ctx) }

// Busy says whether calls in flight hold the sandbox (for tests).
func (m *Manager) Busy(id string) int {
	s := m.state(id)
	if s.life.TryLock() {
		s.life.Unlock()
		return 0
	}
	return 1
}

// PublicPorts is publicPorts, for tests.
func (m *Manager) PublicPorts(ctx context.Context, id string) bool { return m.publicPorts(ctx, id) }

// Known says whether the manager holds state for id (for tests).
func (m *Manager) Known(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sbs[id] != nil
}

// TidyTemplates is tidyTemplates with a grace of the test's choosing.
func (m *Manager) TidyTemplates(ctx context.Context, grace time.Duration) {
	m.tidyTemplates(ctx, grace)
}

// WaitUploads waits for the checkpoint uploads under way (for tests).
func (m *Manager) WaitUploads() { m.uploads.Wait() }

// PinCheckpoint pins a checkpoint as a capture does (fork.go), for tests.
func (m *Manager) PinCheckpoint(key string) func() { return m.pinCheckpoint(key) }

// WaitSpent waits for the removals of spent checkpoints under way.
func (m *Manager) WaitSpent() { m.spent.Wait() }
