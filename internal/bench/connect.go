package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

func init() {
	Register(Scenario{
		Name:    "connect",
		Help:    "Devices authenticated devices connect as fast as they can and stay idle (keepalive 60 s): connect rate, broker RSS per connection.",
		Devices: func(p Params) int { return p.Devices },
		Run:     runConnect,
	})
}

// connectAll connects devices [0, n) with width dials at a time and
// returns the clients (nil where a connect failed) and how many failed.
func connectAll(ctx context.Context, env Env, p Params, n, width int, clean bool) ([]*client, int64, error) {
	creds := env.Target.Creds()
	addrs := addrsOf(env.Target)
	clients := make([]*client, n)
	var failed atomic.Int64
	var firstErr error
	var once sync.Once
	err := parallel(ctx, n, width, func(ctx context.Context, i int) error {
		id := DeviceID(i)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, _, err := dial(cctx, connectOpts{addr: addrs[i%len(addrs)], localIP: sourceIP(i, p.Sources), clientID: id,
			username: id, password: creds.DevicePassword[id], keepalive: 60, clean: clean})
		if err != nil {
			failed.Add(1)
			once.Do(func() { firstErr = err })
			return nil
		}
		clients[i] = c
		return nil
	})
	if firstErr != nil {
		fmt.Fprintf(env.Log, "  %s: %d connects failed, first: %v\n", env.Target.Name(), failed.Load(), firstErr)
	}
	return clients, failed.Load(), err
}

func closeAll(clients []*client) {
	var wg sync.WaitGroup
	for _, c := range clients {
		if c != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.disconnect() }()
		}
	}
	wg.Wait()
}

// connectWidth is how many CONNECTs are in progress at once: enough to keep
// both cores busy, few enough not to overflow mosquitto's listen backlog
// (100), whose dropped SYNs would cost a 1 s retransmit and measure the
// kernel instead of the broker.
const connectWidth = 32

func runConnect(ctx context.Context, env Env, p Params) (Result, error) {
	r := Result{Scenario: "connect", Target: env.Target.Name()}
	pids := pidsOf(env.Target)
	before, err := sumRSS(pids)
	if err != nil {
		return r, err
	}
	m := startCPU(pids...)
	start := time.Now()
	var (
		clients []*client
		failed  int64
	)
	if p.Hold > 0 && p.Procs > 1 {
		m.stop()
		return r, fmt.Errorf("connect: -hold needs the connections in this process (-procs 1)")
	}
	if p.Procs > 1 {
		reps, release, err := connectInWorkers(ctx, env, p, p.Devices)
		if err != nil {
			m.stop()
			return r, err
		}
		defer release()
		// The rate is over the span from the first worker's first dial to
		// the last worker's last CONNACK.
		first, last := reps[0].StartNano, reps[0].EndNano
		var wcpu time.Duration
		for _, w := range reps {
			first, last = min(first, w.StartNano), max(last, w.EndNano)
			failed += w.Failed
			wcpu += time.Duration(w.CPUNano)
			if w.FirstError != "" {
				fmt.Fprintf(env.Log, "  %s: %d connects failed in a worker, first: %s\n", env.Target.Name(), w.Failed, w.FirstError)
			}
		}
		bcpu, gcpu, _ := m.stop()
		return connectResult(ctx, r, pids, before, p.Devices, failed, time.Duration(last-first), bcpu, gcpu+wcpu)
	}
	clients, failed, err = connectAll(ctx, env, p, p.Devices, connectWidth, true)
	elapsed := time.Since(start)
	bcpu, gcpu, _ := m.stop()
	defer closeAll(clients)
	if err != nil {
		return r, err
	}
	r, err = connectResult(ctx, r, pids, before, p.Devices, failed, elapsed, bcpu, gcpu)
	if err != nil || p.Hold <= 0 {
		return r, err
	}
	return holdIdle(ctx, r, pids, before, clients, p.Hold)
}

// holdIdle keeps the connections idle for d, each sending a PINGREQ every
// half keepalive as a device does (more often in a hold shorter than a
// minute, so that it pings at all), then reads the broker's RSS again: an
// idle fleet's steady state, past Go's forced collection (every 2 minutes)
// and the scavenger's return of freed pages, which the reading 2 s after
// the connects does not see. Connections the broker dropped meanwhile are
// counted (dropped_while_held); the figure is per connection still open.
func holdIdle(ctx context.Context, r Result, pids []int, before int64, clients []*client, d time.Duration) (Result, error) {
	pingEvery := min(30*time.Second, d/2) // keepalive 60 s
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		wait := min(pingEvery, time.Until(end))
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(wait):
		}
		if time.Now().Before(end) {
			for _, c := range clients {
				if c != nil {
					_ = c.send(0xC0, nil, true) // PINGREQ
				}
			}
		}
	}
	open, dropped := 0, 0
	for _, c := range clients {
		if c == nil {
			continue
		}
		select {
		case <-c.done:
			dropped++
		default:
			open++
		}
	}
	after, err := sumRSS(pids)
	if err != nil {
		return r, err
	}
	r.add("rss_per_conn_held", "KB", float64(after-before)/1024/float64(max(open, 1)), false)
	r.add("dropped_while_held", "", float64(dropped), false)
	return r, nil
}

// connectResult reads the broker's RSS once it has settled and fills in
// the connect figures.
func connectResult(ctx context.Context, r Result, pids []int, before int64, devices int, failed int64, elapsed, bcpu, gcpu time.Duration) (Result, error) {
	ok := float64(devices) - float64(failed)
	// Let the broker settle (a GC cycle, lazily freed buffers) before
	// reading its RSS.
	select {
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(2 * time.Second):
	}
	after, err := sumRSS(pids)
	if err != nil {
		return r, err
	}
	r.add("connects", "/s", ok/elapsed.Seconds(), true)
	r.add("failed", "", float64(failed), false)
	r.add("rss_per_conn", "KB", float64(after-before)/1024/max(ok, 1), false)
	r.add("rss_after", "MB", float64(after)/(1<<20), false)
	r.add("broker_cpu_per_connect", "us", float64(bcpu.Microseconds())/max(ok, 1), false)
	r.add("generator_cpu", "%", 100*gcpu.Seconds()/elapsed.Seconds(), false)
	return r, nil
}
