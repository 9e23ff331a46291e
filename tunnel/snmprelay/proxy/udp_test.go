package proxy

import (
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/lastmile-dm/lastmile/tunnel/snmprelay"
)

func packet(tb testing.TB, v gosnmp.SnmpVersion, community string, t gosnmp.PDUType, oids ...string) []byte {
	tb.Helper()
	p := &gosnmp.SnmpPacket{Version: v, Community: community, PDUType: t, RequestID: 42, MaxRepetitions: 10}
	for _, o := range oids {
		p.Variables = append(p.Variables, gosnmp.SnmpPDU{Name: o, Type: gosnmp.Null})
	}
	b, err := p.MarshalMsg()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// datagrams: fixtures for Decode and seeds for its fuzz test.
func datagrams(tb testing.TB) []struct {
	name, result, device string
	b                    []byte
} {
	return []struct {
		name, result, device string
		b                    []byte
	}{
		{"v2c get", "", "gw1", packet(tb, gosnmp.Version2c, "ro@gw1", gosnmp.GetRequest, ".1.3.6.1.2.1.1.6.0")},
		{"v1 getnext", "", "gw1", packet(tb, gosnmp.Version1, "ro@gw1", gosnmp.GetNextRequest, ".1.3.6")},
		{"v2c bulk", "", "dev.with", packet(tb, gosnmp.Version2c, "r@o@dev.with", gosnmp.GetBulkRequest, ".1.3.6")},
		{"v2c set", "", "gw1", packet(tb, gosnmp.Version2c, "rw@gw1", gosnmp.SetRequest, ".1.3.6")},
		{"v1 bulk", "malformed", "", packet(tb, gosnmp.Version1, "ro@gw1", gosnmp.GetBulkRequest, ".1.3.6")},
		{"no device", "no_device", "", packet(tb, gosnmp.Version2c, "public", gosnmp.GetRequest, ".1.3.6")},
		{"bad device", "no_device", "", packet(tb, gosnmp.Version2c, "ro@a/b", gosnmp.GetRequest, ".1.3.6")},
		{"empty device", "no_device", "", packet(tb, gosnmp.Version2c, "ro@", gosnmp.GetRequest, ".1.3.6")},
		{"response", "unsupported_pdu", "", packet(tb, gosnmp.Version2c, "ro@gw1", gosnmp.GetResponse, ".1.3.6")},
		{"no varbinds", "malformed", "", packet(tb, gosnmp.Version2c, "ro@gw1", gosnmp.GetRequest)},
		{"garbage", "malformed", "", []byte{0x30, 0x03, 0x02, 0x01}},
		{"empty", "malformed", "", nil},
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	for _, d := range datagrams(t) {
		req, result, err := Decode(d.b)
		if result != d.result || (err == nil) != (d.result == "") || req.DeviceID != d.device {
			t.Errorf("%s: result %q device %q err %v; want %q %q", d.name, result, req.DeviceID, err, d.result, d.device)
		}
	}
}

// TestResponseV1: an SNMPv1 request gets v2 exceptions as noSuchName with
// the index, and its own varbinds back.
func TestResponseV1(t *testing.T) {
	t.Parallel()
	req, _, err := Decode(packet(t, gosnmp.Version1, "ro@gw1", gosnmp.GetRequest, ".1.3.6.1", ".1.3.6.2"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := encodeResponse(req.Packet, snmprelay.Response{ID: "x", Vars: []snmprelay.Var{
		{OID: ".1.3.6.1", Type: byte(gosnmp.Integer), Int: 1}, {OID: ".1.3.6.2", Type: byte(gosnmp.NoSuchInstance)}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := (&gosnmp.GoSNMP{}).SnmpDecodePacket(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.PDUType != gosnmp.GetResponse || got.Error != gosnmp.NoSuchName || got.ErrorIndex != 2 || got.RequestID != 42 ||
		len(got.Variables) != 2 || got.Variables[1].Type != gosnmp.Null {
		t.Fatalf("v1 answer: %+v", got)
	}
}

// FuzzDecode: no datagram makes the listener's parser panic, and a
// request it accepts gets an encodable answer.
func FuzzDecode(f *testing.F) {
	for _, d := range datagrams(f) {
		f.Add(d.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		done := make(chan struct{})
		var (
			req Request
			err error
		)
		go func() { req, _, err = Decode(b); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatalf("Decode hangs on %x", b)
		}
		if err != nil {
			return
		}
		vars, err := snmprelay.FromPDUs(req.Packet.Variables)
		if err != nil {
			return
		}
		if _, err := encodeResponse(req.Packet, snmprelay.Response{ID: "x", Vars: vars}); err != nil {
			t.Logf("echo of accepted request not encodable: %v", err)
		}
	})
}
