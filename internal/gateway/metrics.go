package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics is the gateway's own Prometheus collector: its counters, the
// nodes it routes to, and each one's requests in flight through it. The
// values are read from the gateway's atomics at each scrape.
type metrics struct{ g *Gateway }

var (
	descRequests = prometheus.NewDesc("frost_gateway_requests_total", "Requests the gateway routed (apps, sandboxes, control API).", nil, nil)
	descRetries  = prometheus.NewDesc("frost_gateway_retries_total", "Requests sent again to another node after one failed in a way that was safe to retry.", nil, nil)
	descReplays  = prometheus.NewDesc("frost_gateway_replays_total", "Requests re-sent to the node another node named (Frost-Replay).", nil, nil)
	descFailures = prometheus.NewDesc("frost_gateway_failures_total", "Requests the gateway answered with an error of its own (no route, no node answered).", nil, nil)
	descPrewarms = prometheus.NewDesc("frost_gateway_prewarms_total", "Wakes started during a TLS handshake, from its SNI.", nil, nil)
	descBodyTO   = prometheus.NewDesc("frost_gateway_body_timeouts_total", "Requests answered 408 because their body stopped coming.", nil, nil)
	descLost     = prometheus.NewDesc("frost_gateway_nodes_lost_total", "Nodes that left the membership without draining (lease lapsed: crashed, frozen, cut off), their connections closed.", nil, nil)
	descSilent   = prometheus.NewDesc("frost_gateway_nodes_silent_total", "Members with requests in flight that stopped answering and failed a health check, their connections closed.", nil, nil)
	descMembers  = prometheus.NewDesc("frost_gateway_members", "Live nodes the gateway routes to.", nil, nil)
	descInFlight = prometheus.NewDesc("frost_gateway_node_in_flight_requests", "Requests in flight to each node through this gateway (what bounded loads compare).", []string{"node"}, nil)
)

func (m metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descRetries, descReplays, descFailures, descPrewarms, descBodyTO, descLost, descSilent, descMembers, descInFlight} {
		ch <- d
	}
}

func (m metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.g.Stats()
	for _, c := range []struct {
		d *prometheus.Desc
		v uint64
	}{{descRequests, st.Requests}, {descRetries, st.Retries}, {descReplays, st.Replays}, {descFailures, st.Failures}, {descPrewarms, st.Prewarms}, {descBodyTO, st.BodyTimeouts}, {descLost, st.Lost}, {descSilent, st.Silent}} {
		ch <- prometheus.MustNewConstMetric(c.d, prometheus.CounterValue, float64(c.v))
	}
	nodes := m.g.Nodes()
	ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(len(nodes)))
	for _, n := range nodes {
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(n.InFlight), n.Name)
	}
}
