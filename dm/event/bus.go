package event

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// Config configures a Bus.
type Config struct {
	// Labels looks up device labels for label filters; nil refuses label
	// filters with ErrInvalid.
	Labels LabelSource
	// Buffer is each watcher's buffer, in events; default 1024.
	Buffer int
	// MaxWatchers bounds concurrent watchers; default 1000.
	MaxWatchers int
	// LabelTTL is how long looked-up labels are trusted; default 30 s.
	LabelTTL time.Duration
	// MaxCachedLabels bounds the label cache; default 100 000 devices.
	MaxCachedLabels int
	Logger          *slog.Logger
	Registerer      prometheus.Registerer
	Now             func() time.Time
}

// Limits of a Filter.
const (
	MaxFilterDevices = 1000
	MaxBuffer        = 100_000
)

// CheckAndSetDefaults validates cfg and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Buffer == 0 {
		c.Buffer = 1024
	}
	if c.Buffer < 1 || c.Buffer > MaxBuffer {
		return fmt.Errorf("event: Buffer must be 1-%d", MaxBuffer)
	}
	if c.MaxWatchers == 0 {
		c.MaxWatchers = 1000
	}
	if c.MaxWatchers < 1 {
		return errors.New("event: MaxWatchers must be positive")
	}
	if c.LabelTTL == 0 {
		c.LabelTTL = 30 * time.Second
	}
	if c.MaxCachedLabels == 0 {
		c.MaxCachedLabels = 100_000
	}
	if c.LabelTTL < 0 || c.MaxCachedLabels < 10 {
		return errors.New("event: LabelTTL must be positive and MaxCachedLabels at least 10")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Filter selects the events a watcher receives. Every part must hold.
type Filter struct {
	// DeviceIDs: only these devices; empty means all.
	DeviceIDs []string
	// Selector: only devices whose labels match; zero matches all.
	Selector registry.Selector
	// Types: only these types; empty means every type but telemetry.
	Types []Type
}

// Bus fans events out to watchers. Safe for concurrent use; Publish never
// blocks.
type Bus struct {
	cfg    Config
	log    *slog.Logger
	labels *labelCache

	seq       atomic.Uint64
	telemetry atomic.Int64 // watchers that asked for telemetry

	mu        sync.RWMutex
	watchers  map[*Watcher]struct{}
	anyDevice map[*Watcher]struct{}            // watchers without a device filter
	byDevice  map[string]map[*Watcher]struct{} // the others, by device ID
	listeners map[*listener]struct{}
	closed    bool

	published *prometheus.CounterVec
	perType   map[Type]prometheus.Counter // published, resolved once
	dropped   prometheus.Counter
	overflows prometheus.Counter
	active    prometheus.Gauge
}

// New returns a Bus and registers its metrics.
func New(cfg Config) (*Bus, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	b := &Bus{cfg: cfg, log: cfg.Logger.With("component", "events"), watchers: map[*Watcher]struct{}{}, listeners: map[*listener]struct{}{},
		anyDevice: map[*Watcher]struct{}{}, byDevice: map[string]map[*Watcher]struct{}{},
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lastmile_events_published_total",
			Help: "Events published on the event bus, by type."}, []string{"type"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_events_dropped_total",
			Help: "Events a watcher did not receive because its buffer overflowed."}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{Name: "lastmile_events_watcher_overflows_total",
			Help: "Watches ended because the watcher did not keep up."}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lastmile_events_watchers",
			Help: "Watchers on the event bus."}),
	}
	for _, c := range []prometheus.Collector{b.published, b.dropped, b.overflows, b.active} {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("event: register metrics: %w", err)
		}
	}
	b.perType = make(map[Type]prometheus.Counter, len(Types))
	for _, t := range Types {
		b.perType[t] = b.published.WithLabelValues(string(t))
	}
	if cfg.Labels != nil {
		b.labels = newLabelCache(cfg.Labels, cfg.LabelTTL, cfg.MaxCachedLabels, cfg.Now)
	}
	return b, nil
}

