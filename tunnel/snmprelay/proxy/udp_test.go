package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/lastmile-dm/lastmile/internal/tunneltest"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/executor"
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
		// Echo the varbinds as an answer, whether or not the relay would
		// accept them (as handle does), and as an error answer (v1 sends
		// the request's own varbinds back).
		if _, err := encodeResponse(req.Packet, snmprelay.Response{ID: "x", Vars: vars}); err != nil {
			t.Logf("echo not encodable: %v", err)
		}
		_, _ = encodeResponse(req.Packet, snmprelay.Response{ID: "x", ErrorStatus: int(gosnmp.NoSuchName), ErrorIndex: 1, Vars: vars})
	})
}

// TestRetransmissionNotRelayedTwice: while a request waits for a slow
// target, the OSS's retransmission of it (same source, same request ID)
// is not relayed again; another source's is.
func TestRetransmissionNotRelayedTwice(t *testing.T) {
	t.Parallel()
	// A target that takes datagrams and never answers.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	b := tunneltest.Broker(t)
	ex, err := executor.New(executor.Config{DeviceID: "gw1", PubSub: tunneltest.Connect(t, b, "gw1"), Target: silent.LocalAddr().String(),
		Community: "public", Timeout: 3 * time.Second, Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ex.Close() })
	p, err := New(Config{PubSub: tunneltest.Platform{B: b}, Connected: b.Connected, ReadCommunity: "ro", Timeout: 10 * time.Second,
		Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	msg := packet(t, gosnmp.Version2c, "ro@gw1", gosnmp.GetRequest, ".1.3.6.1.2.1.1.6.0")
	// The broker records presence just after CONNACK.
	for deadline := time.Now().Add(10 * time.Second); !b.Connected("gw1"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("gw1 never online")
		}
	}
	first := make(chan string, 1)
	go func() { _, r := p.handle(msg, "10.0.0.1:5000"); first <- r }()
	// Wait until the first copy is in flight (its answer takes the
	// target's 3 s timeout).
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		n := len(p.pending)
		p.mu.Unlock()
		if n == 1 {
			break
		}
		select {
		case r := <-first:
			t.Fatalf("the first copy ended before its answer: %q", r)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the first copy was never relayed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, r := p.handle(msg, "10.0.0.1:5000"); r != "duplicate" {
		t.Fatalf("retransmission: %q, want duplicate", r)
	}
	other := make(chan string, 1)
	go func() { _, r := p.handle(msg, "10.0.0.2:5000"); other <- r }()
	if r := <-first; r != "target_timeout" {
		t.Fatalf("first copy: %q", r)
	}
	if r := <-other; r != "target_timeout" {
		t.Fatalf("another source's copy: %q", r)
	}
}
