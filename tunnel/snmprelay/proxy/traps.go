package proxy

import (
	"errors"
	"net"
	"strconv"

	"github.com/gosnmp/gosnmp"

	"github.com/lastmile-dm/lastmile/dm/topic"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay"
)

func splitHostPort(s string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || host == "" {
		return "", 0, errors.New("want host:port")
	}
	return host, uint16(n), nil
}

// trap runs on the broker's goroutine: decode and queue.
func (p *Proxy) trap(name string, payload []byte) {
	dev, _, ok := topic.ParseSNMPTopic(name)
	if !ok {
		return
	}
	t, err := snmprelay.DecodeTrap(payload)
	if err != nil {
		p.m.traps.WithLabelValues("bad").Inc()
		p.log.Warn("unreadable trap from device", "device", dev, "err", err)
		return
	}
	select {
	case p.traps <- DeviceTrap{DeviceID: dev, Trap: t}:
	default:
		p.m.traps.WithLabelValues("dropped").Inc()
		p.log.Warn("trap queue full; trap dropped", "device", dev)
	}
}

// forwardTraps sends each device trap to every receiver, with the device
// ID appended, and tells the sink.
func (p *Proxy) forwardTraps() {
	defer p.wg.Done()
	clients := make([]*gosnmp.GoSNMP, 0, len(p.cfg.TrapReceivers))
	for _, r := range p.cfg.TrapReceivers {
		host, port, _ := splitHostPort(r)
		clients = append(clients, &gosnmp.GoSNMP{Target: host, Port: port, Community: p.cfg.TrapCommunity,
			Version: gosnmp.Version2c, Timeout: p.cfg.Timeout, Logger: gosnmp.NewLogger(nil)})
	}
	defer func() {
		for _, c := range clients {
			if c.Conn != nil {
				_ = c.Conn.Close()
			}
		}
	}()
	for {
		select {
		case <-p.done:
			return
		case t := <-p.traps:
			p.mu.Lock()
			sink := p.sink
			p.mu.Unlock()
			if sink != nil {
				sink.Trap(t)
			}
			vars := append(snmprelay.PDUs(t.Vars), gosnmp.SnmpPDU{Name: p.cfg.TrapDeviceOID, Type: gosnmp.OctetString, Value: []byte(t.DeviceID)})
			for i, c := range clients {
				if c.Conn == nil {
					if err := c.Connect(); err != nil {
						p.m.traps.WithLabelValues("send_failed").Inc()
						p.log.Warn("trap receiver unreachable", "receiver", p.cfg.TrapReceivers[i], "err", err)
						continue
					}
				}
				if _, err := c.SendTrap(gosnmp.SnmpTrap{Variables: vars}); err != nil {
					p.m.traps.WithLabelValues("send_failed").Inc()
					p.log.Warn("trap not forwarded", "receiver", p.cfg.TrapReceivers[i], "device", t.DeviceID, "err", err)
					continue
				}
				p.m.traps.WithLabelValues("forwarded").Inc()
			}
			p.log.Debug("device trap", "device", t.DeviceID, "source", t.Source, "vars", len(t.Vars))
		}
	}
}
