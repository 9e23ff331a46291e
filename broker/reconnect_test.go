package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/lastmile-dm/lastmile/broker"
)

// TestImmediateReconnectKeepsSubscriptions reconnects one client ID over
// and over, each new connection starting the instant the old one is gone,
// and checks that the new connection's subscription always receives. In
// mochi the end of the old connection (unsubscribe by client ID, delete
// the client by ID) can interleave with the new connection's start and
// silently drop the new session's subscriptions or its client entry.
func TestImmediateReconnectKeepsSubscriptions(t *testing.T) {
	t.Parallel()
	h := start(t, "", nil)
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	for i := range rounds {
		got := make(chan string, 4)
		conn := dialRaw(t, h.addr)
		c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { got <- string(pr.Packet.Payload); return true, nil },
		}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: "dev1", Username: "dev1", UsernameFlag: true,
			Password: []byte("pw-dev1"), PasswordFlag: true, CleanStart: true, KeepAlive: 30}); err != nil {
			t.Fatalf("round %d: connect: %v", i, err)
		}
		if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$dm/dev1/ping", QoS: 1}}}); err != nil {
			t.Fatalf("round %d: subscribe: %v", i, err)
		}
		want := fmt.Sprint(i)
		if err := h.srv.PublishMessage(broker.Message{Topic: "$dm/dev1/ping", QoS: 1, Payload: []byte(want)}); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			if p != want {
				t.Fatalf("round %d: got %q", i, p)
			}
		case <-ctx.Done():
			t.Fatalf("round %d: the new connection's subscription received nothing", i)
		}
		cancel()
		_ = c.Disconnect(&paho.Disconnect{})
	}
}
