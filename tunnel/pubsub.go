package tunnel

import (
	"context"
	"time"
)

// PubSub is the MQTT connection a tunnel side talks through: the agent's
// client connection, or the broker's in-process platform messaging. The
// tunnel never dials MQTT itself.
type PubSub interface {
	// Publish sends payload on topic with qos. It may block until the
	// message is handed to the network. A session never calls it from two
	// goroutines at once, so the order of calls is the order on the wire.
	// Publish does not keep payload after it returns (the session reuses
	// the buffer for its next frame): it writes it out, or copies it.
	Publish(ctx context.Context, topic string, qos byte, payload []byte) error
	// Subscribe delivers every message matching filter to h until cancel is
	// called; after a reconnect the implementation subscribes again. h runs
	// on the connection's receive goroutine: it does not block, and it does
	// not keep payload after it returns (the tunnel copies what it keeps).
	Subscribe(filter string, qos byte, h func(topic string, payload []byte)) (cancel func(), err error)
}

// EventKind names an audit event.
type EventKind string

// Audit event kinds.
const (
	EventSessionOpen   EventKind = "tunnel.session.open"
	EventSessionReject EventKind = "tunnel.session.reject"
	EventSessionClose  EventKind = "tunnel.session.close"
	EventStreamOpen    EventKind = "tunnel.stream.open"
	EventStreamReject  EventKind = "tunnel.stream.reject"
	EventStreamClose   EventKind = "tunnel.stream.close"
)

// Event is one audit record: who opened or closed what, and why.
type Event struct {
	Kind      EventKind
	At        time.Time
	DeviceID  string
	SessionID string
	Target    string
	Principal string // who asked for the session, when known
	Stream    uint32 // stream events only
	Reason    Reason
	Message   string
	BytesIn   int64 // received from the peer (close events)
	BytesOut  int64 // sent to the peer (close events)
}

// Auditor records audit events. Audit must not block for long: it runs on
// session goroutines.
type Auditor interface {
	Audit(Event)
}

// AuditFunc adapts a function to Auditor.
type AuditFunc func(Event)

// Audit calls f(e).
func (f AuditFunc) Audit(e Event) { f(e) }

var _ Auditor = AuditFunc(nil)
