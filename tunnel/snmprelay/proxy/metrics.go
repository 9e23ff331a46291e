package proxy

import "github.com/prometheus/client_golang/prometheus"

// metrics are the proxy's Prometheus metrics.
type metrics struct {
	requests *prometheus.CounterVec // UDP requests by result
	answers  *prometheus.CounterVec // device answers not matched: bad, late
	duration prometheus.Histogram   // relayed request round trip
	traps    *prometheus.CounterVec // by result: forwarded, bad, dropped, send_failed
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_snmp_proxy_requests_total",
			Help: "SNMP requests on the UDP listener by result (answered, offline, no_answer, target_timeout, bad_community, no_device, malformed, unsupported_version, unsupported_pdu, overloaded, duplicate, bad_answer)."}, []string{"result"}),
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_snmp_proxy_unmatched_answers_total",
			Help: "Device answers that matched no waiting request (late) or did not parse (bad)."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lastmile_snmp_proxy_request_duration_seconds",
			Help:    "Round trip of an answered SNMP request through the device's agent.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}),
		traps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_snmp_traps_total",
			Help: "Device traps by result (forwarded, bad, dropped, send_failed)."}, []string{"result"}),
	}
	if r == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.answers, m.duration, m.traps} {
		if err := r.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
