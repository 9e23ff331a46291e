package executor

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
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

// TrapReceiver receives SNMP v2c traps on a UDP port. It reads the
// datagrams itself and decodes each with gosnmp under a recover, so a
// malformed datagram from the LAN cannot take the agent down.
type TrapReceiver struct {
	cfg  TrapConfig
	log  *slog.Logger
	pc   net.PacketConn
	done sync.WaitGroup
}

// ListenTraps binds the port and starts receiving.
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
	pc, err := net.ListenPacket("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("snmp traps: listen on %s: %w", cfg.Listen, err)
	}
	r := &TrapReceiver{cfg: cfg, log: cfg.Logger.With("component", "snmp-traps"), pc: pc}
	r.done.Add(1)
	go r.serve()
	return r, nil
}

// Addr is the bound address.
func (r *TrapReceiver) Addr() net.Addr { return r.pc.LocalAddr() }

// Close stops receiving.
func (r *TrapReceiver) Close() {
	_ = r.pc.Close()
	r.done.Wait()
}

func (r *TrapReceiver) serve() {
	defer r.done.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := r.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		t, err := ParseTrap(buf[:n], r.cfg.Community)
		if err != nil {
			r.log.Warn("trap dropped", "from", from, "err", err)
			continue
		}
		t.TS, t.Source = r.cfg.Now().UTC().Format(time.RFC3339Nano), from.String()
		if err := r.cfg.Sink(t); err != nil {
			r.log.Warn("trap not buffered", "from", from, "err", err)
		}
	}
}

// ParseTrap decodes an SNMP v2c trap (or inform) datagram; community, if
// not empty, must match. TS and Source are left for the caller.
func ParseTrap(msg []byte, community string) (t snmprelay.Trap, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = snmprelay.Trap{}, fmt.Errorf("malformed trap: %v", r)
		}
	}()
	p, err := (&gosnmp.GoSNMP{Version: gosnmp.Version2c, Logger: gosnmp.NewLogger(nil)}).SnmpDecodePacket(msg)
	if err != nil {
		return snmprelay.Trap{}, fmt.Errorf("malformed trap: %w", err)
	}
	if p.Version != gosnmp.Version2c || (p.PDUType != gosnmp.SNMPv2Trap && p.PDUType != gosnmp.InformRequest) {
		return snmprelay.Trap{}, fmt.Errorf("only SNMP v2c traps are forwarded (got %s %s)", p.Version, p.PDUType)
	}
	if community != "" && p.Community != community {
		return snmprelay.Trap{}, errors.New("wrong community")
	}
	vars, err := snmprelay.FromPDUs(p.Variables)
	if err != nil {
		return snmprelay.Trap{}, err
	}
	if len(vars) == 0 {
		return snmprelay.Trap{}, errors.New("a trap without varbinds")
	}
	return snmprelay.Trap{Vars: vars}, nil
}
