package sandbox

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/frostdev/frost/api"
	"github.com/frostdev/frost/internal/registry"
	"github.com/frostdev/frost/internal/runtime"
)

// Metrics: what each running sandbox uses, sampled every
// Config.MetricsEvery from its runtime's accounting (runtime.Stater) and
// kept for MetricsKept; a call adds one for now, which is not kept (a
// client polling every second would otherwise fill the hour). A sample's
// CPU share is the CPU time used since the sample before; a box's first
// sample is taken as it starts, so that the next has one before it.

// DefaultMetricsEvery and DefaultMetricsKept are Config's defaults:
// E2B's envd samples every 5 s as well.
const (
	DefaultMetricsEvery = 5 * time.Second
	DefaultMetricsKept  = time.Hour
)

// sample is one reading of a box's accounting.
type sample struct {
	at    time.Time
	box   runtime.Box // which run of the sandbox: CPU time starts again with each box
	stats runtime.BoxStats
}

// series is a sandbox's samples, oldest first.
type series struct {
	mu      sync.Mutex
	samples []sample
}

func (s *series) add(smp sample, keep time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cut := 0
	for cut < len(s.samples) && smp.at.Sub(s.samples[cut].at) > keep {
		cut++
	}
	s.samples = append(s.samples[cut:], smp)
}

func (s *series) reset() {
	s.mu.Lock()
	s.samples = nil
	s.mu.Unlock()
}

// between returns the samples taken in [from, to] (zero times: open) as
// metrics, but a box's first, which only bases the next one's CPU share;
// with now (a sample taken for the call, not kept), one more for it.
func (s *series) between(from, to time.Time, now *sample) []api.SandboxMetric {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := func(at time.Time) bool { return (from.IsZero() || !at.Before(from)) && (to.IsZero() || !at.After(to)) }
	out := []api.SandboxMetric{}
	for i, smp := range s.samples {
		if i > 0 && in(smp.at) && s.samples[i-1].box == smp.box {
			out = append(out, metric(s.samples[i-1], smp))
		}
	}
	if n := len(s.samples); now != nil && n > 0 && in(now.at) {
		if last := s.samples[n-1]; last.box == now.box && now.at.Sub(last.at) >= minMetricGap {
			out = append(out, metric(last, *now))
		}
	}
	return out
}

// minMetricGap is the least time a call's own sample must be after the
// last kept one to be a metric: a CPU share over less is noise.
const minMetricGap = 100 * time.Millisecond

// metric is cur as a metric, its CPU share since prev (the same box's).
func metric(prev, cur sample) api.SandboxMetric {
	pct := 0.0
	if dt := cur.at.Sub(prev.at); dt > 0 && cur.stats.CPUs > 0 {
		pct = float64(cur.stats.CPU-prev.stats.CPU) / float64(dt) / cur.stats.CPUs * 100
		pct = min(max(pct, 0), 100)
	}
	return api.SandboxMetric{Time: cur.at, CPUCount: cur.stats.CPUs, CPUUsedPct: pct,
		MemUsed: cur.stats.Memory, MemCache: cur.stats.Cache, MemTotal: cur.stats.MemoryLimit,
		NetIn: max(cur.stats.NetIn-prev.stats.NetIn, 0), NetOut: max(cur.stats.NetOut-prev.stats.NetOut, 0)}
}

// read samples box, the sandbox's running one (the caller holds life,
// shared or not); ok is false for a runtime without accounting.
func (m *Manager) read(s *sb, box runtime.Box) (smp sample, ok bool) {
	st, isStater := box.(runtime.Stater)
	if !isStater {
		return sample{}, false
	}
	stats, err := st.Stats()
	if err != nil {
		m.cfg.Logger.Debug("sandbox metrics", "id", s.id, "err", err)
		return sample{}, false
	}
	return sample{at: m.cfg.Now(), box: box, stats: stats}, true
}

// started makes box the sandbox's running one, come up how (cold,
// restore, resume, fork, reattach), and takes the sample its first
// metric's CPU share is measured from. s.life is held.
func (m *Manager) started(s *sb, box runtime.Box, how string) {
	s.box, s.boot = box, how
	m.sample(s, box)
}

// sample keeps a sample of box, the sandbox's running one.
func (m *Manager) sample(s *sb, box runtime.Box) {
	if smp, ok := m.read(s, box); ok {
		s.metrics.add(smp, m.cfg.MetricsKept)
	}
}

// sampleAll samples every running sandbox that is not being paused or
// killed.
func (m *Manager) sampleAll() {
	m.mu.Lock()
	all := make([]*sb, 0, len(m.sbs))
	for _, s := range m.sbs {
		all = append(all, s)
	}
	m.mu.Unlock()
	for _, s := range all {
		if !s.life.TryRLock() {
			continue // a pause, resume or kill is under way
		}
		if s.box != nil {
			m.sample(s, s.box)
		}
		s.life.RUnlock()
	}
}

// Metrics returns what sandbox id used between from and to (zero: open),
// oldest first: its samples while it ran on this node in the last
// MetricsKept, and one for now if it runs. A paused sandbox answers its
// history; one another node holds, ErrElsewhere.
func (m *Manager) Metrics(ctx context.Context, id string, from, to time.Time) ([]api.SandboxMetric, error) {
	rec, err := m.record(ctx, id)
	if err != nil {
		return nil, err
	}
	if rec.State == registry.SandboxRunning && !m.mine(rec) {
		return nil, m.elsewhere(rec)
	}
	s := m.state(id)
	var now *sample
	if s.life.TryRLock() {
		if s.box != nil {
			if smp, ok := m.read(s, s.box); ok {
				now = &smp
			}
		}
		s.life.RUnlock()
	}
	return s.metrics.between(from, to, now), nil
}

// checkMetrics validates Config's metrics settings.
func checkMetrics(cfg *Config) error {
	if cfg.MetricsEvery < 0 || cfg.MetricsKept < 0 {
		return fmt.Errorf("sandbox: metrics every %v, kept %v: want positive durations", cfg.MetricsEvery, cfg.MetricsKept)
	}
	if cfg.MetricsEvery == 0 {
		cfg.MetricsEvery = DefaultMetricsEvery
	}
	if cfg.MetricsKept == 0 {
		cfg.MetricsKept = DefaultMetricsKept
	}
	return nil
}
