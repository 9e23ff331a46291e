package node

import (
	"log/slog"
	"net"

	"github.com/lastmile-dm/lastmile/dm/event"

	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/proxy"
)

// This file wires the SNMP proxy to the broker: requests, answers and
// traps travel through the broker's in-process platform messaging.

// newSNMP builds the proxy, or returns nil when snmp.enabled is false.
// Devices' traps go to the configured receivers and on the event stream.
func (n *Node) newSNMP(logger *slog.Logger) (*proxy.Proxy, error) {
	c := n.cfg.SNMP
	if !c.Enabled {
		return nil, nil
	}
	return proxy.New(proxy.Config{PubSub: brokerPubSub{n.broker}, Connected: n.broker.Connected,
		ReadCommunity: c.ReadCommunity, WriteCommunity: c.WriteCommunity, Timeout: c.Timeout,
		TrapReceivers: c.Receivers(), TrapCommunity: c.TrapCommunity, TrapDeviceOID: c.TrapDeviceOID,
		TrapSink: trapEvents{n.events}, Registerer: n.metrics, Logger: logger})
}

// trapEvents puts every device trap on the event stream.
type trapEvents struct{ bus *event.Bus }

func (t trapEvents) Trap(dt proxy.DeviceTrap) {
	if t.bus == nil {
		return
	}
	ev := event.Trap{Source: dt.Source, Vars: make([]event.TrapVar, 0, len(dt.Vars))}
	for _, v := range dt.Vars {
		ev.Vars = append(ev.Vars, event.TrapVar(v))
	}
	t.bus.Publish(event.TrapReceived(dt.DeviceID, ev))
}

// listenSNMP starts the proxy's UDP listener when snmp.listen is set and
// records its address as "snmp".
func (n *Node) listenSNMP(addrs map[string]net.Addr) error {
	if n.snmp == nil || n.cfg.SNMP.Listen == "" {
		return nil
	}
	a, err := n.snmp.Listen(n.cfg.SNMP.Listen)
	if err != nil {
		return err
	}
	addrs["snmp"] = a
	return nil
}

// stopSNMP closes the listener and fails calls in progress.
func (n *Node) stopSNMP() {
	if n.snmp != nil {
		n.snmp.Close()
	}
}
