package executor

import (
	"testing"

	"github.com/gosnmp/gosnmp"
)

func trapDatagram(tb testing.TB, v gosnmp.SnmpVersion, community string, t gosnmp.PDUType, vars ...gosnmp.SnmpPDU) []byte {
	tb.Helper()
	p := &gosnmp.SnmpPacket{Version: v, Community: community, PDUType: t, RequestID: 7, Variables: vars}
	b, err := p.MarshalMsg()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var (
	upTime  = gosnmp.SnmpPDU{Name: ".1.3.6.1.2.1.1.3.0", Type: gosnmp.TimeTicks, Value: uint32(42)}
	trapOID = gosnmp.SnmpPDU{Name: ".1.3.6.1.6.3.1.1.4.1.0", Type: gosnmp.ObjectIdentifier, Value: ".1.3.6.1.6.3.1.1.5.3"}
)

func trapFixtures(tb testing.TB) []struct {
	name string
	b    []byte
	vars int // 0: refused
} {
	return []struct {
		name string
		b    []byte
		vars int
	}{
		{"v2c trap", trapDatagram(tb, gosnmp.Version2c, "public", gosnmp.SNMPv2Trap, upTime, trapOID), 2},
		{"inform", trapDatagram(tb, gosnmp.Version2c, "public", gosnmp.InformRequest, upTime, trapOID), 2},
		{"wrong community", trapDatagram(tb, gosnmp.Version2c, "other", gosnmp.SNMPv2Trap, upTime, trapOID), 0},
		{"a get", trapDatagram(tb, gosnmp.Version2c, "public", gosnmp.GetRequest, upTime), 0},
		{"v1 get", trapDatagram(tb, gosnmp.Version1, "public", gosnmp.GetRequest, upTime), 0},
		{"no varbinds", trapDatagram(tb, gosnmp.Version2c, "public", gosnmp.SNMPv2Trap), 0},
		{"garbage", []byte{0x30, 0x82, 0xff, 0xff, 0x02}, 0},
		{"empty", nil, 0},
	}
}

func TestParseTrap(t *testing.T) {
	t.Parallel()
	for _, f := range trapFixtures(t) {
		tr, err := ParseTrap(f.b, "public")
		if (err == nil) != (f.vars > 0) || len(tr.Vars) != f.vars {
			t.Errorf("%s: %d vars, %v", f.name, len(tr.Vars), err)
		}
	}
	if _, err := ParseTrap(trapDatagram(t, gosnmp.Version2c, "other", gosnmp.SNMPv2Trap, upTime), ""); err != nil {
		t.Errorf("no community configured: %v", err)
	}
}

// FuzzParseTrap: no datagram from the LAN makes the trap parser panic.
func FuzzParseTrap(f *testing.F) {
	for _, x := range trapFixtures(f) {
		f.Add(x.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := ParseTrap(b, "")
		if err == nil && len(tr.Vars) == 0 {
			t.Fatal("accepted a trap without varbinds")
		}
	})
}
