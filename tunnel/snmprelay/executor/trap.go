package executor

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/lastmile-dm/lastmile/tunnel/snmprelay"
)

// TrapConfig configures a TrapReceiver.
type TrapConfig struct {
	// Listen is the local UDP address traps are sent to.
	Listen string
	// Community, if set, is the only one accepted; others are dropped.
	Community string
	// Sink takes every accepted trap (the agent's offline buffer); it must
	// not block for long.
	Sink   func(snmprelay.Trap) error
	Logger *slog.Logger
	Now    func() time.Time
}

// TrapReceiver receives SNMP v2c traps on a UDP port.
type TrapReceiver struct {
	cfg  TrapConfig
	log  *slog.Logger
	tl   *gosnmp.TrapListener
	errc chan error
}

// ListenTraps starts receiving; it returns once the port is bound.
func ListenTraps(cfg TrapConfig) (*TrapReceiver, error) {
	if cfg.Listen == "" || cfg.Sink == nil {
		return nil, errors.New("snmp traps: Listen and Sink are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &TrapReceiver{cfg: cfg, log: cfg.Logger.With("component", "snmp-traps"), errc: make(chan error, 1)}
	r.tl = gosnmp.NewTrapListener()
	r.tl.Params = &gosnmp.GoSNMP{Version: gosnmp.Version2c, Community: cfg.Community, Logger: gosnmp.NewLogger(nil)}
	r.tl.OnNewTrap = r.handle
	go func() { r.errc <- r.tl.Listen(cfg.Listen) }()
	select {
	case <-r.tl.Listening():
		return r, nil
	case err := <-r.errc:
		return nil, fmt.Errorf("snmp traps: listen on %s: %w", cfg.Listen, err)
	case <-time.After(10 * time.Second):
		r.tl.Close()
		return nil, fmt.Errorf("snmp traps: listen on %s: timed out", cfg.Listen)
	}
}

// Close stops receiving.
func (r *TrapReceiver) Close() { r.tl.Close() }

func (r *TrapReceiver) handle(p *gosnmp.SnmpPacket, from *net.UDPAddr) {
	if p.Version != gosnmp.Version2c || (p.PDUType != gosnmp.SNMPv2Trap && p.PDUType != gosnmp.InformRequest) {
		r.log.Warn("trap dropped: only SNMP v2c traps are forwarded", "from", from, "version", p.Version, "pdu", p.PDUType)
		return
	}
	if r.cfg.Community != "" && p.Community != r.cfg.Community {
		r.log.Warn("trap dropped: wrong community", "from", from)
		return
	}
	vars, err := snmprelay.FromPDUs(p.Variables)
	if err != nil || len(vars) == 0 {
		r.log.Warn("trap dropped: unreadable varbinds", "from", from, "err", err)
		return
	}
	t := snmprelay.Trap{TS: r.cfg.Now().UTC().Format(time.RFC3339Nano), Source: from.String(), Vars: vars}
	if err := r.cfg.Sink(t); err != nil {
		r.log.Warn("trap not buffered", "from", from, "err", err)
	}
}
