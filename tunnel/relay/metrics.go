package relay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/tunnel"
)

// metrics are the relay's Prometheus metrics.
type metrics struct {
	open     prometheus.Gauge
	sessions *prometheus.CounterVec // by result: accepted, refused, no_answer
	streams  *prometheus.CounterVec // by result: opened, refused
	bytes    *prometheus.CounterVec // by direction: to_device, from_device
	closed   *prometheus.CounterVec // by reason
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lastmile_tunnel_sessions_open", Help: "Tunnel sessions open on this node."}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_tunnel_session_opens_total",
			Help: "Tunnel session opens by result (accepted, refused, no_answer)."}, []string{"result"}),
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_tunnel_stream_opens_total",
			Help: "Tunnel connections by result (opened, refused)."}, []string{"result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_tunnel_bytes_total",
			Help: "Tunnel data bytes by direction (to_device, from_device), counted when a session ends."}, []string{"direction"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_tunnel_session_closes_total",
			Help: "Tunnel sessions ended, by reason."}, []string{"reason"}),
	}
	if r == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.open, m.sessions, m.streams, m.bytes, m.closed} {
		if err := r.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) sessionClosed(r tunnel.Reason, in, out int64) {
	m.open.Dec()
	m.closed.WithLabelValues(r.String()).Inc()
	m.bytes.WithLabelValues("from_device").Add(float64(in))
	m.bytes.WithLabelValues("to_device").Add(float64(out))
}
