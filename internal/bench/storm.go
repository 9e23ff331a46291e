package bench

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

func init() {
	Register(Scenario{
		Name:    "reconnect-storm",
		Help:    "Devices connect with persistent sessions and subscribe to $dm/{id}/cmd; every connection is cut at once (sockets closed, no DISCONNECT) and reconnects with the agent's backoff. Time until all are back, sessions found intact.",
		Devices: func(p Params) int { return p.Devices },
		Run:     runStorm,
	})
}

// Backoff is the device agent's reconnect policy: the first attempt after
// a random delay in [0, First), then exponential with full jitter from
// Base up to Max.
type Backoff struct {
	First, Base, Max time.Duration
}

// AgentBackoff is the policy the reference agent uses.
var AgentBackoff = Backoff{First: time.Second, Base: 500 * time.Millisecond, Max: 30 * time.Second}

func (b Backoff) delay(attempt int) time.Duration {
	if attempt == 0 {
		return time.Duration(rand.Int64N(int64(b.First))) //nolint:gosec // jitter
	}
	d := b.Base << min(attempt-1, 16)
	if d > b.Max || d <= 0 {
		d = b.Max
	}
	return time.Duration(rand.Int64N(int64(d))) //nolint:gosec // jitter
}

func runStorm(ctx context.Context, env Env, p Params) (Result, error) {
	r := Result{Scenario: "reconnect-storm", Target: env.Target.Name()}
	creds := env.Target.Creds()
	clients, _, err := connectAll(ctx, env, p, p.Devices, 64, false)
	if err != nil {
		return r, err
	}
	// Subscribe so that the session has state to keep.
	err = parallel(ctx, len(clients), 64, func(ctx context.Context, i int) error {
		if c := clients[i]; c != nil {
			return c.subscribe(ctx, "$dm/"+DeviceID(i)+"/cmd", 1)
		}
		return nil
	})
	if err != nil {
		closeAll(clients)
		return r, err
	}
	var wg sync.WaitGroup
	for _, c := range clients {
		if c != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.cut() }()
		}
	}
	wg.Wait()
	m := startCPU(env.Target.PID())
	start := time.Now()
	var intact, back, attempts atomic.Int64
	var lastMu sync.Mutex
	var last time.Time
	err = parallel(ctx, len(clients), len(clients), func(ctx context.Context, i int) error {
		if clients[i] == nil {
			return nil
		}
		id := DeviceID(i)
		for attempt := 0; ; attempt++ {
			t := time.NewTimer(AgentBackoff.delay(attempt))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			attempts.Add(1)
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			c, present, err := dial(cctx, connectOpts{addr: env.Target.Addr(), localIP: sourceIP(i, p.Sources),
				clientID: id, username: id, password: creds.DevicePassword[id], keepalive: 60, clean: false})
			cancel()
			if err != nil {
				continue
			}
			now := time.Now()
			lastMu.Lock()
			if now.After(last) {
				last = now
			}
			lastMu.Unlock()
			back.Add(1)
			if present {
				intact.Add(1)
			}
			clients[i] = c
			return nil
		}
	})
	bcpu, _, _ := m.stop()
	defer closeAll(clients)
	if err != nil {
		return r, err
	}
	n := float64(back.Load())
	r.add("all_back", "s", last.Sub(start).Seconds(), false)
	r.add("reconnected", "", n, true)
	r.add("sessions_intact", "%", 100*float64(intact.Load())/max(n, 1), true)
	r.add("attempts_per_device", "", float64(attempts.Load())/max(n, 1), false)
	r.add("broker_cpu_per_reconnect", "us", float64(bcpu.Microseconds())/max(n, 1), false)
	return r, nil
}
