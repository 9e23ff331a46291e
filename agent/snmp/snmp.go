// Package snmp polls SNMP agents for the agent's telemetry: the gateway's
// own snmpd or devices on its LAN, which the platform cannot reach itself.
// It gets a configured list of numeric OIDs (no MIBs on the device) with
// SNMP v1 or v2c and turns the answer into JSON-friendly values.
package snmp

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gosnmp/gosnmp"
)

// Config says what to poll.
type Config struct {
	// Target is host:port.
	Target string
	// Version is "1" or "2c" (default).
	Version   string
	Community string
	// OIDs are numeric, with or without the leading dot.
	OIDs    []string
	Timeout time.Duration
	Retries int
}

// Var is one polled value.
type Var struct {
	OID string `json:"oid"`
	// Type is the SNMP type: Integer, OctetString, Counter32, Counter64,
	// Gauge32, TimeTicks, IPAddress, ObjectIdentifier, Null, or
	// NoSuchObject / NoSuchInstance / EndOfMibView when the agent has no
	// value (Value is then null).
	Type string `json:"type"`
	// Value is a number, a string (OctetString that is not UTF-8 text is
	// hex, prefixed "0x"), or null.
	Value any `json:"value"`
}

// Result is the answer of one poll.
type Result struct {
	Target string `json:"target"`
	Vars   []Var  `json:"vars"`
}

// ErrPDU is returned when the agent answers with an SNMP error status.
var ErrPDU = errors.New("snmp: error status in response")

// Poller polls one target. Safe for concurrent use (each Poll has its own
// socket).
type Poller struct {
	cfg  Config
	host string
	port uint16
	ver  gosnmp.SnmpVersion
}

// New checks cfg and returns a Poller.
func New(cfg Config) (*Poller, error) {
	host, portStr, err := net.SplitHostPort(cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("snmp: target %q: %w", cfg.Target, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("snmp: target %q: bad port", cfg.Target)
	}
	p := &Poller{cfg: cfg, host: host, port: uint16(port)}
	switch cfg.Version {
	case "", "2c":
		p.ver = gosnmp.Version2c
	case "1":
		p.ver = gosnmp.Version1
	default:
		return nil, fmt.Errorf("snmp: version %q: want 1 or 2c", cfg.Version)
	}
	if len(cfg.OIDs) == 0 {
		return nil, errors.New("snmp: no OIDs")
	}
	if p.cfg.Timeout == 0 {
		p.cfg.Timeout = 5 * time.Second
	}
	return p, nil
}

// Poll gets every configured OID, in batches the agent accepts.
func (p *Poller) Poll(ctx context.Context) (Result, error) {
	g := &gosnmp.GoSNMP{
		Target: p.host, Port: p.port, Community: p.cfg.Community, Version: p.ver,
		Timeout: p.cfg.Timeout, Retries: p.cfg.Retries, Context: ctx, MaxOids: gosnmp.MaxOids,
	}
	if err := g.Connect(); err != nil {
		return Result{}, fmt.Errorf("snmp: %s: %w", p.cfg.Target, err)
	}
	defer g.Conn.Close()
	res := Result{Target: p.cfg.Target}
	for start := 0; start < len(p.cfg.OIDs); start += g.MaxOids {
		batch := p.cfg.OIDs[start:min(start+g.MaxOids, len(p.cfg.OIDs))]
		pkt, err := g.Get(batch)
		if err != nil {
			return Result{}, fmt.Errorf("snmp: get from %s: %w", p.cfg.Target, err)
		}
		if pkt.Error != gosnmp.NoError {
			return Result{}, fmt.Errorf("%w: %s at index %d from %s", ErrPDU, pkt.Error, pkt.ErrorIndex, p.cfg.Target)
		}
		for _, v := range pkt.Variables {
			res.Vars = append(res.Vars, convert(v))
		}
	}
	return res, nil
}

// convert turns a PDU into a Var. It is total: any PDU the library decodes
// gives a Var, never a panic.
func convert(v gosnmp.SnmpPDU) Var {
	out := Var{OID: strings.TrimPrefix(v.Name, "."), Type: typeName(v.Type)}
	switch v.Type {
	case gosnmp.OctetString:
		b, _ := v.Value.([]byte)
		if utf8.Valid(b) && printable(b) {
			out.Value = string(b)
		} else {
			out.Value = "0x" + hex.EncodeToString(b)
		}
	case gosnmp.Integer, gosnmp.Counter32, gosnmp.Gauge32, gosnmp.TimeTicks, gosnmp.Counter64, gosnmp.Uinteger32:
		if n := gosnmp.ToBigInt(v.Value); n != nil {
			out.Value = jsonNumber(n)
		}
	case gosnmp.IPAddress, gosnmp.ObjectIdentifier:
		s, _ := v.Value.(string)
		out.Value = strings.TrimPrefix(s, ".")
	case gosnmp.Opaque, gosnmp.BitString:
		if b, ok := v.Value.([]byte); ok {
			out.Value = "0x" + hex.EncodeToString(b)
		} else if v.Value != nil {
			out.Value = fmt.Sprint(v.Value)
		}
	default: // Null, NoSuchObject, NoSuchInstance, EndOfMibView
	}
	return out
}

// jsonNumber keeps a number exact: an int64 or uint64 when it fits, else
// its decimal string.
func jsonNumber(n *big.Int) any {
	if n.IsInt64() {
		return n.Int64()
	}
	if n.IsUint64() {
		return n.Uint64()
	}
	return n.String()
}

func printable(b []byte) bool {
	for _, r := range string(b) {
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' {
			return false
		}
	}
	return true
}

func typeName(t gosnmp.Asn1BER) string {
	switch t {
	case gosnmp.Integer:
		return "Integer"
	case gosnmp.OctetString:
		return "OctetString"
	case gosnmp.Null:
		return "Null"
	case gosnmp.ObjectIdentifier:
		return "ObjectIdentifier"
	case gosnmp.IPAddress:
		return "IPAddress"
	case gosnmp.Counter32:
		return "Counter32"
	case gosnmp.Gauge32:
		return "Gauge32"
	case gosnmp.TimeTicks:
		return "TimeTicks"
	case gosnmp.Counter64:
		return "Counter64"
	case gosnmp.Uinteger32:
		return "Uinteger32"
	case gosnmp.Opaque:
		return "Opaque"
	case gosnmp.BitString:
		return "BitString"
	case gosnmp.NoSuchObject:
		return "NoSuchObject"
	case gosnmp.NoSuchInstance:
		return "NoSuchInstance"
	case gosnmp.EndOfMibView:
		return "EndOfMibView"
	}
	return fmt.Sprintf("0x%02x", byte(t))
}
