package agent

import (
	"context"

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
// safe for concurrent use.
type Capability interface {
	Filters(deviceID string) []string
	Connected(ctx context.Context, p Publisher, protocol conn.Protocol)
	Handle(ctx context.Context, m conn.Message, p Publisher)
}
