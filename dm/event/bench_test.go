package event_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/lastmile-dm/lastmile/dm/event"
	"github.com/lastmile-dm/lastmile/dm/registry"
)

// BenchmarkPublish measures what one event costs the publishing device's
// goroutine with N watchers: 10% of them want the event's device, the rest
// filter it out; the matching ones are drained concurrently.
func BenchmarkPublish(b *testing.B) {
	for _, watchers := range []int{0, 10, 100, 1000} {
		b.Run(fmt.Sprintf("watchers=%d", watchers), func(b *testing.B) {
			bus, err := event.New(event.Config{Buffer: 1 << 16, MaxWatchers: watchers + 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer bus.Close()
			for i := range watchers {
				dev := "other"
				if i%10 == 0 {
					dev = "d1"
				}
				w, err := bus.Watch(event.Filter{DeviceIDs: []string{dev}, Types: []event.Type{event.TypeTelemetry}})
				if err != nil {
					b.Fatal(err)
				}
				go func() {
					for {
						if _, err := w.Next(context.Background()); err != nil {
							return
						}
					}
				}()
			}
			ev := event.Event{Type: event.TypeTelemetry, DeviceID: "d1", Telemetry: &event.Telemetry{Stream: "x", Payload: []byte(`{"t":1}`)}}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				bus.Publish(ev)
			}
		})
	}
}

// BenchmarkPublishLabels is the same with label-filtered watchers (labels
// cached after the first event).
func BenchmarkPublishLabels(b *testing.B) {
	src := labelsFunc(func(context.Context, string) (map[string]string, error) {
		return map[string]string{"region": "north"}, nil
	})
	bus, err := event.New(event.Config{Labels: src, Buffer: 1 << 16, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	sel, _ := registry.ParseSelector("region=north")
	for range 100 {
		w, _ := bus.Watch(event.Filter{Selector: sel, Types: []event.Type{event.TypeTelemetry}})
		go func() {
			for {
				if _, err := w.Next(context.Background()); err != nil {
					return
				}
			}
		}()
	}
	ev := event.Event{Type: event.TypeTelemetry, DeviceID: "d1", Telemetry: &event.Telemetry{Stream: "x"}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		bus.Publish(ev)
	}
}

type labelsFunc func(context.Context, string) (map[string]string, error)

func (f labelsFunc) DeviceLabels(ctx context.Context, id string) (map[string]string, error) {
	return f(ctx, id)
}