// Wants reports whether some watcher may want events of type t, or a
// listener (which sees every event) is there; publishers use it to skip
// building events nobody receives (telemetry payloads, shadow documents).
func (b *Bus) Wants(t Type) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if len(b.listeners) > 0 {
		return true
	}
	if t == TypeTelemetry {
		return b.telemetry.Load() > 0
	}
	return len(b.watchers) > 0
}

// Publish hands ev to every watcher whose filter matches, without blocking:
// a watcher with a full buffer loses the event and its watch ends. Publish
// sets Seq, and Time when it is zero. ev must not be changed afterwards.
func (b *Bus) Publish(ev Event) {
	if b == nil {
		return
	}
	ev.Seq = b.seq.Add(1)
	if ev.Time.IsZero() {
		ev.Time = b.cfg.Now().UTC()
	}
	if c, ok := b.perType[ev.Type]; ok {
		c.Inc()
	} else {
		b.published.WithLabelValues(string(ev.Type)).Inc()
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for l := range b.listeners {
		l.fn(ev)
	}
	// Only the watchers that could want this device are looked at; the
	// device's labels are looked up once per event, without I/O.
	var labels map[string]string
	labelsKnown, labelsLooked := false, false
	offer := func(w *Watcher) {
		if !w.wantsType(ev.Type) {
			return
		}
		checked := true
		if w.needsLabels {
			if !labelsLooked {
				labels, labelsKnown = b.labels.peek(ev.DeviceID)
				labelsLooked = true
				if !labelsKnown {
					b.labels.prefetch(ev.DeviceID)
				}
			}
			if labelsKnown && !w.filter.Selector.Matches(labels) {
				return
			}
			checked = labelsKnown
		}
		w.offer(item{ev: ev, checked: checked})
	}
	for w := range b.anyDevice {
		offer(w)
	}
	for w := range b.byDevice[ev.DeviceID] {
		offer(w)
	}
}

type listener struct{ fn func(Event) }

// Listen calls fn with every event, on the publisher's goroutine, until
// cancel is called: for in-process consumers that must see every event
// (a watcher may lose events, a listener cannot). fn must not block and
// must not call Listen or cancel.
func (b *Bus) Listen(fn func(Event)) (cancel func()) {
	l := &listener{fn: fn}
	b.mu.Lock()
	b.listeners[l] = struct{}{}
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.listeners, l)
		b.mu.Unlock()
	}
}

// ForgetLabels drops the cached labels of a device after they changed, so
// label filters see the change at once rather than within LabelTTL.
func (b *Bus) ForgetLabels(deviceID string) {
	if b != nil && b.labels != nil {
		b.labels.forget(deviceID)
	}
}

// Watch registers a watcher. Events published after Watch returns and
// matching f reach it until Close, an overflow or Bus.Close.
func (b *Bus) Watch(f Filter) (*Watcher, error) {
	if len(f.DeviceIDs) > MaxFilterDevices {
		return nil, fmt.Errorf("%w: at most %d device IDs", ErrInvalid, MaxFilterDevices)
	}
	w := &Watcher{bus: b, filter: f, ch: make(chan item, b.cfg.Buffer), over: make(chan struct{}), done: make(chan struct{})}
	if len(f.DeviceIDs) > 0 {
		w.ids = make(map[string]struct{}, len(f.DeviceIDs))
		for _, id := range f.DeviceIDs {
			if !topic.ValidDeviceID(id) {
				return nil, fmt.Errorf("%w: device ID %q is not valid", ErrInvalid, id)
			}
			w.ids[id] = struct{}{}
		}
	}
	for _, t := range f.Types {
		if !ValidType(t) {
			return nil, fmt.Errorf("%w: unknown event type %q", ErrInvalid, t)
		}
	}
	w.telemetry = slices.Contains(f.Types, TypeTelemetry)
	if !f.Selector.Empty() {
		if b.labels == nil {
			return nil, fmt.Errorf("%w: label filters are not available", ErrInvalid)
		}
		w.needsLabels = true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if len(b.watchers) >= b.cfg.MaxWatchers {
		return nil, fmt.Errorf("%w: %d watchers", ErrTooManyWatchers, b.cfg.MaxWatchers)
	}
	b.watchers[w] = struct{}{}
	if w.ids == nil {
		b.anyDevice[w] = struct{}{}
	}
	for id := range w.ids {
		set := b.byDevice[id]
		if set == nil {
			set = map[*Watcher]struct{}{}
			b.byDevice[id] = set
		}
		set[w] = struct{}{}
	}
	if w.telemetry {
		b.telemetry.Add(1)
	}
	b.active.Inc()
	return w, nil
}

func (b *Bus) remove(w *Watcher) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.watchers[w]; !ok {
		return false
	}
	delete(b.watchers, w)
	delete(b.anyDevice, w)
	for id := range w.ids {
		if set := b.byDevice[id]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(b.byDevice, id)
			}
		}
	}
	if w.telemetry {
		b.telemetry.Add(-1)
	}
	b.active.Dec()
	return true
}

