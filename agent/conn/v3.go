package conn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// session3 is an MQTT 3.1.1 session over paho.mqtt.golang, used when the
// server refuses MQTT 5. Its own reconnect and retry are off: the agent's
// loop owns reconnecting.
type session3 struct {
	c    mqtt.Client
	done chan struct{}

	mu   sync.Mutex
	err  error
	once sync.Once
}

var _ Session = (*session3)(nil)

func connect3(ctx context.Context, cfg Config, handler func(Message)) (*session3, error) {
	s := &session3{done: make(chan struct{})}
	o := mqtt.NewClientOptions()
	o.AddBroker("tcp://" + cfg.Address) // the scheme is ignored: the dial below opens the transport
	o.SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) { return dial(ctx, cfg) })
	o.SetProtocolVersion(4)
	o.SetClientID(cfg.ClientID)
	o.SetUsername(cfg.Username)
	o.SetPassword(cfg.Password)
	o.SetCleanSession(true)
	o.SetAutoReconnect(false)
	o.SetConnectRetry(false)
	o.SetResumeSubs(false)
	o.SetOrderMatters(true)
	o.SetKeepAlive(cfg.Keepalive)
	o.SetConnectTimeout(cfg.ConnectTimeout)
	o.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
		handler(Message{Topic: m.Topic(), Payload: append([]byte(nil), m.Payload()...), QoS: m.Qos()})
	})
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) { s.end(err) })
	s.c = mqtt.NewClient(o)
	tok := s.c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		s.c.Disconnect(0)
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		var refused bool
		for _, e := range []error{packets.ErrorRefusedBadProtocolVersion, packets.ErrorRefusedIDRejected, packets.ErrorRefusedServerUnavailable,
			packets.ErrorRefusedBadUsernameOrPassword, packets.ErrorRefusedNotAuthorised} {
			refused = refused || errors.Is(err, e)
		}
		if refused {
			return nil, fmt.Errorf("%w: MQTT 3.1.1 CONNACK: %w", ErrRefused, err)
		}
		return nil, fmt.Errorf("MQTT 3.1.1 connect: %w", err)
	}
	return s, nil
}

func (s *session3) end(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.done)
	})
}

func wait(ctx context.Context, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *session3) Publish(ctx context.Context, m Outgoing) error {
	if err := wait(ctx, s.c.Publish(m.Topic, m.QoS, false, m.Payload)); err != nil {
		return fmt.Errorf("publish %s: %w", m.Topic, err)
	}
	return nil
}

func (s *session3) Subscribe(ctx context.Context, filters ...string) error {
	f := map[string]byte{}
	for _, x := range filters {
		f[x] = 1
	}
	tok := s.c.SubscribeMultiple(f, nil)
	if err := wait(ctx, tok); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for topic, code := range tok.(*mqtt.SubscribeToken).Result() {
		if code >= 0x80 {
			return fmt.Errorf("%w: SUBACK 0x%02x for %s", ErrRefused, code, topic)
		}
	}
	return nil
}

func (s *session3) Done() <-chan struct{} { return s.done }

func (s *session3) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		return ErrClosed
	}
	return s.err
}

func (s *session3) Protocol() Protocol { return MQTT3 }

func (s *session3) Close() error {
	s.c.Disconnect(250)
	s.end(ErrClosed)
	return nil
}
