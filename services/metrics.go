package services

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// apiMetrics counts and times every call, and logs it at debug level
// (method, code, duration; never tokens or request bodies).
type apiMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(r prometheus.Registerer) (*apiMetrics, error) {
	m := &apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_api_requests_total", Help: "Northbound API calls by method and gRPC code."}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lastmile_api_request_duration_seconds", Help: "Northbound API call latency.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}}, []string{"method"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := r.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *apiMetrics) observe(ctx context.Context, log *slog.Logger, method string, start time.Time, err error) {
	code := status.Code(err)
	d := time.Since(start)
	m.requests.WithLabelValues(method, code.String()).Inc()
	m.duration.WithLabelValues(method).Observe(d.Seconds())
	log.DebugContext(ctx, "api call", "method", method, "code", code.String(), "duration", d)
}

func (m *apiMetrics) unary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		m.observe(ctx, log, info.FullMethod, start, err)
		return resp, err
	}
}

func (m *apiMetrics) stream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		start := time.Now()
		err := h(srv, ss)
		m.observe(ss.Context(), log, info.FullMethod, start, err)
		return err
	}
}
