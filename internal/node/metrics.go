package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the node's Prometheus series, on the API listener at /metrics.
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec   // app, code
	duration     *prometheus.HistogramVec // app
	boots        *prometheus.CounterVec   // app, mode, boot
	limitKills   *prometheus.CounterVec   // app, limit
	errors       *prometheus.CounterVec   // app, reason
	deploys      *prometheus.CounterVec   // result
	freezes      *prometheus.CounterVec   // app
	fallbacks    *prometheus.CounterVec   // app, reason
	bakeFailures prometheus.Counter
}

// gaugeCollector reports a per-app gauge (in-flight requests, state) from
// the node's atomic state at scrape time.
type gaugeCollector struct {
	desc *prometheus.Desc
	each func(fn func(app string, v int64))
}

func (c gaugeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	c.each(func(app string, v int64) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), app)
	})
}

func newMetrics(inflight, state func(fn func(app string, v int64))) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "frost_requests_total", Help: "App requests served, by app and status code.",
		}, []string{"app", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "frost_request_duration_seconds", Help: "App request duration inside Frost, by app.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"app"}),
		boots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "frost_boots_total", Help: "How instances came to serve requests: warm, thaw or cold, by app and mode.",
		}, []string{"app", "mode", "boot"}),
		limitKills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "frost_limit_kills_total", Help: "Requests stopped or refused by a limit: memory, cpu, body, concurrency.",
		}, []string{"app", "limit"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "frost_errors_total", Help: "Failed app requests by reason.",
		}, []string{"app", "reason"}),
		deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "frost_deploys_total", Help: "Deploys by result: ok, invalid, error.",
		}, []string{"result"}),
		freezes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "frost_freezes_total", Help: "Apps frozen to zero (idle or frost freeze), by app.",
		}, []string{"app"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "frost_snapshot_fallbacks_total", Help: "Wakes that booted cold because the snapshot could not be used, by app and reason: missing, corrupt, incompatible, wrong_release, bad_image.",
		}, []string{"app", "reason"}),
		bakeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "frost_snapshot_bake_failures_total", Help: "Snapshots that could not be written.",
		}),
	}
	in := gaugeCollector{
		desc: prometheus.NewDesc("frost_inflight_requests", "App requests in flight.", []string{"app"}, nil),
		each: inflight,
	}
	st := gaugeCollector{
		desc: prometheus.NewDesc("frost_app_live", "1 if the app has a live program, 0 if it is frozen to zero.", []string{"app"}, nil),
		each: state,
	}
	m.reg.MustRegister(m.requests, m.duration, m.boots, m.limitKills, m.errors, m.deploys, m.freezes, m.fallbacks, m.bakeFailures, in, st,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// forget removes an app's series.
func (m *metrics) forget(app string) {
	l := prometheus.Labels{"app": app}
	m.requests.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
	m.boots.DeletePartialMatch(l)
	m.limitKills.DeletePartialMatch(l)
	m.errors.DeletePartialMatch(l)
	m.freezes.DeletePartialMatch(l)
	m.fallbacks.DeletePartialMatch(l)
}
