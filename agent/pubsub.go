package agent

import (
	"context"
	"sync"
	"time"

	"github.com/lastmile-dm/lastmile/agent/conn"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// PubSub is the agent's MQTT connection as the tunnel endpoint and the
// SNMP executor use it (the shape of tunnel.PubSub): direct subscriptions
// whose handlers run on the session's receive goroutine, in arrival order,
// and publishes on the live session. Unlike a Capability's Handle, nothing
// is handed to a goroutine per message: a tunnel's frames must stay in
// order. Subscriptions survive reconnects: connect subscribes every
// registered filter again.
type PubSub struct{ a *Agent }

// direct is one PubSub subscription.
type direct struct {
	filter string
	h      func(topic string, payload []byte)
}

// subscriptions holds the PubSub subscriptions; guarded by Agent.mu.
type subscriptions struct {
	next int
	m    map[int]direct
}

// PubSub returns the agent's connection for protocol endpoints.
func (a *Agent) PubSub() *PubSub { return &PubSub{a: a} }

// Publish sends payload on the live session; it fails with conn.ErrClosed
// while the agent is offline.
func (p *PubSub) Publish(ctx context.Context, t string, qos byte, payload []byte) error {
	return p.a.Publish(ctx, conn.Outgoing{Topic: t, QoS: qos, Payload: payload})
}

// Subscribe registers h for filter, on this connection if one is up and on
// every later one. The subscription is at QoS 1 (the session's), which
// delivers at the publisher's QoS when that is lower. h must not block.
func (p *PubSub) Subscribe(filter string, _ byte, h func(topic string, payload []byte)) (func(), error) {
	a := p.a
	a.mu.Lock()
	if a.direct.m == nil {
		a.direct.m = map[int]direct{}
	}
	id := a.direct.next
	a.direct.next++
	a.direct.m[id] = direct{filter: filter, h: h}
	s := a.session
	a.mu.Unlock()
	if s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.File.Server.ConnectTimeout)
		err := s.Subscribe(ctx, filter)
		cancel()
		if err != nil {
			// The subscription stays registered: the next connection
			// subscribes it.
			a.log.Warn("subscribe failed; retried on the next connection", "filter", filter, "err", err)
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			delete(a.direct.m, id)
			a.mu.Unlock()
		})
	}, nil
}

// directFilters returns the registered PubSub filters.
func (a *Agent) directFilters() map[string]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]bool{}
	for _, d := range a.direct.m {
		out[d.filter] = true
	}
	return out
}

// routeDirect delivers m to the PubSub handlers whose filter matches it and
// reports whether there was one. It runs on the receive goroutine.
func (a *Agent) routeDirect(m conn.Message) bool {
	a.mu.Lock()
	var hs []func(string, []byte)
	for _, d := range a.direct.m {
		if topic.Match(d.filter, m.Topic) {
			hs = append(hs, d.h)
		}
	}
	a.mu.Unlock()
	for _, h := range hs {
		h(m.Topic, m.Payload)
	}
	return len(hs) > 0
}

// subscribeLate subscribes the PubSub filters registered while s was being
// set up (after connect read the list, before the session was published).
func (a *Agent) subscribeLate(s conn.Session, done map[string]bool, timeout time.Duration) error {
	var late []string
	for f := range a.directFilters() {
		if !done[f] {
			late = append(late, f)
		}
	}
	if len(late) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.Subscribe(ctx, late...)
}
