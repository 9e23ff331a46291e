package node

import (
	"context"
	"strconv"
	"time"

	"github.com/lastmile-dm/lastmile/broker"
	"github.com/lastmile-dm/lastmile/dm/access"
	"github.com/lastmile-dm/lastmile/dm/event"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// presenceSink records device connections in the registry. Applications
// and anonymous clients have no presence.
type presenceSink struct {
	registry *registry.Service
	node     string
	bootID   string
	events   *event.Bus // nil in tests that need no events
}

var _ broker.PresenceSink = (*presenceSink)(nil)

// presenceTimeout bounds one presence write; the registry logs failures.
const presenceTimeout = 5 * time.Second

// conn is the presence connection ID: unique across nodes and restarts.
func (p *presenceSink) conn(connID uint64) string {
	return p.node + "/" + p.bootID + "/" + strconv.FormatUint(connID, 10)
}

func (p *presenceSink) Connected(s broker.Session) {
	if s.Principal == nil || s.Principal.Kind != broker.KindDevice {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), presenceTimeout)
	defer cancel()
	p.registry.Connected(ctx, registry.Presence{
		DeviceID:        s.Principal.ID,
		Conn:            p.conn(s.ConnID),
		Node:            p.node,
		ClientID:        s.ClientID,
		RemoteAddr:      s.RemoteAddr,
		Listener:        s.Listener,
		ProtocolVersion: s.ProtocolVersion,
		Keepalive:       s.Keepalive,
		ConnectedAt:     s.ConnectedAt.UTC(),
	})
	p.events.Publish(presenceEvent(s.Principal.ID, s.ConnectedAt, event.Presence{Connected: true, ClientID: s.ClientID,
		RemoteAddr: s.RemoteAddr, ProtocolVersion: s.ProtocolVersion, Node: p.node}))
}

func (p *presenceSink) Disconnected(clientID, principalID string, connID uint64, at time.Time, reason string) {
	// Device IDs cannot hold ':', application and anonymous IDs always do.
	if !topic.ValidDeviceID(principalID) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), presenceTimeout)
	defer cancel()
	p.registry.Disconnected(ctx, principalID, p.conn(connID), at, reason)
	p.events.Publish(presenceEvent(principalID, at, event.Presence{Reason: reason, ClientID: clientID, Node: p.node}))
}

// deviceKicker lets the registry disconnect a device through the broker.
type deviceKicker struct{ b *broker.Server }

func (k deviceKicker) Kick(deviceID, reason string) bool {
	return k.b.KickPrincipal(deviceID, reason) > 0
}

// appKicker lets access disconnect every connection of an application.
type appKicker struct{ b *broker.Server }

func (k appKicker) KickApplication(name, reason string) int {
	return k.b.KickPrincipal(access.ApplicationUsernamePrefix+name, reason)
}
