package snmprelay

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"

	"github.com/gosnmp/gosnmp"
)

// Op is an SNMP operation.
type Op string

// Operations.
const (
	OpGet     Op = "get"
	OpGetNext Op = "getnext"
	OpGetBulk Op = "getbulk"
	OpSet     Op = "set"
)

// Limits of a relay message: an SNMP message fits a UDP datagram.
const (
	MaxMessage = 128 << 10
	MaxVars    = 2048
	MaxIDLen   = 64
)

// Request is one SNMP operation for a device's agent.
type Request struct {
	ID             string `json:"id"`
	Op             Op     `json:"op"`
	NonRepeaters   int    `json:"non_repeaters,omitempty"`
	MaxRepetitions int    `json:"max_repetitions,omitempty"`
	// Vars name the OIDs; for set they carry the values.
	Vars []Var `json:"vars"`
}

// Response answers a Request. Error is set when the agent got no answer
// from its target (timeout, unreachable, no target configured): the proxy
// then sends nothing, as the target would have. Otherwise ErrorStatus and
// ErrorIndex are the target's (RFC 3416), and Vars its varbinds.
type Response struct {
	ID          string `json:"id"`
	Error       string `json:"error,omitempty"`
	ErrorStatus int    `json:"error_status,omitempty"`
	ErrorIndex  int    `json:"error_index,omitempty"`
	Vars        []Var  `json:"vars,omitempty"`
}

// Trap is a trap the agent received: the source and the varbinds as sent
// (for v2c, sysUpTime.0 and snmpTrapOID.0 first).
type Trap struct {
	Seq       uint64 `json:"seq,omitempty"` // set by the agent's offline buffer
	TS        string `json:"ts"`
	Source    string `json:"source"`
	Community string `json:"community,omitempty"`
	Vars      []Var  `json:"vars"`
}

// Var is one varbind. Type is the ASN.1 tag (gosnmp.Asn1BER); the value
// is in the field its type uses: Int (Integer), Uint (Counter32, Gauge32,
// TimeTicks, Counter64, Uinteger32), Bytes (OctetString, Opaque, BitString),
// Str (ObjectIdentifier, IPAddress), Float (opaque float and double); none
// for Null, noSuchObject, noSuchInstance and endOfMibView.
type Var struct {
	OID   string  `json:"oid"`
	Type  byte    `json:"type"`
	Int   int64   `json:"int,omitempty"`
	Uint  uint64  `json:"uint,omitempty"`
	Bytes []byte  `json:"bytes,omitempty"`
	Str   string  `json:"str,omitempty"`
	Float float64 `json:"float,omitempty"`
}

// Errors.
var (
	// ErrBadMessage is returned for a relay message that does not parse
	// or breaks a limit.
	ErrBadMessage = errors.New("bad SNMP relay message")
)

// ValidOID reports whether s is a numeric OID, with or without a leading
// dot, of at least two arcs.
func ValidOID(s string) bool {
	parts := strings.Split(strings.TrimPrefix(s, "."), ".")
	if len(parts) < 2 || len(parts) > 128 {
		return false
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil || (i == 0 && n > 2) {
			return false
		}
	}
	return true
}

func (v Var) check() error {
	if !ValidOID(v.OID) {
		return fmt.Errorf("%w: %q is not a numeric OID", ErrBadMessage, v.OID)
	}
	switch gosnmp.Asn1BER(v.Type) {
	case gosnmp.Integer:
		if v.Int < math.MinInt32 || v.Int > math.MaxInt32 {
			return fmt.Errorf("%w: integer %d out of range", ErrBadMessage, v.Int)
		}
	case gosnmp.Counter32, gosnmp.Gauge32, gosnmp.TimeTicks, gosnmp.Uinteger32:
		if v.Uint > math.MaxUint32 {
			return fmt.Errorf("%w: %d out of 32-bit range", ErrBadMessage, v.Uint)
		}
	case gosnmp.ObjectIdentifier:
		if !ValidOID(v.Str) {
			return fmt.Errorf("%w: value %q is not a numeric OID", ErrBadMessage, v.Str)
		}
	case gosnmp.IPAddress:
		if ip := net.ParseIP(v.Str); ip == nil || ip.To4() == nil {
			return fmt.Errorf("%w: %q is not an IPv4 address", ErrBadMessage, v.Str)
		}
	case gosnmp.Counter64, gosnmp.OctetString, gosnmp.Opaque, gosnmp.BitString, gosnmp.OpaqueFloat, gosnmp.OpaqueDouble,
		gosnmp.Null, gosnmp.NoSuchObject, gosnmp.NoSuchInstance, gosnmp.EndOfMibView:
	default:
		return fmt.Errorf("%w: unknown varbind type 0x%02x", ErrBadMessage, v.Type)
	}
	return nil
}

func checkID(id string) error {
	if id == "" || len(id) > MaxIDLen {
		return fmt.Errorf("%w: id must be 1-%d characters", ErrBadMessage, MaxIDLen)
	}
	return nil
}

// checkVars validates varbinds and drops empty byte slices (nil and empty
// encode alike).
func checkVars(vs []Var) error {
	for i := range vs {
		if len(vs[i].Bytes) == 0 {
			vs[i].Bytes = nil
		}
	}
	if len(vs) > MaxVars {
		return fmt.Errorf("%w: %d varbinds (at most %d)", ErrBadMessage, len(vs), MaxVars)
	}
	for _, v := range vs {
		if err := v.check(); err != nil {
			return err
		}
	}
	return nil
}

