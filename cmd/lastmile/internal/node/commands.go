package node

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/lastmile-dm/lastmile/broker"
	"github.com/lastmile-dm/lastmile/dm/command"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// newCommands builds the command service on the broker: requests go out
// with PublishMessage, replies come in through a platform subscription.
func (n *Node) newCommands(logger *slog.Logger) error {
	svc, err := command.New(command.Config{Devices: commandDevices{n}, Transport: commandTransport{n.broker},
		Events: n.events, MaxPending: n.cfg.Commands.MaxPending, Logger: logger, Registerer: n.metrics})
	if err != nil {
		return err
	}
	if _, err := n.broker.Subscribe(topic.CommandReplyFilter, func(m broker.Message) {
		// HandleReply copies what it keeps and never blocks.
		svc.HandleReply(command.Reply{Topic: m.Topic, Payload: m.Payload, CorrelationData: m.CorrelationData, PrincipalID: m.PrincipalID})
	}); err != nil {
		return err
	}
	n.commands = svc
	return nil
}

// commandDevices answers whether a device can take a command now: the
// registry knows whether it exists and its protocol version, the broker
// whether it holds a live connection on this node.
type commandDevices struct{ n *Node }

func (d commandDevices) Online(ctx context.Context, id string) (bool, byte, error) {
	_, p, err := d.n.registry.Get(ctx, id)
	if err != nil {
		return false, 0, err
	}
	online := d.n.broker.Connected(id)
	if !online && p.Online && p.Node != d.n.cfg.NodeName {
		// Until cluster routing, a command reaches devices on this node only.
		return false, 0, fmt.Errorf("%w: device %s is connected to node %s, not to this one (%s)", command.ErrOffline, id, p.Node, d.n.cfg.NodeName)
	}
	return online, p.ProtocolVersion, nil
}

// commandTransport publishes requests at QoS 0: at most once, never queued.
type commandTransport struct{ b *broker.Server }

func (t commandTransport) Send(m command.Message) error {
	return t.b.PublishMessage(broker.Message{Topic: m.Topic, Payload: m.Payload, QoS: 0,
		ResponseTopic: m.ResponseTopic, CorrelationData: m.CorrelationData, ContentType: "application/json"})
}

// stopCommandsAndEvents ends every watch and pending invocation, so that a
// graceful stop of the API does not wait for them.
func (n *Node) stopCommandsAndEvents() {
	if n.commands != nil {
		n.commands.Close()
	}
	if n.events != nil {
		n.events.Close()
	}
}
