package node

import (
	"log/slog"
	"net"

	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/proxy"
)

// This file wires the SNMP proxy to the broker: requests, answers and
// traps travel through the broker's in-process platform messaging.

// newSNMP builds the proxy, or returns nil when snmp.enabled is false.
// Devices' traps go to the configured receivers; the event stream takes
// them too once it calls n.snmp.SetTrapSink.
func (n *Node) newSNMP(logger *slog.Logger) (*proxy.Proxy, error) {
	c := n.cfg.SNMP
	if !c.Enabled {
		return nil, nil
	}
	return proxy.New(proxy.Config{PubSub: brokerPubSub{n.broker}, Connected: n.broker.Connected,
		ReadCommunity: c.ReadCommunity, WriteCommunity: c.WriteCommunity, Timeout: c.Timeout,
		TrapReceivers: c.Receivers(), TrapCommunity: c.TrapCommunity, TrapDeviceOID: c.TrapDeviceOID,
		Registerer: n.metrics, Logger: logger})
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
