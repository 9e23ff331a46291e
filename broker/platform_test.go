package broker_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/lastmile-dm/lastmile/broker"
)

// sink records SubscriptionSink calls.
type sink struct {
	mu  sync.Mutex
	got []string
}

func (s *sink) Subscribed(clientID, principalID string, filters []string, resumed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range filters {
		r := ""
		if resumed {
			r = " resumed"
		}
		s.got = append(s.got, clientID+" "+principalID+" "+f+r)
	}
}

func (s *sink) has(line string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.got, line)
}

func TestPlatformSubscribeSeesPublisherAndProperties(t *testing.T) {
	t.Parallel()
	h := start(t, "", nil)
	var mu sync.Mutex
	var got []broker.Message
	cancel, err := h.srv.Subscribe("$dm/+/shadow/#", func(m broker.Message) {
		mu.Lock()
		defer mu.Unlock()
		m.Payload = append([]byte(nil), m.Payload...)
		got = append(got, m)
	})
	if err != nil {
		t.Fatal(err)
	}
	dev := device5(t, h.addr, "dev1")
	ctx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	if _, err := dev.Publish(ctx, &paho.Publish{Topic: "$dm/dev1/shadow/update", QoS: 1, Payload: []byte(`{}`),
		Properties: &paho.PublishProperties{ResponseTopic: "$dm/dev1/shadow/r", CorrelationData: []byte("c1")}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "platform message", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	m := got[0]
	if m.ClientID != "dev1" || m.PrincipalID != "dev1" || m.ResponseTopic != "$dm/dev1/shadow/r" ||
		string(m.CorrelationData) != "c1" || m.QoS != 1 || m.ProtocolVersion != 5 || string(m.Payload) != "{}" {
		t.Fatalf("message %+v", m)
	}

	cancel()
	cancel() // idempotent
	if _, err := dev.Publish(ctx, &paho.Publish{Topic: "$dm/dev1/shadow/get", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	// A marker through a second subscription proves the first one is gone
	// rather than slow: both would be called on the same goroutine, in order.
	marker := make(chan struct{})
	if _, err := h.srv.Subscribe("$dm/dev1/marker", func(broker.Message) { close(marker) }); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.Publish(ctx, &paho.Publish{Topic: "$dm/dev1/marker", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	<-marker
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("cancelled subscription still delivered: %+v", got[1:])
	}
}

func TestPlatformPublishReachesDeviceWithProperties(t *testing.T) {
	t.Parallel()
	h := start(t, "", nil)
	if err := h.srv.PublishMessage(broker.Message{Topic: "$dm/dev1/cmd/ping", QoS: 1}); err != nil {
		t.Fatalf("publish with no subscriber: %v", err)
	}
	got := make(chan *paho.Publish, 1)
	conn := dialRaw(t, h.addr)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { got <- pr.Packet; return true, nil },
	}})
	ctx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "dev1", Username: "dev1", UsernameFlag: true, Password: []byte("pw-dev1"), PasswordFlag: true, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$dm/dev1/cmd/+", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if !h.srv.Connected("dev1") || h.srv.Connected("dev2") {
		t.Fatal("Connected disagrees with who is connected")
	}
	err := h.srv.PublishMessage(broker.Message{Topic: "$dm/dev1/cmd/reboot", QoS: 1, Payload: []byte("now"),
		ResponseTopic: "$dm/dev1/cmd/reboot/reply", CorrelationData: []byte{1, 2},
		UserProperties: []broker.UserProperty{{Key: "k", Value: "v"}}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p.Topic != "$dm/dev1/cmd/reboot" || string(p.Payload) != "now" || p.Properties.ResponseTopic != "$dm/dev1/cmd/reboot/reply" ||
			string(p.Properties.CorrelationData) != "\x01\x02" || p.Properties.User.Get("k") != "v" {
			t.Fatalf("device got %+v %+v", p, p.Properties)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("device never received the platform's publish")
	}
}

func TestSubscriptionSink(t *testing.T) {
	t.Parallel()
	sk := &sink{}
	h := start(t, t.TempDir(), func(c *broker.Config) { c.Subscriptions = sk })
	ctx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	c, _, err := dial5(t, h.addr, &paho.Connect{ClientID: "dev1", Username: "dev1", Password: []byte("pw-dev1"),
		Properties: &paho.ConnectProperties{SessionExpiryInterval: paho.Uint32(3600)}})
	if err != nil {
		t.Fatal(err)
	}
	// paho reports the refused second filter as an error; the SUBACK says which.
	sa, _ := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "$dm/dev1/shadow/delta", QoS: 1}, {Topic: "$dm/dev2/shadow/delta", QoS: 1}}})
	if sa == nil || len(sa.Reasons) != 2 || sa.Reasons[0] != 1 || sa.Reasons[1] < 0x80 {
		t.Fatalf("suback %+v", sa)
	}
	waitFor(t, "granted filter reported", func() bool { return sk.has("dev1 dev1 $dm/dev1/shadow/delta") })
	if sk.has("dev1 dev1 $dm/dev2/shadow/delta") {
		t.Fatal("a refused filter was reported as held")
	}
	_ = c.Disconnect(&paho.Disconnect{})
	if _, _, err := dial5(t, h.addr, &paho.Connect{ClientID: "dev1", Username: "dev1", Password: []byte("pw-dev1"),
		Properties: &paho.ConnectProperties{SessionExpiryInterval: paho.Uint32(3600)}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "resumed filter reported", func() bool { return sk.has("dev1 dev1 $dm/dev1/shadow/delta resumed") })
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestHasSubscribers: a client's subscription counts, wildcards included,
// the platform's own handlers do not, and an unsubscribe is seen.
func TestHasSubscribers(t *testing.T) {
	t.Parallel()
	h := start(t, "", nil)
	const to = "$dm/dev1/shadow/update/documents"
	if _, err := h.srv.Subscribe("$dm/+/shadow/#", func(broker.Message) {}); err != nil {
		t.Fatal(err)
	}
	if h.srv.HasSubscribers(to) {
		t.Fatal("a platform handler counts as a subscriber")
	}
	dev := device5(t, h.addr, "dev1")
	ctx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	if _, err := dev.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$dm/dev1/shadow/+/documents", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if !h.srv.HasSubscribers(to) {
		t.Fatal("the device's wildcard subscription is not seen")
	}
	if h.srv.HasSubscribers("$dm/dev1/shadow/update/delta") || h.srv.HasSubscribers("$dm/dev2/shadow/update/documents") {
		t.Fatal("a subscriber where there is none")
	}
	if _, err := dev.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"$dm/dev1/shadow/+/documents"}}); err != nil {
		t.Fatal(err)
	}
	if h.srv.HasSubscribers(to) {
		t.Fatal("still a subscriber after UNSUBSCRIBE")
	}
}
