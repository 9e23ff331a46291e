package command

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	invocations *prometheus.CounterVec
	replies     *prometheus.CounterVec
	pending     prometheus.Gauge
	duration    prometheus.Histogram
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_commands_invocations_total",
			Help: "Command invocations by outcome: replied, timeout, unavailable, bad_reply, canceled, too_many_pending, send_failed."}, []string{"outcome"}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_commands_replies_total",
			Help: "Replies received from devices by what became of them: accepted, malformed, late, unknown, foreign."}, []string{"result"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lastmile_commands_pending",
			Help: "Invocations waiting for a reply."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lastmile_commands_round_trip_seconds",
			Help:    "Time from sending a command to the device's reply.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}}),
	}
	for _, c := range []prometheus.Collector{m.invocations, m.replies, m.pending, m.duration} {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("command: register metrics: %w", err)
		}
	}
	return m, nil
}
