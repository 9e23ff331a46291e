package node

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/lastmile-dm/lastmile/dm/command"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// BenchmarkCommandRoundTrip invokes commands on a real MQTT 5 device that
// answers at once (through the command service, the broker and paho), one
// at a time, and reports p50/p99.
func BenchmarkCommandRoundTrip(b *testing.B) {
	for _, engine := range engines {
		b.Run(engine, func(b *testing.B) { benchCommands(b, engine) })
	}
}

func benchCommands(b *testing.B, engine string) {
	ln := startNode(b, engine, nil)
	d := connectV5(b, ln.mqtt, "bench", ln.device(b, "bench", nil), func(c *paho.Client, p *paho.Publish) {
		name := strings.TrimPrefix(p.Topic, "$dm/bench/cmd/")
		_, _ = c.Publish(context.Background(), &paho.Publish{Topic: p.Properties.ResponseTopic, Payload: answer(name, p.Payload),
			Properties: &paho.PublishProperties{CorrelationData: p.Properties.CorrelationData}})
	})
	d.subscribe(b, topic.CommandSubscription("bench"))
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := ln.n.commands.Invoke(context.Background(), command.Request{DeviceID: "bench", Name: "ping", Timeout: 10 * time.Second}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
