package node

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"github.com/lastmile-dm/lastmile/cmd/lastmile/internal/config"
)

// BenchmarkShadowUpdate measures shadow updates over MQTT against a real
// node: benchDevices MQTT 5 devices each keep benchWindow updates of their
// reported state in flight (QoS 1) and time each from PUBLISH to its
// update/accepted. It reports updates/s and the p50/p99 round trip. Run:
//
//	go test -run '^$' -bench BenchmarkShadowUpdate -benchtime 40000x ./cmd/lastmile/internal/node/
//
// "saturate" offers more than the node can take (200 devices x 4 in
// flight: throughput, and latency that is mostly queueing); "light" is
// 20 devices with one update in flight each (the round trip itself).
func BenchmarkShadowUpdate(b *testing.B) {
	for _, engine := range []string{config.EngineEmbedded, config.EngineRedis} {
		for _, load := range []struct {
			name            string
			devices, window int
		}{{"saturate", 200, 4}, {"light", 20, 1}} {
			b.Run(engine+"/"+load.name, func(b *testing.B) { benchShadow(b, engine, load.devices, load.window) })
		}
	}
}

type benchDevice struct {
	c    *paho.Client
	id   string
	mu   sync.Mutex
	sent map[string]time.Time
	slot chan struct{}
}

func benchShadow(b *testing.B, engine string, benchDevices, benchWindow int) {
	s := startShadowNode(b, engine, nil)
	var (
		lmu       sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
		done      atomic.Int64
		rejected  atomic.Int64
		finished  = make(chan struct{})
	)
	devs := make([]*benchDevice, benchDevices)
	for i := range devs {
		id := fmt.Sprintf("bench-%04d", i)
		secret := s.device(b, id)
		d := &benchDevice{id: id, sent: map[string]time.Time{}, slot: make(chan struct{}, benchWindow)}
		conn, err := net.Dial("tcp", s.mqtt)
		if err != nil {
			b.Fatal(err)
		}
		d.c = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				tok := tokenOf(pr.Packet.Payload)
				d.mu.Lock()
				t0, ok := d.sent[tok]
				delete(d.sent, tok)
				d.mu.Unlock()
				if !ok {
					return true, nil
				}
				if pr.Packet.Topic != "$dm/"+id+"/shadow/update/accepted" {
					rejected.Add(1)
				}
				lmu.Lock()
				latencies = append(latencies, time.Since(t0))
				lmu.Unlock()
				<-d.slot
				if done.Add(1) == int64(b.N) {
					close(finished)
				}
				return true, nil
			},
		}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := d.c.Connect(ctx, &paho.Connect{ClientID: id, Username: id, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true, CleanStart: true, KeepAlive: 60}); err != nil {
			b.Fatal(err)
		}
		if _, err := d.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
			{Topic: "$dm/" + id + "/shadow/update/accepted", QoS: 0}, {Topic: "$dm/" + id + "/shadow/update/rejected", QoS: 0}}}); err != nil {
			b.Fatal(err)
		}
		cancel()
		b.Cleanup(func() { _ = d.c.Disconnect(&paho.Disconnect{}) })
		devs[i] = d
	}

	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	var next atomic.Int64
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := "$dm/" + d.id + "/shadow/update"
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				d.slot <- struct{}{}
				tok := strconv.FormatInt(n, 10)
				payload := []byte(`{"state":{"reported":{"seq":` + tok + `,"temp":21.5,"fw":{"version":"2.1.0"}}},"clientToken":"` + tok + `"}`)
				d.mu.Lock()
				d.sent[tok] = time.Now()
				d.mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := d.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-finished:
	case <-time.After(120 * time.Second):
		b.Fatalf("only %d of %d updates answered", done.Load(), b.N)
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(float64(len(latencies)-1)*p)].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "updates/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(rejected.Load()), "rejected")
	// CPU time of the whole process (node and the measuring clients) per
	// update: on a shared machine this, not the wall clock, shows the cost.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/update")
}

// cpuTime is the user+system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tokenOf extracts "clientToken":"..." without a JSON decode, to keep the
// measuring client cheap.
func tokenOf(p []byte) string {
	const key = `"clientToken":"`
	i := indexOf(p, key)
	if i < 0 {
		return ""
	}
	p = p[i+len(key):]
	for j, c := range p {
		if c == '"' {
			return string(p[:j])
		}
	}
	return ""
}

func indexOf(p []byte, s string) int {
	for i := 0; i+len(s) <= len(p); i++ {
		if string(p[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
}
