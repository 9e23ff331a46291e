package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/lastmile-dm/lastmile/third_party/paho/packets"
	"github.com/lastmile-dm/lastmile/third_party/paho/paho"
)

// session5 is an MQTT 5 session over paho.golang's low-level client.
type session5 struct {
	c *paho.Client

	mu  sync.Mutex
	err error
}

var _ Session = (*session5)(nil)

func connect5(ctx context.Context, cfg Config, handler func(Message)) (*session5, error) {
	nc, err := dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &session5{}
	s.c = paho.NewClient(paho.ClientConfig{
		// A packet is several writes; tls.Conn does not keep them
		// together when the pinger, an ack and a publish write at once.
		Conn:     packets.NewThreadSafeConn(nc),
		ClientID: cfg.ClientID,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			// The payload is the end of the buffer the packet was read into
			// (third_party/paho): nothing else refers to it, so the handler
			// may keep it.
			m := Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS}
			if p.Properties != nil {
				m.ResponseTopic = p.Properties.ResponseTopic
				m.CorrelationData = append([]byte(nil), p.Properties.CorrelationData...)
				if len(p.Properties.User) > 0 {
					m.UserProperties = map[string]string{}
					for _, u := range p.Properties.User {
						m.UserProperties[u.Key] = u.Value
					}
				}
			}
			handler(m)
			return true, nil
		}},
		OnClientError: func(err error) { s.setErr(err) },
		OnServerDisconnect: func(d *paho.Disconnect) {
			reason := ""
			if d.Properties != nil {
				reason = d.Properties.ReasonString
			}
			s.setErr(fmt.Errorf("%w: server disconnected, reason 0x%02x %s", ErrRefused, d.ReasonCode, reason))
		},
	})
	cp := &paho.Connect{
		ClientID:   cfg.ClientID,
		KeepAlive:  uint16(cfg.Keepalive.Seconds()),
		CleanStart: true, // the agent's own spool holds what must survive
	}
	if cfg.Username != "" {
		cp.Username, cp.UsernameFlag = cfg.Username, true
	}
	if cfg.Password != "" {
		cp.Password, cp.PasswordFlag = []byte(cfg.Password), true
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	ca, err := s.c.Connect(cctx, cp)
	if err != nil {
		_ = nc.Close()
		if ca != nil {
			if ca.ReasonCode == 0x84 {
				return nil, fmt.Errorf("%w: CONNACK 0x84", ErrProtocolVersion)
			}
			reason := ""
			if ca.Properties != nil {
				reason = ca.Properties.ReasonString
			}
			return nil, fmt.Errorf("%w: CONNACK reason 0x%02x%s%s", ErrRefused, ca.ReasonCode, reasonName(ca.ReasonCode), reason)
		}
		if cfg.Protocol == Auto && closedBeforeConnack(err) {
			// A 3.1.1 server answers a level-5 CONNECT by closing, or with
			// a 3.1.1 CONNACK that does not parse as MQTT 5.
			return nil, fmt.Errorf("%w: %w", ErrProtocolVersion, err)
		}
		return nil, fmt.Errorf("MQTT 5 connect: %w", err)
	}
	if ca.ReasonCode != 0 {
		// 0x01..0x05 are 3.1.1 return codes: 0x01 is "unacceptable
		// protocol version", the others mean nothing in MQTT 5.
		_ = s.c.Disconnect(&paho.Disconnect{})
		return nil, fmt.Errorf("%w: CONNACK 0x%02x (an MQTT 3.1.1 answer)", ErrProtocolVersion, ca.ReasonCode)
	}
	return s, nil
}

func closedBeforeConnack(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

func reasonName(code byte) string {
	switch code {
	case 0x85:
		return " (client identifier not valid)"
	case 0x86:
		return " (bad user name or password)"
	case 0x87:
		return " (not authorized)"
	case 0x8A:
		return " (banned)"
	case 0x88:
		return " (server unavailable)"
	case 0x89:
		return " (server busy)"
	case 0x9F:
		return " (connection rate exceeded)"
	}
	return ""
}

func (s *session5) setErr(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *session5) Publish(ctx context.Context, m Outgoing) error {
	p := &paho.Publish{Topic: m.Topic, QoS: m.QoS, Payload: m.Payload}
	if len(m.CorrelationData) > 0 || len(m.UserProperties) > 0 || m.ResponseTopic != "" {
		p.Properties = &paho.PublishProperties{CorrelationData: m.CorrelationData, ResponseTopic: m.ResponseTopic}
		for k, v := range m.UserProperties {
			p.Properties.User.Add(k, v)
		}
	}
	pr, err := s.c.Publish(ctx, p)
	if pr != nil && pr.ReasonCode >= 0x80 {
		return fmt.Errorf("%w: PUBACK reason 0x%02x for %s", ErrRefused, pr.ReasonCode, m.Topic)
	}
	if err != nil {
		return fmt.Errorf("publish %s: %w", m.Topic, err)
	}
	return nil
}

func (s *session5) Subscribe(ctx context.Context, filters ...string) error {
	sub := &paho.Subscribe{}
	for _, f := range filters {
		sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	sa, err := s.c.Subscribe(ctx, sub)
	if sa != nil {
		for i, r := range sa.Reasons {
			if r >= 0x80 && i < len(filters) {
				return fmt.Errorf("%w: SUBACK reason 0x%02x for %s", ErrRefused, r, filters[i])
			}
		}
	}
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	return nil
}

func (s *session5) Done() <-chan struct{} { return s.c.Done() }

func (s *session5) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		return ErrClosed
	}
	return s.err
}

func (s *session5) Protocol() Protocol { return MQTT5 }

func (s *session5) Close() error {
	s.setErr(ErrClosed)
	return s.c.Disconnect(&paho.Disconnect{})
}
