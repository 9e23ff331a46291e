package broker_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// TestPingedIdleConnectionsKeepSmallStacks: handling a packet takes about
// 16 KiB of goroutine stack (mochi passes its 800-byte Packet by value
// through every layer), and Go gives grown stack back only in halves, at
// collections. A packet that ends an idle spell is therefore handled on a
// goroutine of its own, whose stack goes when it ends: a fleet of idle
// devices that ping must not keep 16 KiB each. Without that it measures
// 8 KiB per connection here (16 halved once by the collection below).
// Not parallel: it reads the process's stack memory; the devices are raw
// sockets, so that they add no goroutines of their own to it. `make test` runs it a
// second time without the race detector, which hides the difference.
func TestPingedIdleConnectionsKeepSmallStacks(t *testing.T) {
	if raceDetector {
		t.Skip("the race detector doubles goroutine stacks; make test runs this test without it too")
	}
	const n = 200
	h := start(t, "", nil)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("idle%03d", i)
	}
	h.users.edit(func(u *users) {
		for _, id := range ids {
			u.password[id] = "pw-" + id
		}
	})
	before := stackInuse()
	conns := make([]net.Conn, n)
	for i, id := range ids {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		conns[i] = c
		rawConnect311(t, c, id, "pw-"+id)
	}
	time.Sleep(1200 * time.Millisecond) // past the idle spell (idleSpell, 1 s)
	for _, c := range conns {
		if _, err := c.Write([]byte{0xC0, 0}); err != nil { // PINGREQ
			t.Fatal(err)
		}
	}
	for i, c := range conns {
		expect(t, c, []byte{0xD0, 0}, fmt.Sprintf("PINGRESP for %s", ids[i]))
	}
	perConn := float64(stackInuse()-before) / n
	t.Logf("goroutine stack per pinged idle connection: %.0f bytes", perConn)
	if perConn > 6<<10 {
		t.Errorf("%.0f bytes of goroutine stack per idle connection after a ping, want at most 6 KiB", perConn)
	}
}

func stackInuse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.StackInuse)
}

// rawConnect311 sends an MQTT 3.1.1 CONNECT (clean session, keepalive 60 s)
// and expects CONNACK accepted.
func rawConnect311(t *testing.T, c net.Conn, id, password string) {
	t.Helper()
	str := func(b []byte, s string) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		return append(b, s...)
	}
	body := str(nil, "MQTT")
	body = append(body, 4, 0xC2, 0, 60) // level 4; username, password, clean; keepalive 60 s
	body = str(body, id)
	body = str(body, id)
	body = str(body, password)
	pk := append([]byte{0x10, byte(len(body))}, body...)
	if _, err := c.Write(pk); err != nil {
		t.Fatal(err)
	}
	expect(t, c, []byte{0x20, 2, 0, 0}, "CONNACK accepted for "+id)
}

func expect(t *testing.T, c net.Conn, want []byte, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(want) {
		t.Fatalf("%s: got % x, %v; want % x", what, got, err, want)
	}
}
