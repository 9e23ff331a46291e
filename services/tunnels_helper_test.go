package services

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/broker"
	"github.com/lastmile-dm/lastmile/tunnel/relay"
)

// refuseAll lets no MQTT client in: the permission test needs a relay on a
// real broker, not devices.
type refuseAll struct{}

func (refuseAll) Authenticate(context.Context, broker.ConnectRequest) (*broker.Principal, error) {
	return nil, broker.ErrBadCredentials
}

type brokerPubSub struct{ b *broker.Server }

func (p brokerPubSub) Publish(_ context.Context, topic string, qos byte, payload []byte) error {
	return p.b.PublishMessage(broker.Message{Topic: topic, QoS: qos, Payload: payload})
}

func (p brokerPubSub) Subscribe(filter string, _ byte, h func(string, []byte)) (func(), error) {
	return p.b.Subscribe(filter, func(m broker.Message) { h(m.Topic, m.Payload) })
}

func newRelay(t *testing.T) *relay.Relay {
	t.Helper()
	b, err := broker.New(broker.Config{NodeName: "t", TCPAddr: "127.0.0.1:0", Authenticator: refuseAll{}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Shutdown(ctx)
	})
	_, key, _ := ed25519.GenerateKey(nil)
	r, err := relay.New(relay.Config{PubSub: brokerPubSub{b}, SigningKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
