package broker

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"

	mqtt "github.com/lastmile-dm/lastmile/third_party/mochi"
	"github.com/lastmile-dm/lastmile/third_party/mochi/packets"
)

// This file is how the platform itself speaks MQTT: services (shadows,
// commands, the tunnel) subscribe to device topics and publish to devices
// in-process, without a network client, and learn when a client subscribes
// so they can send it state it missed while away.

// UserProperty is an MQTT 5 user property.
type UserProperty struct {
	Key, Value string
}

// Message is a PUBLISH as the platform sends or receives it.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool

	// MQTT 5 request/response and metadata; empty for 3.1.1 publishers.
	ResponseTopic   string
	CorrelationData []byte
	ContentType     string
	UserProperties  []UserProperty

	// Set on received messages only: the publishing connection.
	ClientID        string
	PrincipalID     string // device ID or "app:<name>"; "" for the platform
	ProtocolVersion byte   // 4 (3.1.1) or 5
}

// Handler receives messages that match a platform subscription. It runs on
// the publishing client's goroutine, so it must return quickly (hand slow
// work to a queue) and must not keep m.Payload after returning without
// copying it.
type Handler func(m Message)

// SubscriptionSink learns which filters a client holds: after a SUBSCRIBE
// (the granted filters only) and when a client resumes a stored session
// (every inherited filter, resumed=true). It runs on the client's goroutine
// and must not block. Shared-subscription prefixes are removed.
type SubscriptionSink interface {
	Subscribed(clientID, principalID string, filters []string, resumed bool)
}

var platformSubID atomic.Int64

// ErrNotStarted is returned by Subscribe and PublishMessage before Start.
var ErrNotStarted = errors.New("broker: not started")

// Subscribe delivers every message published to filter (by clients or the
// platform) to h, until the returned cancel is called. Platform
// subscriptions are not subject to ACLs and do not count as clients.
func (s *Server) Subscribe(filter string, h Handler) (cancel func(), err error) {
	if h == nil {
		return nil, errors.New("broker: nil handler")
	}
	id := int(platformSubID.Add(1))
	err = s.mochi.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		h(s.toMessage(pk))
	})
	if err != nil {
		return nil, fmt.Errorf("platform subscribe %q: %w", filter, err)
	}
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			_ = s.mochi.Unsubscribe(filter, id)
		}
	}, nil
}

func (s *Server) toMessage(pk packets.Packet) Message {
	m := Message{
		Topic:           pk.TopicName,
		Payload:         pk.Payload,
		QoS:             pk.FixedHeader.Qos,
		Retain:          pk.FixedHeader.Retain,
		ResponseTopic:   pk.Properties.ResponseTopic,
		CorrelationData: pk.Properties.CorrelationData,
		ContentType:     pk.Properties.ContentType,
		ClientID:        pk.Origin,
		ProtocolVersion: pk.ProtocolVersion,
	}
	for _, u := range pk.Properties.User {
		m.UserProperties = append(m.UserProperties, UserProperty{Key: u.Key, Value: u.Val})
	}
	if m.ClientID != "" {
		m.PrincipalID = s.auth.principalOf(m.ClientID)
	}
	return m
}

// PublishMessage publishes m from the platform: not subject to ACLs, with
// its MQTT 5 properties (which 3.1.1 subscribers do not see). It keeps no
// reference to m.Payload: a delivery that outlives the call (inflight,
// queued, or part of a socket backlog) holds a copy, so the caller may
// reuse the buffer once it returns.
func (s *Server) PublishMessage(m Message) error {
	if !s.started.Load() {
		return ErrNotStarted
	}
	if m.QoS > 2 {
		return fmt.Errorf("broker: QoS %d", m.QoS)
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: m.QoS, Retain: m.Retain},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		PacketID:    uint16(m.QoS), // mochi checks inbound IDs even for its inline client
		Properties: packets.Properties{
			ResponseTopic:   m.ResponseTopic,
			CorrelationData: m.CorrelationData,
			ContentType:     m.ContentType,
		},
	}
	for _, u := range m.UserProperties {
		pk.Properties.User = append(pk.Properties.User, packets.UserProperty{Key: u.Key, Val: u.Value})
	}
	if err := s.mochi.InjectPacket(s.platform, pk); err != nil {
		return fmt.Errorf("platform publish to %s: %w", m.Topic, err)
	}
	return nil
}

// HasSubscribers reports whether some MQTT client, connected or holding a
// session, subscribes to a filter matching topic; the platform's own
// Subscribe handlers do not count. A publisher that has nobody to tell can
// skip building the payload: a subscription granted meanwhile is the same
// as one granted just after the publish.
func (s *Server) HasSubscribers(topic string) bool {
	subs := s.mochi.Topics.SubscribersOf(topic)
	return len(subs.Subscriptions) > 0 || len(subs.Shared) > 0
}

// Connected reports whether a client with this ID is connected to this node.
func (s *Server) Connected(clientID string) bool {
	s.auth.mu.RLock()
	defer s.auth.mu.RUnlock()
	_, ok := s.auth.owner[clientID]
	return ok
}

// subscriptionHook feeds Config.Subscriptions.
type subscriptionHook struct {
	mqtt.HookBase
	s    *Server
	sink SubscriptionSink
}

func (h *subscriptionHook) ID() string { return "lastmile-subscriptions" }

func (h *subscriptionHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSubscribed, mqtt.OnSessionEstablished}, []byte{b})
}

func (h *subscriptionHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline {
		return
	}
	var filters []string
	for i, sub := range pk.Filters {
		if i < len(codes) && codes[i] < packets.ErrUnspecifiedError.Code {
			filters = append(filters, stripShare(sub.Filter))
		}
	}
	if len(filters) > 0 {
		h.sink.Subscribed(cl.ID, h.s.auth.principalOf(cl.ID), filters, false)
	}
}

func (h *subscriptionHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	subs := cl.State.Subscriptions.GetAll()
	if len(subs) == 0 {
		return
	}
	filters := make([]string, 0, len(subs))
	for f := range subs {
		filters = append(filters, stripShare(f))
	}
	h.sink.Subscribed(cl.ID, h.s.auth.principalOf(cl.ID), filters, true)
}

// principalOf returns the principal ID of the connected client clientID,
// or "" when none is connected.
func (h *authHook) principalOf(clientID string) string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if cl := h.owner[clientID]; cl != nil {
		if c := h.conns[cl]; c != nil {
			return c.principal.ID
		}
	}
	return ""
}
