package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

func init() {
	Register(Scenario{
		Name:    "fanin",
		Help:    "Devices publish telemetry to tele/{id}/bench at Rate msg/s in total (0 = flat out) for Duration; Subs application clients share $share/bench/tele/+/bench. Delivered rate, end-to-end latency, broker CPU per message, QoS 1 messages acknowledged but not delivered.",
		Devices: func(p Params) int { return p.Devices },
		Run:     runFanin,
	})
	Register(Scenario{
		Name:    "fanout",
		Help:    "One application client publishes to bench/fanout at Rate msg/s (0 = flat out) for Duration; Subs application clients subscribe to it. Deliveries per second, latency, broker CPU per delivery.",
		Devices: func(Params) int { return 0 },
		Run:     runFanout,
	})
}

// flow is one publish/subscribe measurement: publishers, subscribers,
// counters and latency samples.
type flow struct {
	env       Env
	p         Params
	lat       latencies
	received  atomic.Int64
	published atomic.Int64
	acked     atomic.Int64
	lastRecv  atomic.Int64 // UnixNano of the latest delivery
	subs      []*client
	flushes   []func()
	pubs      []*client
}

// subscribe connects Subs application clients to filter.
func (f *flow) subscribe(ctx context.Context, filter string, idBase int) error {
	creds := f.env.Target.Creds()
	f.subs = make([]*client, f.p.Subs)
	f.flushes = make([]func(), f.p.Subs)
	return parallel(ctx, f.p.Subs, 32, func(ctx context.Context, i int) error {
		on, flush := f.lat.recorder(func() {
			f.received.Add(1)
			f.lastRecv.Store(time.Now().UnixNano())
		})
		c, _, err := dial(ctx, connectOpts{addr: f.env.Target.Addr(), localIP: sourceIP(i, f.p.Sources),
			clientID: creds.AppClientID(idBase + i), username: creds.AppUser, password: creds.AppPassword,
			keepalive: 60, clean: !f.p.Persistent, onMessage: on})
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		f.subs[i], f.flushes[i] = c, flush
		return c.subscribe(ctx, filter, f.p.QoS)
	})
}

// publishLoop publishes from c to topic until ctx ends, paced at interval.
func (f *flow) publishLoop(ctx context.Context, c *client, topic string, interval time.Duration, seqBase uint64) {
	pace := newPacer(interval)
	buf := make([]byte, max(f.p.Payload, 16))
	for seq := seqBase; pace.wait(ctx); seq++ {
		stamp(buf, seq)
		if err := c.publish(ctx, topic, f.p.QoS, buf); err != nil {
			return
		}
		f.published.Add(1)
	}
}

// measure runs the publishers for Duration, waits for stragglers and
// fills r.
func (f *flow) measure(ctx context.Context, r *Result, run func(ctx context.Context, wg *sync.WaitGroup)) {
	pid := f.env.Target.PID()
	m := startCPU(pid)
	pctx, cancel := context.WithTimeout(ctx, f.p.Duration)
	var wg sync.WaitGroup
	start := time.Now()
	run(pctx, &wg)
	<-pctx.Done()
	// A publisher blocked in a write (the broker reads slower than it
	// publishes) stops now; what it had written still counts when it
	// arrives within the straggler wait.
	for _, c := range f.pubs {
		if c != nil {
			_ = c.conn.SetWriteDeadline(time.Now())
		}
	}
	wg.Wait()
	cancel()
	pubTime := time.Since(start)
	// Stragglers: QoS 1 until every acknowledged message arrived (or 10 s);
	// QoS 0 until deliveries stop growing. The acknowledgements of the
	// last window are still on their way when publishing stops: wait for
	// them first, or the deliveries they make due would be counted as lost
	// once they arrive, after the wait for deliveries has ended.
	want := func() int64 { return f.expected(f.acked.Load()) }
	if f.p.QoS > 0 {
		waitUntil(10*time.Second, func() bool { return f.acked.Load() >= f.published.Load() })
		waitUntil(10*time.Second, func() bool { return f.received.Load() >= want() })
	} else {
		last := int64(-1)
		waitUntil(5*time.Second, func() bool {
			n := f.received.Load()
			done := n == last
			last = n
			time.Sleep(200 * time.Millisecond)
			return done
		})
	}
	bcpu, gcpu, wall := m.stop()
	for _, flush := range f.flushes {
		if flush != nil {
			flush()
		}
	}
	got := float64(f.received.Load())
	// Deliveries per second from the first publish to the last delivery:
	// a broker that queues beyond the publishing time gets no credit for it.
	span := pubTime
	if last := time.Unix(0, f.lastRecv.Load()); last.After(start.Add(span)) {
		span = last.Sub(start)
	}
	r.add("delivered", "msg/s", got/span.Seconds(), true)
	r.add("offered", "msg/s", float64(f.published.Load())/pubTime.Seconds(), true)
	f.lat.addPercentiles(r)
	r.add("broker_cpu_per_msg", "us", float64(bcpu.Microseconds())/max(got, 1), false)
	r.add("broker_cpu", "%", 100*bcpu.Seconds()/wall.Seconds(), false)
	r.add("generator_cpu", "%", 100*gcpu.Seconds()/wall.Seconds(), false)
	if f.p.QoS > 0 {
		lost := want() - f.received.Load()
		r.add("dropped_qos1", "msg", float64(max(lost, 0)), false)
	}
}

