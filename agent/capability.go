package agent

import (
	"context"
	"sync"

	"github.com/lastmile-dm/lastmile/agent/conn"
)

// Publisher publishes directly on the live session, without the offline
// buffer: for answers (a command response, a shadow report) that make no
// sense once their request is gone. It fails when the agent is offline.
type Publisher interface {
	Publish(ctx context.Context, m conn.Outgoing) error
}

// Capability is a device-management feature bound to the topic contract
// (commands, shadow sync, config apply).
//
// Filters is called on every connection; Connected after the filters are
// subscribed; Handle for each message on a filter, on its own goroutine
// (so a long command does not hold up the session), with a context that
// ends when the session does or the agent stops. Implementations must be
// safe for concurrent use. A Sequential capability's calls are instead
// made one at a time, in the order the messages arrived.
type Capability interface {
	Filters(deviceID string) []string
	Connected(ctx context.Context, p Publisher, protocol conn.Protocol)
	Handle(ctx context.Context, m conn.Message, p Publisher)
}

// Sequential is a Capability whose Connected and Handle calls must not
// overlap and must follow the order in which its messages arrived: the
// shadow, where a later desired state has to win over an earlier one and a
// report must not overtake the one before it. The agent makes them one at
// a time, on a goroutine that exists only while calls are queued; a slow
// call holds up only that capability.
type Sequential interface {
	Capability
	Sequential()
}

// serial runs queued calls one at a time in the order they were queued.
type serial struct {
	mu      sync.Mutex
	queue   []func()
	running bool
}

func (s *serial) run(f func()) {
	s.mu.Lock()
	s.queue = append(s.queue, f)
	if s.running {
		s.mu.Unlock()
		return
	}
	s.running = true
	s.mu.Unlock()
	go s.drain()
}

func (s *serial) drain() {
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.running = false
			s.queue = nil
			s.mu.Unlock()
			return
		}
		f := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.mu.Unlock()
		f()
	}
}

// dispatcher starts a session's capability calls: each on its own
// goroutine, a Sequential capability's through its queue.
type dispatcher struct {
	queues []*serial // by capability index; nil for concurrent capabilities
}

func newDispatcher(caps []Capability) *dispatcher {
	d := &dispatcher{queues: make([]*serial, len(caps))}
	for i, c := range caps {
		if _, ok := c.(Sequential); ok {
			d.queues[i] = &serial{}
		}
	}
	return d
}

func (d *dispatcher) call(i int, f func()) {
	if q := d.queues[i]; q != nil {
		q.run(f)
		return
	}
	go f()
}