func decode(b []byte, v any) error {
	if len(b) > MaxMessage {
		return fmt.Errorf("%w: %d bytes (at most %d)", ErrBadMessage, len(b), MaxMessage)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	return nil
}

// Check validates r.
func (r *Request) Check() error {
	if err := checkID(r.ID); err != nil {
		return err
	}
	switch r.Op {
	case OpGet, OpGetNext, OpSet:
	case OpGetBulk:
		if r.NonRepeaters < 0 || r.MaxRepetitions < 0 || r.MaxRepetitions > math.MaxInt32 || r.NonRepeaters > math.MaxInt32 {
			return fmt.Errorf("%w: non_repeaters %d, max_repetitions %d", ErrBadMessage, r.NonRepeaters, r.MaxRepetitions)
		}
	default:
		return fmt.Errorf("%w: unknown op %q", ErrBadMessage, r.Op)
	}
	if len(r.Vars) == 0 {
		return fmt.Errorf("%w: no varbinds", ErrBadMessage)
	}
	return checkVars(r.Vars)
}

// DecodeRequest reads and checks a request.
func DecodeRequest(b []byte) (Request, error) {
	var r Request
	if err := decode(b, &r); err != nil {
		return Request{}, err
	}
	return r, r.Check()
}

// DecodeResponse reads and checks a response.
func DecodeResponse(b []byte) (Response, error) {
	var r Response
	if err := decode(b, &r); err != nil {
		return Response{}, err
	}
	if err := checkID(r.ID); err != nil {
		return Response{}, err
	}
	if len(r.Vars) == 0 {
		r.Vars = nil
	}
	if r.ErrorStatus < 0 || r.ErrorStatus > 255 || r.ErrorIndex < 0 || r.ErrorIndex > 255 {
		return Response{}, fmt.Errorf("%w: error_status %d, error_index %d", ErrBadMessage, r.ErrorStatus, r.ErrorIndex)
	}
	return r, checkVars(r.Vars)
}

// DecodeTrap reads and checks a trap.
func DecodeTrap(b []byte) (Trap, error) {
	var t Trap
	if err := decode(b, &t); err != nil {
		return Trap{}, err
	}
	if len(t.Vars) == 0 {
		return Trap{}, fmt.Errorf("%w: a trap without varbinds", ErrBadMessage)
	}
	return t, checkVars(t.Vars)
}

// Encode marshals a message (Request, Response or Trap).
func Encode(m any) ([]byte, error) { return json.Marshal(m) }

// FromPDU converts a gosnmp varbind.
func FromPDU(p gosnmp.SnmpPDU) (Var, error) {
	v := Var{OID: p.Name, Type: byte(p.Type)}
	switch p.Type {
	case gosnmp.Integer:
		v.Int = gosnmp.ToBigInt(p.Value).Int64()
	case gosnmp.Counter32, gosnmp.Gauge32, gosnmp.TimeTicks, gosnmp.Uinteger32, gosnmp.Counter64:
		v.Uint = gosnmp.ToBigInt(p.Value).Uint64()
	case gosnmp.OctetString, gosnmp.Opaque, gosnmp.BitString:
		switch b := p.Value.(type) {
		case []byte:
			v.Bytes = b
		case string:
			v.Bytes = []byte(b)
		}
		if len(v.Bytes) == 0 {
			v.Bytes = nil
		}
	case gosnmp.ObjectIdentifier, gosnmp.IPAddress:
		s, _ := p.Value.(string)
		v.Str = s
	case gosnmp.OpaqueFloat:
		f, _ := p.Value.(float32)
		v.Float = float64(f)
	case gosnmp.OpaqueDouble:
		v.Float, _ = p.Value.(float64)
	case gosnmp.Null, gosnmp.NoSuchObject, gosnmp.NoSuchInstance, gosnmp.EndOfMibView:
	default:
		return Var{}, fmt.Errorf("varbind %s: unsupported type %s", p.Name, p.Type)
	}
	return v, nil
}

// FromPDUs converts gosnmp varbinds.
func FromPDUs(ps []gosnmp.SnmpPDU) ([]Var, error) {
	out := make([]Var, 0, len(ps))
	for _, p := range ps {
		v, err := FromPDU(p)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// PDU converts v to a gosnmp varbind with the Go value types gosnmp
// marshals.
func (v Var) PDU() gosnmp.SnmpPDU {
	p := gosnmp.SnmpPDU{Name: v.OID, Type: gosnmp.Asn1BER(v.Type)}
	switch p.Type {
	case gosnmp.Integer:
		p.Value = int(v.Int)
	case gosnmp.Counter32, gosnmp.Gauge32, gosnmp.TimeTicks, gosnmp.Uinteger32:
		p.Value = uint32(v.Uint) //nolint:gosec // checked by Var.check
	case gosnmp.Counter64:
		p.Value = v.Uint
	case gosnmp.OctetString, gosnmp.Opaque, gosnmp.BitString:
		p.Value = v.Bytes
		if p.Value == nil {
			p.Value = []byte{}
		}
	case gosnmp.ObjectIdentifier, gosnmp.IPAddress:
		p.Value = v.Str
	case gosnmp.OpaqueFloat:
		p.Value = float32(v.Float)
	case gosnmp.OpaqueDouble:
		p.Value = v.Float
	}
	return p
}

// PDUs converts varbinds to gosnmp's.
func PDUs(vs []Var) []gosnmp.SnmpPDU {
	out := make([]gosnmp.SnmpPDU, len(vs))
	for i, v := range vs {
		out[i] = v.PDU()
	}
	return out
}