// Close ends every watch with ErrClosed and refuses new ones.
func (b *Bus) Close() {
	b.mu.Lock()
	b.closed = true
	ws := make([]*Watcher, 0, len(b.watchers))
	for w := range b.watchers {
		ws = append(ws, w)
	}
	b.mu.Unlock()
	for _, w := range ws {
		w.Close()
	}
}

type item struct {
	ev      Event
	checked bool // the label filter was checked by the publisher
}

// Watcher receives the events of one watch. Next is for one goroutine;
// Close may be called from any.
type Watcher struct {
	bus         *Bus
	filter      Filter
	ids         map[string]struct{}
	telemetry   bool
	needsLabels bool

	ch       chan item
	over     chan struct{} // closed on overflow
	overflow atomic.Bool
	dropped  atomic.Uint64
	done     chan struct{} // closed by Close
	once     sync.Once
}

// wantsType applies the type filter (the device filter is the bus's index).
func (w *Watcher) wantsType(t Type) bool {
	if len(w.filter.Types) == 0 {
		return t != TypeTelemetry
	}
	return slices.Contains(w.filter.Types, t)
}

func (w *Watcher) offer(it item) {
	if w.overflow.Load() {
		w.dropped.Add(1)
		w.bus.dropped.Inc()
		return
	}
	select {
	case w.ch <- it:
	default:
		w.dropped.Add(1)
		w.bus.dropped.Inc()
		if w.overflow.CompareAndSwap(false, true) {
			close(w.over)
		}
	}
}

// Next returns the next matching event. It fails with an *OverflowError
// (errors.Is ErrOverflow) once the buffer overflowed, with ErrClosed after
// Close, with ErrLabels when a label filter cannot be checked, or with
// ctx's error.
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	for {
		// An overflow ends the watch at once, before the buffered events.
		if w.overflow.Load() {
			return Event{}, w.ended()
		}
		select {
		case <-w.done:
			return Event{}, ErrClosed
		default:
		}
		select {
		case it := <-w.ch:
			if it.checked {
				return it.ev, nil
			}
			labels, err := w.bus.labels.get(ctx, it.ev.DeviceID)
			if err != nil {
				if ctx.Err() != nil {
					return Event{}, ctx.Err()
				}
				w.Close()
				return Event{}, err
			}
			if w.filter.Selector.Matches(labels) {
				return it.ev, nil
			}
		case <-w.over:
			return Event{}, w.ended()
		case <-w.done:
			return Event{}, ErrClosed
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// ended detaches an overflowed watcher and reports what it missed.
func (w *Watcher) ended() error {
	first := w.bus.remove(w)
	w.once.Do(func() { close(w.done) })
	if first {
		w.bus.overflows.Inc()
		// The events still buffered are lost too.
		n := uint64(len(w.ch))
		w.dropped.Add(n)
		w.bus.dropped.Add(float64(n))
		w.bus.log.Warn("watcher too slow, watch ended", "buffer", w.bus.cfg.Buffer, "dropped", w.dropped.Load())
	}
	return &OverflowError{Dropped: w.dropped.Load(), Buffer: w.bus.cfg.Buffer}
}

// Dropped returns how many matching events the watcher has missed so far.
func (w *Watcher) Dropped() uint64 { return w.dropped.Load() }

// Close ends the watch; Next then returns ErrClosed.
func (w *Watcher) Close() {
	w.bus.remove(w)
	w.once.Do(func() { close(w.done) })
}
