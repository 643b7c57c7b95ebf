package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the node's Prometheus series, on the API listener at /metrics.
type metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec   // app, code
	duration   *prometheus.HistogramVec // app
	boots      *prometheus.CounterVec   // app, mode, boot
	limitKills *prometheus.CounterVec   // app, limit
	errors     *prometheus.CounterVec   // app, reason
	deploys    *prometheus.CounterVec   // result
	inflight   *prometheus.GaugeVec     // app
}

func newMetrics() *metrics {
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
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "frost_inflight_requests", Help: "App requests in flight.",
		}, []string{"app"}),
	}
	m.reg.MustRegister(m.requests, m.duration, m.boots, m.limitKills, m.errors, m.deploys, m.inflight,
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
	m.inflight.DeletePartialMatch(l)
}
