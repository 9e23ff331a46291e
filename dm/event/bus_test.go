package event_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/dm/event"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/internal/store/embedded"
)

// registryLabels reads labels from a real registry and counts the reads.
type registryLabels struct {
	reg   *registry.Service
	reads atomic.Int64
}

func (r *registryLabels) DeviceLabels(ctx context.Context, id string) (map[string]string, error) {
	r.reads.Add(1)
	d, _, err := r.reg.Get(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return d.Labels, nil
}

func newRegistry(t *testing.T, devices map[string]map[string]string) *registryLabels {
	t.Helper()
	st, err := embedded.Open(embedded.Config{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	reg, err := registry.New(registry.Config{Store: st, Presence: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for id, labels := range devices {
		if _, _, err := reg.Create(context.Background(), registry.Device{ID: id, Labels: labels, Enabled: true}, registry.Secret{}); err != nil {
			t.Fatal(err)
		}
	}
	return &registryLabels{reg: reg}
}

func newBus(t *testing.T, cfg event.Config) (*event.Bus, *prometheus.Registry) {
	t.Helper()
	m := prometheus.NewRegistry()
	cfg.Registerer = m
	b, err := event.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, m
}

func next(t *testing.T, w *event.Watcher) event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return ev
}

func presence(id string, up bool) event.Event {
	return event.Event{Type: event.TypePresence, DeviceID: id, Presence: &event.Presence{Connected: up}}
}

func tele(id string) event.Event {
	return event.Event{Type: event.TypeTelemetry, DeviceID: id, Telemetry: &event.Telemetry{Stream: "x", Payload: []byte("1")}}
}

func TestFilters(t *testing.T) {
	t.Parallel()
	src := newRegistry(t, map[string]map[string]string{
		"n1": {"region": "north"}, "n2": {"region": "north"}, "s1": {"region": "south"},
	})
	b, _ := newBus(t, event.Config{Labels: src})
	sel, err := registry.ParseSelector("region=north")
	if err != nil {
		t.Fatal(err)
	}
	all, _ := b.Watch(event.Filter{})
	teleOnly, _ := b.Watch(event.Filter{Types: []event.Type{event.TypeTelemetry}})
	dev, _ := b.Watch(event.Filter{DeviceIDs: []string{"s1"}})
	north, _ := b.Watch(event.Filter{Selector: sel, Types: []event.Type{event.TypePresence, event.TypeTelemetry}})
	if b.Wants(event.TypeTelemetry) != true {
		t.Fatal("telemetry watchers exist")
	}

	for _, ev := range []event.Event{presence("n1", true), tele("s1"), presence("s1", true), tele("n2"), presence("ghost", true), presence("n1", false)} {
		b.Publish(ev)
	}
	// Each watcher gets exactly its events, in order; a marker event that
	// every watcher wants ends each sequence, so nothing extra slipped in.
	b.Publish(event.Event{Type: event.TypeCommandResult, DeviceID: "n1", Command: &event.Command{Name: "end"}})
	b.Publish(tele("n1"))
	want := map[*event.Watcher][]string{
		all:      {"presence/n1", "presence/s1", "presence/ghost", "presence/n1", "command.result/n1"},
		teleOnly: {"telemetry/s1", "telemetry/n2", "telemetry/n1"},
		dev:      {"presence/s1"},
		north:    {"presence/n1", "telemetry/n2", "presence/n1", "telemetry/n1"},
	}
	for w, evs := range want {
		var last uint64
		for i, s := range evs {
			ev := next(t, w)
			if got := string(ev.Type) + "/" + ev.DeviceID; got != s {
				t.Fatalf("event %d: got %s, want %s (all of %v)", i, got, s, evs)
			}
			if ev.Seq <= last || ev.Time.IsZero() {
				t.Fatalf("seq %d after %d, time %v", ev.Seq, last, ev.Time)
			}
			last = ev.Seq
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if ev, err := dev.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dev watcher got an extra %+v, %v", ev, err)
	}
	// Labels were read at most once per device, however many events.
	for range 100 {
		b.Publish(presence("n1", true))
	}
	for range 100 {
		next(t, north)
	}
	if r := src.reads.Load(); r > 4 {
		t.Fatalf("%d label reads for 4 devices", r)
	}
}

func TestListen(t *testing.T) {
	t.Parallel()
	b, _ := newBus(t, event.Config{})
	if b.Wants(event.TypeShadowUpdated) || b.Wants(event.TypeTelemetry) {
		t.Fatal("a bus with no watcher and no listener wants events")
	}
	var got []string
	cancel := b.Listen(func(ev event.Event) { got = append(got, string(ev.Type)+"/"+ev.DeviceID) })
	// A listener sees every event, so publishers must not skip any.
	if !b.Wants(event.TypeShadowUpdated) || !b.Wants(event.TypeTelemetry) {
		t.Fatal("a listener is there but the bus wants no events")
	}
	b.Publish(presence("a", true))
	b.Publish(tele("b"))
	cancel()
	if b.Wants(event.TypeShadowUpdated) {
		t.Fatal("still wants events after the listener left")
	}
	b.Publish(presence("c", true))
	if fmt.Sprint(got) != "[presence/a telemetry/b]" {
		t.Fatalf("listener saw %v", got)
	}
}

func TestBadFilters(t *testing.T) {
	t.Parallel()
	b, _ := newBus(t, event.Config{MaxWatchers: 2})
	sel, _ := registry.ParseSelector("a=b")
	many := make([]string, event.MaxFilterDevices+1)
	for i := range many {
		many[i] = fmt.Sprint("d", i)
	}
	for name, f := range map[string]event.Filter{
		"bad device":              {DeviceIDs: []string{"a/b"}},
		"bad type":                {Types: []event.Type{"nope"}},
		"labels without a source": {Selector: sel},
		"too many devices":        {DeviceIDs: many},
	} {
		if _, err := b.Watch(f); !errors.Is(err, event.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	w1, _ := b.Watch(event.Filter{})
	if _, err := b.Watch(event.Filter{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Watch(event.Filter{}); !errors.Is(err, event.ErrTooManyWatchers) {
		t.Fatalf("third watcher: %v", err)
	}
	w1.Close()
	if _, err := w1.Next(context.Background()); !errors.Is(err, event.ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	if _, err := b.Watch(event.Filter{}); err != nil {
		t.Fatalf("after a Close: %v", err)
	}
}

// TestSlowWatcher: a watcher that never reads does not stall the publisher
// (Publish returns for every event) nor the other watchers; its watch ends
// with the number of events it missed.
func TestSlowWatcher(t *testing.T) {
	t.Parallel()
	const buffer, extra = 16, 50
	b, m := newBus(t, event.Config{Buffer: buffer, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	slow, _ := b.Watch(event.Filter{})
	fast, _ := b.Watch(event.Filter{})
	// The fast watcher reads each event before the next is published; the
	// slow one never reads.
	for i := range buffer + extra {
		b.Publish(presence(fmt.Sprint("d", i), true))
		if ev := next(t, fast); ev.DeviceID != fmt.Sprint("d", i) {
			t.Fatalf("fast watcher got %s, want d%d", ev.DeviceID, i)
		}
	}
	_, err := slow.Next(context.Background())
	var oe *event.OverflowError
	if !errors.As(err, &oe) || !errors.Is(err, event.ErrOverflow) {
		t.Fatalf("slow watcher: %v, want an overflow", err)
	}
	if oe.Dropped != buffer+extra || oe.Buffer != buffer {
		t.Fatalf("overflow %+v, want %d dropped of buffer %d", oe, buffer+extra, buffer)
	}
	if v := metric(t, m, "lastmile_events_dropped_total"); v != buffer+extra {
		t.Fatalf("dropped metric %v", v)
	}
	// The slow watcher is gone: later events do not count against it.
	b.Publish(presence("x", true))
	if _, err := slow.Next(context.Background()); !errors.As(err, &oe) || oe.Dropped != buffer+extra {
		t.Fatalf("after the end: %v", err)
	}
	if v := metric(t, m, "lastmile_events_published_total"); v != buffer+extra+1 {
		t.Fatalf("published metric %v", v)
	}
	if v := metric(t, m, "lastmile_events_watcher_overflows_total"); v != 1 {
		t.Fatalf("overflows metric %v", v)
	}
}

// metric sums every series of a counter or gauge.
func metric(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// TestConcurrentPublish runs publishers and watchers at once (for -race)
// and checks every watcher sees every event exactly once.
func TestConcurrentPublish(t *testing.T) {
	t.Parallel()
	const publishers, each = 4, 500
	b, _ := newBus(t, event.Config{Buffer: publishers * each})
	var ws []*event.Watcher
	for range 3 {
		w, err := b.Watch(event.Filter{Types: []event.Type{event.TypeTelemetry}})
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				b.Publish(tele(fmt.Sprint("d", p)))
			}
		}()
	}
	wg.Wait()
	for _, w := range ws {
		seen := map[uint64]bool{}
		for range publishers * each {
			ev := next(t, w)
			if seen[ev.Seq] {
				t.Fatalf("seq %d twice", ev.Seq)
			}
			seen[ev.Seq] = true
		}
	}
}
