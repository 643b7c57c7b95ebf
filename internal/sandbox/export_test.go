package sandbox

import "context"

// Expire runs one pass of the timeout loop (Run), for tests.
func (m *Manager) Expire(ctx context.Context) { m.expire(ctx) }
