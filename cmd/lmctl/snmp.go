package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"

	snmpv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/snmp/v1"
)

// The SNMP commands run SnmpService: "lmctl snmp get gw-1 1.3.6.1.2.1.1.5.0",
// "lmctl snmp walk gw-1 1.3.6.1.2.1.2.2", "lmctl snmp set gw-1
// 1.3.6.1.2.1.1.4.0 s noc@example.net" (net-snmp's type letters).

func init() {
	commands["snmp get"] = snmpGet
	commands["snmp walk"] = snmpWalk
	commands["snmp set"] = snmpSet
}

func (c *cli) snmp() snmpv1.SnmpServiceClient { return snmpv1.NewSnmpServiceClient(c.conn) }

var varbindHeader = []string{"OID", "TYPE", "VALUE"}

// snmpValue prints a value the way an operator reads it.
func snmpValue(v *snmpv1.Varbind) string {
	switch x := v.GetValue().(type) {
	case *snmpv1.Varbind_Int:
		return strconv.FormatInt(x.Int, 10)
	case *snmpv1.Varbind_Uint:
		return strconv.FormatUint(x.Uint, 10)
	case *snmpv1.Varbind_Str:
		return x.Str
	case *snmpv1.Varbind_Bytes:
		if v.GetText() != "" || len(x.Bytes) == 0 {
			if printable(v.GetText()) {
				return strconv.Quote(v.GetText())
			}
		}
		return "0x" + hex.EncodeToString(x.Bytes)
	}
	return "-"
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != '\n' && r != '\t' {
			return false
		}
	}
	return true
}

func typeName(t snmpv1.Type) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "TYPE_"))
}

func varbindRows(vs []*snmpv1.Varbind) [][]string {
	rows := make([][]string, 0, len(vs))
	for _, v := range vs {
		rows = append(rows, []string{v.GetOid(), typeName(v.GetType()), snmpValue(v)})
	}
	return rows
}

// snmpStatus turns an SNMP error status into the command's error.
func snmpStatus(status, index int32, name string) error {
	if status == 0 {
		return nil
	}
	return fmt.Errorf("SNMP error %s (%d) at varbind %d", name, status, index)
}

func snmpGet(c *cli, args []string, stderr io.Writer) error {
	pos, err := parse(verbFlags("snmp get", stderr), args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usagef("want a device ID and at least one OID")
	}
	ctx, cancel := c.ctx()
	defer cancel()
	r, err := c.snmp().Get(ctx, &snmpv1.GetRequest{DeviceId: pos[0], Oids: pos[1:]})
	if err != nil {
		return err
	}
	if err := c.emit(r, varbindHeader, varbindRows(r.GetVarbinds())); err != nil {
		return err
	}
	return snmpStatus(r.GetErrorStatus(), r.GetErrorIndex(), r.GetError())
}

func snmpWalk(c *cli, args []string, stderr io.Writer) error {
	pos, err := parse(verbFlags("snmp walk", stderr), args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("want a device ID and one OID")
	}
	ctx, cancel := c.ctx()
	defer cancel()
	stream, err := c.snmp().Walk(ctx, &snmpv1.WalkRequest{DeviceId: pos[0], Oid: pos[1]})
	if err != nil {
		return err
	}
	var vs []*snmpv1.Varbind
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if c.json {
			if err := c.emit(m, nil, nil); err != nil {
				return err
			}
			continue
		}
		vs = append(vs, m.GetVarbind())
	}
	if c.json {
		return nil
	}
	return c.emit(nil, varbindHeader, varbindRows(vs))
}

// setTypes are net-snmp's snmpset type letters.
var setTypes = map[string]snmpv1.Type{
	"i": snmpv1.Type_TYPE_INTEGER, "u": snmpv1.Type_TYPE_GAUGE32, "c": snmpv1.Type_TYPE_COUNTER32,
	"C": snmpv1.Type_TYPE_COUNTER64, "t": snmpv1.Type_TYPE_TIMETICKS, "s": snmpv1.Type_TYPE_OCTET_STRING,
	"x": snmpv1.Type_TYPE_OCTET_STRING, "a": snmpv1.Type_TYPE_IP_ADDRESS, "o": snmpv1.Type_TYPE_OBJECT_IDENTIFIER,
}

// parseSetVarbind reads one "OID TYPE VALUE" triple.
func parseSetVarbind(oid, typ, value string) (*snmpv1.Varbind, error) {
	t, ok := setTypes[typ]
	if !ok {
		return nil, usagef("type %q: want one of i u c C t s x a o", typ)
	}
	v := &snmpv1.Varbind{Oid: oid, Type: t}
	switch typ {
	case "i":
		n, err := strconv.ParseInt(value, 10, 32)
		if err != nil {
			return nil, usagef("%s: %q is not a 32-bit integer", oid, value)
		}
		v.Value = &snmpv1.Varbind_Int{Int: n}
	case "u", "c", "t", "C":
		bits := 32
		if typ == "C" {
			bits = 64
		}
		n, err := strconv.ParseUint(value, 10, bits)
		if err != nil {
			return nil, usagef("%s: %q is not an unsigned %d-bit number", oid, value, bits)
		}
		v.Value = &snmpv1.Varbind_Uint{Uint: n}
	case "s":
		v.Value = &snmpv1.Varbind_Bytes{Bytes: []byte(value)}
	case "x":
		b, err := hex.DecodeString(strings.TrimPrefix(strings.ReplaceAll(value, " ", ""), "0x"))
		if err != nil {
			return nil, usagef("%s: %q is not hex", oid, value)
		}
		v.Value = &snmpv1.Varbind_Bytes{Bytes: b}
	case "a", "o":
		v.Value = &snmpv1.Varbind_Str{Str: value}
	}
	return v, nil
}

func snmpSet(c *cli, args []string, stderr io.Writer) error {
	pos, err := parse(verbFlags("snmp set", stderr), args)
	if err != nil {
		return err
	}
	if len(pos) < 4 || (len(pos)-1)%3 != 0 {
		return usagef("want a device ID and OID TYPE VALUE triples (types as snmpset: i u c C t s x a o)")
	}
	req := &snmpv1.SetRequest{DeviceId: pos[0]}
	for i := 1; i < len(pos); i += 3 {
		v, err := parseSetVarbind(pos[i], pos[i+1], pos[i+2])
		if err != nil {
			return err
		}
		req.Varbinds = append(req.Varbinds, v)
	}
	ctx, cancel := c.ctx()
	defer cancel()
	r, err := c.snmp().Set(ctx, req)
	if err != nil {
		return err
	}
	if err := c.emit(r, varbindHeader, varbindRows(r.GetVarbinds())); err != nil {
		return err
	}
	return snmpStatus(r.GetErrorStatus(), r.GetErrorIndex(), r.GetError())
}