// expected maps acknowledged publishes to deliveries; set by the scenario.
func (f *flow) expected(acked int64) int64 { return acked * int64(f.fan()) }

func (f *flow) fan() int {
	if f.p.Devices == 0 { // fanout: every subscriber gets every message
		return f.p.Subs
	}
	return 1
}

func (f *flow) close() {
	closeAll(f.pubs)
	closeAll(f.subs)
}

func runFanin(ctx context.Context, env Env, p Params) (Result, error) {
	r := Result{Scenario: "fanin", Target: env.Target.Name()}
	if p.Devices <= 0 || p.Subs <= 0 {
		return r, errors.New("fanin needs devices and subscribers")
	}
	f := &flow{env: env, p: p}
	defer f.close()
	if err := f.subscribe(ctx, "$share/bench/tele/+/bench", 0); err != nil {
		return r, err
	}
	creds := env.Target.Creds()
	f.pubs = make([]*client, p.Devices)
	onAck := func() { f.acked.Add(1) }
	err := parallel(ctx, p.Devices, 64, func(ctx context.Context, i int) error {
		id := DeviceID(i)
		c, _, err := dial(ctx, connectOpts{addr: env.Target.Addr(), localIP: sourceIP(i, p.Sources), clientID: id,
			username: id, password: creds.DevicePassword[id], keepalive: 60, clean: !p.Persistent,
			window: max(p.Window, 1), onAck: onAck})
		if err != nil {
			return fmt.Errorf("publisher %s: %w", id, err)
		}
		f.pubs[i] = c
		return nil
	})
	if err != nil {
		return r, err
	}
	var interval time.Duration
	if p.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(p.Devices) / float64(p.Rate))
	}
	if p.QoS == 0 {
		f.acked.Store(0)
	}
	f.measure(ctx, &r, func(ctx context.Context, wg *sync.WaitGroup) {
		for i, c := range f.pubs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.publishLoop(ctx, c, "tele/"+DeviceID(i)+"/bench", interval, uint64(i)<<32)
			}()
		}
	})
	return r, nil
}

func runFanout(ctx context.Context, env Env, p Params) (Result, error) {
	r := Result{Scenario: "fanout", Target: env.Target.Name()}
	if p.Subs <= 0 {
		return r, errors.New("fanout needs subscribers")
	}
	p.Devices = 0
	f := &flow{env: env, p: p}
	defer f.close()
	if err := f.subscribe(ctx, "bench/fanout", 1); err != nil {
		return r, err
	}
	creds := env.Target.Creds()
	pub, _, err := dial(ctx, connectOpts{addr: env.Target.Addr(), clientID: creds.AppClientID(0),
		username: creds.AppUser, password: creds.AppPassword, keepalive: 60, clean: true,
		window: max(p.Window, 1), onAck: func() { f.acked.Add(1) }})
	if err != nil {
		return r, fmt.Errorf("publisher: %w", err)
	}
	f.pubs = []*client{pub}
	var interval time.Duration
	if p.Rate > 0 {
		interval = time.Second / time.Duration(p.Rate)
	}
	f.measure(ctx, &r, func(ctx context.Context, wg *sync.WaitGroup) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.publishLoop(ctx, pub, "bench/fanout", interval, 0)
		}()
	})
	return r, nil
}
