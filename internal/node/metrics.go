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
}

// inflightCollector reports in-flight requests per app from the node's
// atomic counters at scrape time.
type inflightCollector struct {
	desc *prometheus.Desc
	each func(fn func(app string, v int64))
}

func (c inflightCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c inflightCollector) Collect(ch chan<- prometheus.Metric) {
	c.each(func(app string, v int64) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v), app)
	})
}

func newMetrics(inflight func(fn func(app string, v int64))) *metrics {
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
	}
	in := inflightCollector{
		desc: prometheus.NewDesc("frost_inflight_requests", "App requests in flight.", []string{"app"}, nil),
		each: inflight,
	}
	m.reg.MustRegister(m.requests, m.duration, m.boots, m.limitKills, m.errors, m.deploys, in,
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
}
