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

// TestIdleConnectionsHoldNoGoroutineStack: a plain-TCP connection with no
// input parks (the mochi fork's event loops): it has no goroutine, so a
// fleet of idle devices costs no goroutine stacks — before their first
// ping and after it, which an event loop's goroutine handled (handling a
// packet grows a stack to about 16 KiB: mochi passes its 800-byte Packet
// by value through every layer). With a goroutine per connection it
// measures about 4 KiB per connection before the ping and 8 KiB after (16
// halved by the collection stackInuse runs).
// Not parallel: it reads the process's goroutine count and stack memory;
// the devices are raw sockets, so that they add no goroutines of their
// own. Under the race detector only the goroutines are checked; `make test`
// runs it a second time without it for the stacks.
func TestIdleConnectionsHoldNoGoroutineStack(t *testing.T) {
	const n = 1000 // the runtime caches up to 64 free stacks per P: ~1 KiB a connection here
	h, reg := startParking(t)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("idle%03d", i)
	}
	h.users.edit(func(u *users) {
		for _, id := range ids {
			u.password[id] = "pw-" + id
		}
	})
	before, goroutines := stackInuse(), runtime.NumGoroutine()
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
	check := func(when string) {
		t.Helper()
		waitParked(t, reg, n)
		perConn := float64(stackInuse()-before) / n
		more := runtime.NumGoroutine() - goroutines
		t.Logf("idle connections %s: %d more goroutines, %.0f bytes of goroutine stack per connection", when, more, perConn)
		if more > n/20 {
			t.Errorf("%d goroutines more for %d idle connections %s, want none per connection", more, n, when)
		}
		if raceDetector {
			return // it doubles goroutine stacks; make test runs this test without it too
		}
		if perConn > 2<<10 {
			t.Errorf("%.0f bytes of goroutine stack per idle connection %s, want at most 2 KiB", perConn, when)
		}
	}
	check("after connecting")
	for _, c := range conns {
		if _, err := c.Write([]byte{0xC0, 0}); err != nil { // PINGREQ
			t.Fatal(err)
		}
	}
	for i, c := range conns {
		expect(t, c, []byte{0xD0, 0}, fmt.Sprintf("PINGRESP for %s", ids[i]))
	}
	check("after a ping")
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
