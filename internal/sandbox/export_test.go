package sandbox

import "context"

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
