package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func init() {
	Register(Scenario{
		Name:         "shadow",
		Help:         "lastmile only. Devices update their reported state flat out (or at -rate updates/s in total): QoS 1 PUBLISH to $dm/{id}/shadow/update with a clientToken, at most -window unanswered per device, for -duration. Updates/s, p50/p99/max round trip from PUBLISH to update/accepted, server CPU per update.",
		Devices:      func(p Params) int { return p.Devices },
		Run:          runShadow,
		LastmileOnly: true,
	})
}

// shadowDevice is one device's connection and its updates in flight, by
// clientToken.
type shadowDevice struct {
	id   string
	c    *client
	slot chan struct{} // a slot per unanswered update (the window)

	mu       sync.Mutex
	sent     map[string]time.Time
	lat      []time.Duration
	accepted int64
	rejected int64
}

func (d *shadowDevice) onMessage(topic string, payload []byte) {
	tok := shadowToken(payload)
	d.mu.Lock()
	t0, found := d.sent[tok]
	if found {
		delete(d.sent, tok)
		d.lat = append(d.lat, time.Since(t0))
		if topic == "$dm/"+d.id+"/shadow/update/accepted" {
			d.accepted++
		} else {
			d.rejected++
		}
	}
	d.mu.Unlock()
	if found {
		<-d.slot
	}
}

// shadowToken extracts "clientToken":"…" without decoding the JSON, to
// keep the generator cheap.
func shadowToken(p []byte) string {
	const key = `"clientToken":"`
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return ""
	}
	p = p[i+len(key):]
	if j := bytes.IndexByte(p, '"'); j >= 0 {
		return string(p[:j])
	}
	return ""
}

func runShadow(ctx context.Context, env Env, p Params) (Result, error) {
	r := Result{Scenario: "shadow", Target: env.Target.Name()}
	if p.Devices <= 0 || p.Duration <= 0 {
		return r, errors.New("shadow: -devices and -duration must be positive")
	}
	window := max(p.Window, 1)
	creds := env.Target.Creds()
	devs := make([]*shadowDevice, p.Devices)
	defer func() {
		var cs []*client
		for _, d := range devs {
			if d != nil && d.c != nil {
				cs = append(cs, d.c)
			}
		}
		closeAll(cs)
	}()
	err := parallel(ctx, p.Devices, connectWidth, func(ctx context.Context, i int) error {
		d := &shadowDevice{id: DeviceID(i), slot: make(chan struct{}, window), sent: map[string]time.Time{}}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, _, err := dial(cctx, connectOpts{addr: env.Target.Addr(), localIP: sourceIP(i, p.Sources), clientID: d.id,
			username: d.id, password: creds.DevicePassword[d.id], keepalive: 60, clean: true, window: window,
			onMessage: d.onMessage})
		if err != nil {
			return fmt.Errorf("connect %s: %w", d.id, err)
		}
		d.c = c
		devs[i] = d
		if err := c.subscribe(cctx, "$dm/"+d.id+"/shadow/update/accepted", 0); err != nil {
			return err
		}
		return c.subscribe(cctx, "$dm/"+d.id+"/shadow/update/rejected", 0)
	})
	if err != nil {
		return r, err
	}

	m := startCPU(env.Target.PID())
	pctx, cancel := context.WithTimeout(ctx, p.Duration)
	var seq atomic.Int64
	var sent atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, len(devs))
	// At a fixed rate, each device sends every interval, the devices'
	// phases spread evenly over one interval so that the load is smooth.
	var interval time.Duration
	if p.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(len(devs)) / float64(p.Rate))
	}
	start := time.Now()
	for i, d := range devs {
		wg.Go(func() {
			topic := "$dm/" + d.id + "/shadow/update"
			next := start.Add(interval * time.Duration(i) / time.Duration(len(devs)))
			for {
				if interval > 0 {
					t := time.NewTimer(time.Until(next))
					select {
					case <-t.C:
					case <-pctx.Done():
						t.Stop()
						return
					}
					next = next.Add(interval)
				}
				select {
				case d.slot <- struct{}{}:
				case <-pctx.Done():
					return
				}
				tok := strconv.FormatInt(seq.Add(1), 10)
				payload := []byte(`{"state":{"reported":{"seq":` + tok + `,"temp":21.5,"fw":{"version":"2.1.0"}}},"clientToken":"` + tok + `"}`)
				d.mu.Lock()
				d.sent[tok] = time.Now()
				d.mu.Unlock()
				if err := d.c.publish(pctx, topic, 1, payload); err != nil {
					d.mu.Lock()
					delete(d.sent, tok)
					d.mu.Unlock()
					if pctx.Err() == nil {
						errc <- fmt.Errorf("publish %s: %w", d.id, err)
					}
					return
				}
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	cancel()
	// Let the updates still in flight be answered (bounded), so that the
	// tail is not cut off; only answered updates count.
	waitUntil(10*time.Second, func() bool {
		for _, d := range devs {
			d.mu.Lock()
			n := len(d.sent)
			d.mu.Unlock()
			if n > 0 {
				return false
			}
		}
		return true
	})
	bcpu, gcpu, wall := m.stop()
	select {
	case err := <-errc:
		return r, err
	default:
	}
	var lat []time.Duration
	var accepted, rejected, unanswered int64
	for _, d := range devs {
		d.mu.Lock()
		lat = append(lat, d.lat...)
		accepted += d.accepted
		rejected += d.rejected
		unanswered += int64(len(d.sent))
		d.mu.Unlock()
	}
	answered := accepted + rejected
	if answered == 0 {
		return r, fmt.Errorf("shadow: none of %d updates answered", sent.Load())
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond) }
	r.add("updates", "/s", float64(answered)/wall.Seconds(), true)
	r.add("p50", "ms", q(0.50), false)
	r.add("p99", "ms", q(0.99), false)
	r.add("max", "ms", q(1), false)
	r.add("server_cpu_per_update", "us", float64(bcpu.Microseconds())/float64(answered), false)
	r.add("generator_cpu_per_update", "us", float64(gcpu.Microseconds())/float64(answered), false)
	r.add("generator_cpu", "%", 100*gcpu.Seconds()/wall.Seconds(), false)
	r.add("accepted", "", float64(accepted), true)
	r.add("rejected", "", float64(rejected), false)
	r.add("unanswered", "", float64(unanswered), false)
	return r, nil
}
