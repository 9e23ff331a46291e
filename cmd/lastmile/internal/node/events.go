package node

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/lastmile-dm/lastmile/broker"
	"github.com/lastmile-dm/lastmile/dm/event"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// This file wires the event bus: presence comes from presenceSink
// (presence.go), telemetry from a platform subscription to tele/#, command
// results from the command service; shadows publish with
// n.events.Publish(event.ShadowUpdated(...)) and event.ShadowDelta.

// newEvents builds the event bus. It runs before the broker is built: the
// presence sink publishes to it.
func (n *Node) newEvents(logger *slog.Logger) error {
	bus, err := event.New(event.Config{Labels: storeLabels{n.store}, Buffer: n.cfg.Events.WatcherBuffer,
		MaxWatchers: n.cfg.Events.MaxWatchers, Logger: logger, Registerer: n.metrics})
	if err != nil {
		return err
	}
	n.events = bus
	return nil
}

// subscribeTelemetry hands every device's telemetry to the bus, when some
// watcher asked for telemetry. It runs on the publishing device's
// goroutine: Publish never blocks, and the payload is copied only when
// someone watches.
func (n *Node) subscribeTelemetry() error {
	_, err := n.broker.Subscribe(topic.TelemetryRoot+"/#", func(m broker.Message) {
		if !n.events.Wants(event.TypeTelemetry) {
			return
		}
		id, ok := topic.DeviceOf(m.Topic)
		if !ok || m.PrincipalID != id {
			return // only a device's own telemetry is its telemetry
		}
		stream := strings.TrimPrefix(m.Topic, topic.TelemetryRoot+"/"+id+"/")
		n.events.Publish(event.Event{Type: event.TypeTelemetry, DeviceID: id, Telemetry: &event.Telemetry{
			Stream: stream, Payload: append([]byte(nil), m.Payload...), ContentType: m.ContentType}})
	})
	return err
}

// storeLabels reads device labels for label filters (cached by the bus).
type storeLabels struct{ store registry.Store }

func (s storeLabels) DeviceLabels(ctx context.Context, id string) (map[string]string, error) {
	d, err := s.store.GetDevice(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return d.Labels, nil
}

// presenceEvent is the event of a connect or disconnect.
func presenceEvent(deviceID string, at time.Time, p event.Presence) event.Event {
	return event.Event{Type: event.TypePresence, DeviceID: deviceID, Time: at.UTC(), Presence: &p}
}
