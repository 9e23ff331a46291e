package broker

import (
	"bytes"
	"sync/atomic"

	mqtt "github.com/lastmile-dm/lastmile/third_party/mochi"
	"github.com/lastmile-dm/lastmile/third_party/mochi/packets"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the broker's Prometheus series, lastmile_broker_*.
type metrics struct {
	collectors    []prometheus.Collector
	connects      prometheus.Counter
	disconnects   prometheus.Counter
	authFailures  *prometheus.CounterVec
	aclDenials    *prometheus.CounterVec
	received      [3]prometheus.Counter
	sent          [3]prometheus.Counter
	persistErrors prometheus.Counter

	deliveryDrops    *prometheus.CounterVec
	deliveriesQueued prometheus.Counter
	slowDisconnects  *prometheus.CounterVec
}

func newMetrics(m *mqtt.Server) *metrics {
	x := &metrics{
		connects:      prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_broker_connects_total", Help: "Accepted MQTT connections."}),
		disconnects:   prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_broker_disconnects_total", Help: "Ended MQTT connections."}),
		authFailures:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_broker_auth_failures_total", Help: "Refused CONNECTs by reason."}, []string{"reason"}),
		persistErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_broker_session_store_errors_total", Help: "Failed session store writes and reads."}),
		aclDenials:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_broker_acl_denials_total", Help: "Denied publishes, subscriptions and wills."}, []string{"action"}),
		deliveryDrops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_broker_deliveries_dropped_total",
			Help: "Deliveries dropped because a client's write buffer was full (QoS 0: write_buffer_full) or its session queue (QoS >= 1: session_queue_full, packet_ids_exhausted)."}, []string{"reason"}),
		deliveriesQueued: prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_broker_deliveries_queued_total",
			Help: "QoS >= 1 deliveries that found the client's write buffer full and were queued in its session instead."}),
		slowDisconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_broker_slow_consumer_disconnects_total",
			Help: "Clients disconnected for not reading: write buffer or session queue full (policy disconnect), or write backlog beyond max_pending_bytes (any policy)."}, []string{"reason"}),
	}
	for _, r := range []string{dropWriteBuffer, dropQueueFull, dropPacketIDs} {
		x.deliveryDrops.WithLabelValues(r)
	}
	for _, r := range []string{dropWriteBuffer, dropQueueFull, dropWriteBacklog} {
		x.slowDisconnects.WithLabelValues(r)
	}
	in := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_broker_messages_received_total", Help: "PUBLISH packets received from clients, by QoS."}, []string{"qos"})
	out := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_broker_messages_sent_total", Help: "PUBLISH packets written to clients, by QoS."}, []string{"qos"})
	for q, l := range []string{"0", "1", "2"} {
		x.received[q] = in.WithLabelValues(l)
		x.sent[q] = out.WithLabelValues(l)
	}
	info := m.Info
	gauge := func(name, help string, v *int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(atomic.LoadInt64(v)) })
	}
	counter := func(name, help string, v *int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(atomic.LoadInt64(v)) })
	}
	x.collectors = []prometheus.Collector{
		x.connects, x.disconnects, x.persistErrors, x.authFailures, x.aclDenials, in, out,
		x.deliveryDrops, x.deliveriesQueued, x.slowDisconnects,
		gauge("lastmile_broker_connections", "Connected MQTT clients.", &info.ClientsConnected),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lastmile_broker_parked_connections",
			Help: "Connected MQTT clients idle long enough to have given up their goroutine (plain TCP only)."},
			func() float64 { return float64(m.ParkedClients()) }),
		gauge("lastmile_broker_sessions", "Sessions held, connected or not.", &info.ClientsTotal),
		gauge("lastmile_broker_subscriptions", "Subscriptions held.", &info.Subscriptions),
		gauge("lastmile_broker_retained_messages", "Retained messages held.", &info.Retained),
		gauge("lastmile_broker_inflight_messages", "QoS 1/2 messages inflight or queued.", &info.Inflight),
		counter("lastmile_broker_messages_dropped_total", "Messages dropped because a client's write buffer was full (QoS 0; QoS >= 1 ones are queued instead) or it was offline.", &info.MessagesDropped),
		counter("lastmile_broker_inflight_dropped_total", "QoS 1/2 messages dropped because a session's queue was full or out of packet IDs.", &info.InflightDropped),
	}
	return x
}

func (x *metrics) register(r prometheus.Registerer) error {
	for _, c := range x.collectors {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// metricsHook counts PUBLISH packets in and out.
type metricsHook struct {
	mqtt.HookBase
	m *metrics
}

func (h *metricsHook) ID() string { return "lastmile-metrics" }

func (h *metricsHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPacketRead, mqtt.OnPacketSent}, []byte{b})
}

func (h *metricsHook) OnPacketRead(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos < 3 {
		h.m.received[pk.FixedHeader.Qos].Inc()
	}
	return pk, nil
}

func (h *metricsHook) OnPacketSent(_ *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos < 3 {
		h.m.sent[pk.FixedHeader.Qos].Inc()
	}
}
