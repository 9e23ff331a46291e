package broker_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/broker"
)

// An idle plain-TCP connection gives up its goroutine (the mochi fork's
// parking, docs/performance.md). These tests drive parked connections
// through everything a connection can meet — deliveries, its own packets,
// a take-over, an admin kick, a peer that vanishes, an expired keepalive,
// a broker shutdown — and check that each is served as if it had never
// parked. lastmile_broker_parked_connections shows that they had.

const parkedGauge = "lastmile_broker_parked_connections"

func startParking(t *testing.T, ids ...string) (*harness, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	h := start(t, "", func(c *broker.Config) { c.Registerer = reg })
	h.users.edit(func(u *users) {
		for _, id := range ids {
			u.password[id] = "pw-" + id
		}
	})
	return h, reg
}

func waitParked(t *testing.T, reg *prometheus.Registry, n int) {
	t.Helper()
	waitLong(t, fmt.Sprintf("%d parked connections", n), func() bool { return gauge(t, reg, parkedGauge) == float64(n) })
}

func TestParkedConnectionsServeEverything(t *testing.T) {
	t.Parallel()
	const n = 20
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("park%02d", i)
	}
	h, reg := startParking(t, ids...)
	app, _, err := dial5(t, h.addr, &paho.Connect{ClientID: "app", Username: "app:reader", Password: []byte("pw-app:reader"), CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	subscribe5(t, app, "tele/+/up", 1)
	devs := make([]*client5, n)
	for i, id := range ids {
		devs[i] = longDevice5(t, h.addr, id)
		subscribe5(t, devs[i], "tele/"+id+"/in", 1)
	}
	waitParked(t, reg, n+1)

	// Deliveries to parked subscribers: written from the publisher's side,
	// acknowledged by the devices (QoS 1), which wakes each of them.
	for _, id := range ids {
		if err := h.srv.Publish("tele/"+id+"/in", []byte("to-"+id), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ids {
		waitLong(t, id+" to receive", func() bool { return slices.Contains(devs[i].received(), "tele/"+id+"/in=to-"+id) })
	}
	waitParked(t, reg, n+1)

	// Packets from parked devices wake them; the parked application gets
	// every one.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, id := range ids {
		if _, err := devs[i].Publish(ctx, &paho.Publish{Topic: "tele/" + id + "/up", QoS: 1, Payload: []byte("from-" + id)}); err != nil {
			t.Fatalf("%s publish: %v", id, err)
		}
	}
	waitLong(t, "the application to receive every device's message", func() bool { return len(app.received()) == n })
	waitParked(t, reg, n+1)

	// A take-over of a parked connection: the old one ends (its presence
	// record closes), the new one is served.
	old, _ := h.presence.current(ids[0])
	takeover := longDevice5(t, h.addr, ids[0])
	waitLong(t, "the old connection's end", func() bool {
		h.presence.mu.Lock()
		defer h.presence.mu.Unlock()
		return strings.Contains(strings.Join(h.presence.events, "\n"), fmt.Sprintf("disconnected %s %d ", ids[0], old))
	})
	select {
	case <-devs[0].gone:
	case <-devs[0].Done():
	case <-time.After(10 * time.Second):
		t.Fatal("parked connection still open after a take-over")
	}
	subscribe5(t, takeover, "tele/"+ids[0]+"/in", 1)

	// An administrative kick of a parked connection.
	waitParked(t, reg, n+1)
	if got := h.srv.KickPrincipal(ids[1], "test"); got != 1 {
		t.Fatalf("KickPrincipal = %d, want 1", got)
	}
	select {
	case d := <-devs[1].gone:
		if d.ReasonCode != 0x98 {
			t.Errorf("kicked device got reason %#x, want 0x98", d.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kicked parked device was not disconnected")
	}
	waitParked(t, reg, n)

	// Shutdown with every connection parked returns, and ends them all.
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := h.srv.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown with parked connections: %v", err)
	}
	if got := gauge(t, reg, parkedGauge); got != 0 {
		t.Errorf("%s = %v after shutdown, want 0", parkedGauge, got)
	}
	for i := 2; i < n; i++ {
		select {
		case <-devs[i].gone:
		case <-devs[i].Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s not disconnected by shutdown", ids[i])
		}
	}
}

// TestParkedConnectionEnds covers the ends a parked connection meets
// without a packet: the peer vanishing (its will goes out) and the
// keepalive running out (the broker closes it, and its will goes out).
func TestParkedConnectionEnds(t *testing.T) {
	t.Parallel()
	h, reg := startParking(t, "gone1", "quiet1")
	app, _, err := dial5(t, h.addr, &paho.Connect{ClientID: "app", Username: "app:reader", Password: []byte("pw-app:reader"), CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	subscribe5(t, app, "tele/+/will", 1)

	gone := dialRaw(t, h.addr)
	rawConnectWill(t, gone, "gone1", 60)
	quiet := dialRaw(t, h.addr)
	rawConnectWill(t, quiet, "quiet1", 3) // the broker waits 1.5 × 3 s
	waitParked(t, reg, 3)

	_ = gone.Close() // no DISCONNECT: the will is due
	waitLong(t, "gone1's will", func() bool { return slices.Contains(app.received(), "tele/gone1/will=gone1 lost") })

	_ = quiet.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadAll(quiet); err != nil {
		t.Fatalf("quiet1: want the broker to close the connection at keepalive expiry, got %v", err)
	}
	waitLong(t, "quiet1's will", func() bool { return slices.Contains(app.received(), "tele/quiet1/will=quiet1 lost") })
	waitParked(t, reg, 1) // the application
}

// rawConnectWill sends an MQTT 3.1.1 CONNECT with a QoS 0 will to
// tele/{id}/will ("{id} lost") and the given keepalive, and expects
// CONNACK accepted.
func rawConnectWill(t *testing.T, c net.Conn, id string, keepalive uint16) {
	t.Helper()
	str := func(b []byte, s string) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s))) //nolint:gosec // short test strings
		return append(b, s...)
	}
	body := str(nil, "MQTT")
	body = append(body, 4, 0xC6) // level 4; username, password, will (QoS 0), clean
	body = binary.BigEndian.AppendUint16(body, keepalive)
	body = str(body, id)
	body = str(body, "tele/"+id+"/will")
	body = str(body, id+" lost")
	body = str(body, id)
	body = str(body, "pw-"+id)
	pk := append([]byte{0x10, byte(len(body))}, body...)
	if _, err := c.Write(pk); err != nil {
		t.Fatal(err)
	}
	expect(t, c, []byte{0x20, 2, 0, 0}, "CONNACK accepted for "+id)
}

func subscribe5(t *testing.T, c *client5, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] != qos {
		t.Fatalf("subscribe %s: %v %+v", filter, err, sa)
	}
}

// longDevice5 is device5 with a keepalive of 10 minutes: the keepalive
// timer of a parked connection, which ends it too, then cannot stand in
// for the wake under test within waitLong's minute.
func longDevice5(t *testing.T, addr, id string) *client5 {
	t.Helper()
	c, _, err := dial5(t, addr, &paho.Connect{ClientID: id, Username: id, Password: []byte("pw-" + id), CleanStart: true, KeepAlive: 600})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return c
}
