package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"
)

// Params are every scenario's knobs; each scenario reads the ones it
// needs and documents them in its registry entry.
type Params struct {
	Devices    int           // devices (connect, fanin publishers, storm)
	Subs       int           // subscribers (fanin: shared; fanout: one topic)
	QoS        byte          // publish and subscribe QoS
	Rate       int           // offered load, messages per second in total; 0 = flat out
	Duration   time.Duration // publishing time
	Payload    int           // payload bytes (at least 16)
	Persistent bool          // clean session false for every client
	Sources    int           // source addresses 127.0.0.1 … 127.0.0.<Sources>
	Window     int           // QoS 1 publishes a client may have unacknowledged
	Procs      int           // connect: generator processes (each its own ~20k open-file limit); <= 1 = this one
	Hold       time.Duration // connect: hold the idle connections this long, pinging as devices do, and read RSS again (rss_per_conn_held); 0 = no hold
}

// Figure is one measured number.
type Figure struct {
	Name  string  `json:"name"`
	Unit  string  `json:"unit"`
	Value float64 `json:"value"`
	// Higher says which direction is better, for the report.
	Higher bool `json:"higher_is_better"`
}

// Result is what one run of a scenario measured.
type Result struct {
	Scenario string   `json:"scenario"`
	Target   string   `json:"target"`
	Figures  []Figure `json:"figures"`
}

func (r *Result) add(name, unit string, v float64, higher bool) {
	r.Figures = append(r.Figures, Figure{Name: name, Unit: unit, Value: v, Higher: higher})
}

// Env is what a scenario gets: a started, provisioned target and a log.
type Env struct {
	Target Target
	Log    io.Writer
}

// Scenario is one bounded load pattern; each registers itself with
// Register from an init function.
type Scenario struct {
	Name string
	Help string
	// Devices returns how many devices Params need provisioned.
	Devices func(Params) int
	Run     func(ctx context.Context, env Env, p Params) (Result, error)
	// LastmileOnly marks a scenario that exercises lastmile's own
	// features (shadows, tunnels, SNMP): other targets are skipped with a
	// note, and it has no ratio.
	LastmileOnly bool
}

// ErrNotApplicable is returned by RunOnce for a lastmile-only scenario on
// another target.
var ErrNotApplicable = errors.New("scenario not applicable to this target")

// Applies reports whether the scenario can run against t.
func (s Scenario) Applies(t Target) bool {
	if !s.LastmileOnly {
		return true
	}
	_, ok := t.(*Lastmile)
	return ok
}

var (
	registryMu sync.Mutex
	registry   = map[string]Scenario{}
)

// Register adds a scenario; it panics on a duplicate name.
func Register(s Scenario) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, ok := registry[s.Name]; ok {
		panic("bench: scenario registered twice: " + s.Name)
	}
	registry[s.Name] = s
}

// Lookup returns the named scenario.
func Lookup(name string) (Scenario, bool) {
	registryMu.Lock()
	defer registryMu.Unlock()
	s, ok := registry[name]
	return s, ok
}

// Scenarios lists the registered scenarios by name.
func Scenarios() []Scenario {
	registryMu.Lock()
	defer registryMu.Unlock()
	out := make([]Scenario, 0, len(registry))
	for _, s := range registry {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// sourceIP spreads connections over 127.0.0.1 … 127.0.0.<n>, so that a
// run is not limited to one source address's ~28k ephemeral ports.
func sourceIP(i, n int) string {
	if n <= 1 {
		return ""
	}
	return fmt.Sprintf("127.0.0.%d", 1+i%n)
}

// stamp writes the send time and a sequence number at the start of a
// payload; latency is measured from it.
func stamp(b []byte, seq uint64) {
	binary.LittleEndian.PutUint64(b, uint64(time.Now().UnixNano())) //nolint:gosec // positive
	binary.LittleEndian.PutUint64(b[8:], seq)
}

func sentAt(b []byte) (time.Time, bool) {
	if len(b) < 16 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.LittleEndian.Uint64(b))), true //nolint:gosec // written by stamp
}

// latencies collects per-receiver samples without a shared lock: each
// receiver owns one slice.
type latencies struct {
	mu   sync.Mutex
	sets [][]time.Duration
}

// recorder returns a callback for one receiver and a function that hands
// its samples over at the end.
func (l *latencies) recorder(count func()) (func(string, []byte), func()) {
	var mine []time.Duration
	var mu sync.Mutex
	on := func(_ string, payload []byte) {
		if t, ok := sentAt(payload); ok {
			mu.Lock()
			mine = append(mine, time.Since(t))
			mu.Unlock()
		}
		if count != nil {
			count()
		}
	}
	flush := func() {
		mu.Lock()
		defer mu.Unlock()
		l.mu.Lock()
		l.sets = append(l.sets, mine)
		l.mu.Unlock()
		mine = nil
	}
	return on, flush
}

// addPercentiles adds p50/p90/p99/max in milliseconds.
func (l *latencies) addPercentiles(r *Result) {
	l.mu.Lock()
	var all []time.Duration
	for _, s := range l.sets {
		all = append(all, s...)
	}
	l.mu.Unlock()
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	q := func(p float64) float64 {
		i := int(p * float64(len(all)-1))
		return float64(all[i]) / float64(time.Millisecond)
	}
	r.add("p50", "ms", q(0.50), false)
	r.add("p90", "ms", q(0.90), false)
	r.add("p99", "ms", q(0.99), false)
	r.add("max", "ms", q(1), false)
}

// pacer spaces one client's publishes at interval, starting at a random
// phase so that clients do not publish in lockstep.
type pacer struct {
	interval time.Duration
	next     time.Time
}

func newPacer(interval time.Duration) *pacer {
	p := &pacer{interval: interval}
	if interval > 0 {
		p.next = time.Now().Add(time.Duration(rand.Int64N(int64(interval)))) //nolint:gosec // phase only
	}
	return p
}

// wait returns false when ctx ended first.
func (p *pacer) wait(ctx context.Context) bool {
	if p.interval == 0 {
		return ctx.Err() == nil
	}
	d := time.Until(p.next)
	p.next = p.next.Add(p.interval)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// waitUntil polls cond every 20 ms until it holds or d passes.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
