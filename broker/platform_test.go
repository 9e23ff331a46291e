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

// TestPlatformPublishKeepsNoReferenceToThePayload: the platform publishes
// QoS 0 and QoS 1 messages, small and large, from one buffer that it
// overwrites as soon as PublishMessage returns, to a device that reads
// only after all were published (its socket backs up, QoS 1 messages wait
// inflight). Every message must arrive as it was published.
func TestPlatformPublishKeepsNoReferenceToThePayload(t *testing.T) {
	t.Parallel()
	h := start(t, "", func(c *broker.Config) { c.Limits.MaxPendingBytes = 64 << 20 })
	release := make(chan struct{})
	var mu sync.Mutex
	var got []string
	conn := dialRaw(t, h.addr)
	_ = conn.(*net.TCPConn).SetReadBuffer(256 << 10)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			<-release
			mu.Lock()
			got = append(got, string(pr.Packet.Payload))
			mu.Unlock()
			return true, nil
		},
	}})
	ctx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "dev1", Username: "dev1", UsernameFlag: true, Password: []byte("pw-dev1"), PasswordFlag: true, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(func() { free(); _ = c.Disconnect(&paho.Disconnect{}) })
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$dm/dev1/cmd/+", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	buf := make([]byte, 100<<10)
	var want []string
	for i := range 60 {
		size := 100
		if i%3 != 0 {
			size = len(buf) // written vectored, uncopied, when the socket takes it
		}
		msg := buf[:size]
		for j := range msg {
			msg[j] = byte('a' + (i+j)%26)
		}
		want = append(want, string(msg))
		if err := h.srv.PublishMessage(broker.Message{Topic: "$dm/dev1/cmd/x", QoS: byte(i % 2), Payload: msg}); err != nil {
			t.Fatal(err)
		}
		for j := range msg { // the platform reuses its buffer
			msg[j] = '#'
		}
	}
	free()
	waitLong(t, "every message at the device", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= len(want)
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("device got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d (QoS %d, %d bytes) arrived changed: %.20q…, want %.20q…", i, i%2, len(want[i]), got[i], want[i])
		}
	}
}

// TestPlatformPublishToOfflineSession: QoS 1 messages the platform
// publishes to a device whose persistent session is offline wait in the
// session; the platform overwrites its buffer after each publish, and the
// device must still get every message as published, in the order
// published, when it comes back.
func TestPlatformPublishToOfflineSession(t *testing.T) {
	t.Parallel()
	h := start(t, "", nil)
	expiry := uint32(300)
	connect := func(got chan<- string) *paho.Client {
		c := paho.NewClient(paho.ClientConfig{Conn: dialRaw(t, h.addr), OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { got <- string(pr.Packet.Payload); return true, nil },
		}})
		ctx, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: "dev1", Username: "dev1", UsernameFlag: true, Password: []byte("pw-dev1"), PasswordFlag: true,
			KeepAlive: 30, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := make(chan string, 100)
	c := connect(first)
	ctx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$dm/dev1/cmd/+", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	_ = c.Disconnect(&paho.Disconnect{})
	waitFor(t, "the device offline", func() bool { return !h.srv.Connected("dev1") })

	buf := make([]byte, 20<<10)
	var want []string
	for i := range 10 {
		msg := buf[:100+i*2000]
		for j := range msg {
			msg[j] = byte('a' + (i+j)%26)
		}
		want = append(want, string(msg))
		if err := h.srv.PublishMessage(broker.Message{Topic: "$dm/dev1/cmd/x", QoS: 1, Payload: msg}); err != nil {
			t.Fatal(err)
		}
		for j := range msg {
			msg[j] = '#'
		}
	}

	again := make(chan string, 100)
	c = connect(again)
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	for i := range want {
		select {
		case got := <-again:
			if got != want[i] {
				for j := range want {
					if got == want[j] {
						t.Fatalf("message %d arrived in place of message %d: resent out of order", j, i)
					}
				}
				t.Fatalf("message %d (%d bytes) arrived changed: %.20q…, want %.20q…", i, len(want[i]), got, want[i])
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d never arrived", i)
		}
	}
}
