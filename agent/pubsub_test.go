package agent

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/agent/conn"
)

// TestPubSubInOrderAcrossReconnects: a PubSub subscription made before the
// agent connects receives a burst in order, keeps working after the agent
// reconnects, stops at cancel, and the agent publishes through it.
func TestPubSubInOrderAcrossReconnects(t *testing.T) {
	t.Parallel()
	addr := mosquitto(t)
	a, _, _ := newAgent(t, addr)
	var mu sync.Mutex
	var got []string
	cancelSub, err := a.PubSub().Subscribe("$dm/gw1/x/+/down", 0, func(topic string, payload []byte) {
		mu.Lock()
		got = append(got, topic+" "+string(payload))
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ups := make(chan string, 16)
	pl, err := conn.Connect(ctx, conn.Config{Address: addr, ClientID: "platform", Protocol: conn.MQTT5}, func(m conn.Message) {
		ups <- string(m.Payload)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	if err := pl.Subscribe(ctx, "$dm/gw1/x/+/up"); err != nil {
		t.Fatal(err)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	// burst sends n numbered messages after a probe gets through.
	burst := func(round string, n int) {
		before := count()
		waitFor(t, func() bool {
			_ = pl.Publish(ctx, conn.Outgoing{Topic: "$dm/gw1/x/probe/down", Payload: []byte(round)})
			time.Sleep(20 * time.Millisecond)
			return count() > before
		})
		mu.Lock()
		got = got[:0]
		mu.Unlock()
		for i := range n {
			if err := pl.Publish(ctx, conn.Outgoing{Topic: "$dm/gw1/x/s/down", Payload: []byte(fmt.Sprint(round, i)), QoS: 1}); err != nil {
				t.Fatal(err)
			}
		}
		var want []string
		for i := range n {
			want = append(want, fmt.Sprint("$dm/gw1/x/s/down ", round, i))
		}
		waitFor(t, func() bool { return count() >= n })
		mu.Lock()
		defer mu.Unlock()
		var data []string
		for _, g := range got {
			if g[:len("$dm/gw1/x/s/")] == "$dm/gw1/x/s/" {
				data = append(data, g)
			}
		}
		if !slices.Equal(data, want) {
			t.Fatalf("round %s: got %q, want %q in order", round, data, want)
		}
	}
	burst("a", 200)
	a.Reconnect()
	burst("b", 200)

	waitFor(t, func() bool {
		return a.PubSub().Publish(ctx, "$dm/gw1/x/s/up", 0, []byte("pong")) == nil && len(ups) > 0
	})
	if p := <-ups; p != "pong" {
		t.Fatalf("platform got %q", p)
	}
	cancelSub()
	before := count()
	_ = pl.Publish(ctx, conn.Outgoing{Topic: "$dm/gw1/x/s/down", Payload: []byte("late"), QoS: 1})
	// A later subscription on the same connection proves the late message
	// has been delivered (or not) by the time it arrives.
	seen := make(chan struct{}, 1)
	cancel2, _ := a.PubSub().Subscribe("$dm/gw1/y", 0, func(string, []byte) {
		select {
		case seen <- struct{}{}:
		default:
		}
	})
	defer cancel2()
	waitFor(t, func() bool {
		_ = pl.Publish(ctx, conn.Outgoing{Topic: "$dm/gw1/y", Payload: []byte("marker"), QoS: 1})
		select {
		case <-seen:
			return true
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
	if n := count(); n != before {
		t.Fatalf("a cancelled subscription still received (%d -> %d)", before, n)
	}
}
