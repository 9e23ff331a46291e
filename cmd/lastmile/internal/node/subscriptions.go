package node

import (
	"sync"

	"github.com/lastmile-dm/lastmile/broker"
)

// subscriptionFanout is the broker's one SubscriptionSink, shared by every
// component that wants to know when a client subscribes or resumes a
// session (shadows send the current delta; commands and jobs can resend
// what a device missed). Add sinks before the broker starts; each runs on
// the client's goroutine and must not block.
type subscriptionFanout struct {
	mu    sync.RWMutex
	sinks []broker.SubscriptionSink
}

var _ broker.SubscriptionSink = (*subscriptionFanout)(nil)

// Add registers a sink.
func (f *subscriptionFanout) Add(s broker.SubscriptionSink) {
	f.mu.Lock()
	f.sinks = append(f.sinks, s)
	f.mu.Unlock()
}

func (f *subscriptionFanout) Subscribed(clientID, principalID string, filters []string, resumed bool) {
	f.mu.RLock()
	sinks := f.sinks
	f.mu.RUnlock()
	for _, s := range sinks {
		s.Subscribed(clientID, principalID, filters, resumed)
	}
}
