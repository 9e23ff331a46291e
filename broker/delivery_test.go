package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3packets "github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/broker"
)

// counter sums the samples of a counter family (every label set).
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// waitLong polls cond for up to a minute: these tests move thousands of
// messages on a shared machine. The deadline guards against a hang; it is
// not a timing assertion.
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFanInSaturationDeliversEveryAckedQoS1: many devices publish QoS 1 at
// once to two shared subscribers whose write buffers hold 4 packets and
// who do not read until every publish is acknowledged. Every PUBACKed
// message must reach a subscriber: those beyond the write buffer wait in
// the session queue instead of being dropped.
func TestFanInSaturationDeliversEveryAckedQoS1(t *testing.T) {
	t.Parallel()
	const devices, each = 20, 100
	reg := prometheus.NewRegistry()
	h := start(t, "", func(c *broker.Config) {
		c.Limits.MaxPendingWrites = 4
		c.Limits.MaxPendingBytes = 64 << 20 // backlog is not what this test is about
		c.Limits.MaxQueuedMessages = 10 * devices * each
		c.Registerer = reg
	})
	h.users.edit(func(u *users) {
		for i := range devices {
			u.password[fmt.Sprintf("pub%d", i)] = fmt.Sprintf("pw-pub%d", i)
		}
	})

	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	var mu sync.Mutex
	got := map[string]int{}
	for i := range 2 {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: conn,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				<-release // a consumer that falls behind
				mu.Lock()
				key, _, _ := bytes.Cut(pr.Packet.Payload, []byte(":"))
				got[string(key)]++
				mu.Unlock()
				return true, nil
			}}})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: fmt.Sprintf("app:reader:%d", i), KeepAlive: 30, CleanStart: true,
			Username: "app:reader", UsernameFlag: true, Password: []byte("pw-app:reader"), PasswordFlag: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/g/tele/+/#", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		cancel()
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
		t.Cleanup(free) // runs first: a blocked handler would hang Disconnect
	}

	filler := bytes.Repeat([]byte("x"), 4<<10)
	var acked sync.Map
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	for i := range devices {
		id := fmt.Sprintf("pub%d", i)
		c, _, err := dial5(t, h.addr, &paho.Connect{ClientID: id, Username: id, Password: []byte("pw-" + id), CleanStart: true})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range each {
				payload := fmt.Sprintf("%s-%d", id, n)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				// 4 KiB each: more than the subscribers' socket buffers hold.
				pr, err := c.Publish(ctx, &paho.Publish{Topic: "tele/" + id + "/x", QoS: 1, Payload: append([]byte(payload+":"), filler...)})
				cancel()
				if err != nil || pr.ReasonCode != 0 {
					errs <- fmt.Errorf("publish %s: %v: %w", payload, pr, err)
					return
				}
				acked.Store(payload, true)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The subscribers acknowledged nothing yet: every message is held for
	// them, far beyond their 4-slot write buffers and send quotas.
	if held := gauge(t, reg, "lastmile_broker_inflight_messages"); held != devices*each {
		t.Fatalf("broker holds %v messages for the stalled subscribers, want %d", held, devices*each)
	}
	free()

	waitLong(t, "every acknowledged message at a subscriber", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == devices*each
	})
	acked.Range(func(k, _ any) bool {
		mu.Lock()
		defer mu.Unlock()
		if got[k.(string)] == 0 {
			t.Errorf("acknowledged %s never delivered", k)
		}
		return true
	})
	if d := counter(t, reg, "lastmile_broker_deliveries_dropped_total", nil) + counter(t, reg, "lastmile_broker_inflight_dropped_total", nil); d != 0 {
		t.Errorf("%v deliveries dropped, want none", d)
	}
}

// stalled connects an MQTT 3.1.1 subscriber that never reads again, with a
// small receive buffer so that the broker's writes to it back up soon.
func stalled(t *testing.T, addr, clientID, filter string, qos byte) net.Conn {
	t.Helper()
	d := net.Dialer{Control: nil}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	t.Cleanup(func() { _ = conn.Close() })
	cp := paho3packets.NewControlPacket(paho3packets.Connect).(*paho3packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion, cp.CleanSession, cp.Keepalive = "MQTT", 4, true, 60
	cp.ClientIdentifier, cp.UsernameFlag, cp.Username, cp.PasswordFlag, cp.Password = clientID, true, "app:reader", true, []byte("pw-app:reader")
	if err := cp.Write(conn); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if pk, err := paho3packets.ReadPacket(conn); err != nil {
		t.Fatalf("CONNACK: %v", err)
	} else if ca, ok := pk.(*paho3packets.ConnackPacket); !ok || ca.ReturnCode != 0 {
		t.Fatalf("CONNACK: %v", pk)
	}
	sp := paho3packets.NewControlPacket(paho3packets.Subscribe).(*paho3packets.SubscribePacket)
	sp.MessageID, sp.Topics, sp.Qoss = 1, []string{filter}, []byte{qos}
	if err := sp.Write(conn); err != nil {
		t.Fatal(err)
	}
	if pk, err := paho3packets.ReadPacket(conn); err != nil {
		t.Fatalf("SUBACK: %v", err)
	} else if _, ok := pk.(*paho3packets.SubackPacket); !ok {
		t.Fatalf("SUBACK: %v", pk)
	}
	return conn // and never read again
}

// TestSlowConsumer: a subscriber that stops reading neither stalls the
// publisher nor another subscriber; its backlog is bounded and, per
// policy, dropped (counted) or the client is disconnected (counted).
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{broker.SlowConsumerDrop, broker.SlowConsumerDisconnect} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			// The bounds: a healthy subscriber never lags by 1000 messages
			// of a publisher that waits for each PUBACK; a stalled one
			// falls 2500 behind, 10 MB, more than socket buffers hold.
			const messages = 2500
			reg := prometheus.NewRegistry()
			h := start(t, "", func(c *broker.Config) {
				c.Limits.MaxPendingWrites = 8
				c.Limits.MaxQueuedMessages = 1000
				c.Limits.SlowConsumerPolicy = policy
				c.Registerer = reg
			})
			slowQoS0 := stalled(t, h.addr, "app:reader:slow0", "tele/+/#", 0)
			slowQoS1 := stalled(t, h.addr, "app:reader:slow1", "tele/+/#", 1)

			ok, _, err := dial5(t, h.addr, &paho.Connect{ClientID: "app:reader:ok", Username: "app:reader", Password: []byte("pw-app:reader"), CleanStart: true})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := ok.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "tele/+/#", QoS: 1}}}); err != nil {
				t.Fatal(err)
			}

			pub := device5(t, h.addr, "dev1")
			payload := bytes.Repeat([]byte("x"), 4<<10)
			for n := range messages {
				pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
				pr, err := pub.Publish(pctx, &paho.Publish{Topic: "tele/dev1/x", QoS: 1, Payload: append([]byte(fmt.Sprint(n, ":")), payload...)})
				pcancel()
				if err != nil || pr.ReasonCode != 0 {
					t.Fatalf("publish %d stalled or refused: %v %v", n, pr, err)
				}
			}
			waitLong(t, "every message at the healthy subscriber", func() bool { return len(ok.received()) == messages })

			switch policy {
			case broker.SlowConsumerDrop:
				dropped := counter(t, reg, "lastmile_broker_deliveries_dropped_total", nil) + counter(t, reg, "lastmile_broker_inflight_dropped_total", nil)
				if dropped == 0 {
					t.Error("nothing counted as dropped for the stalled subscribers")
				}
				// The QoS 0 subscriber's backlog exceeds max_pending_bytes,
				// which disconnects under any policy; the queue does not.
				if n := counter(t, reg, "lastmile_broker_slow_consumer_disconnects_total", map[string]string{"reason": "session_queue_full"}); n != 0 {
					t.Errorf("%v disconnects for a full queue under policy drop", n)
				}
			case broker.SlowConsumerDisconnect:
				waitLong(t, "both stalled subscribers disconnected", func() bool {
					return counter(t, reg, "lastmile_broker_slow_consumer_disconnects_total", nil) == 2
				})
				for _, c := range []net.Conn{slowQoS0, slowQoS1} {
					// Read what the kernel still holds, then the broker's close.
					_ = c.(*net.TCPConn).SetReadBuffer(4 << 20)
					_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
					if _, err := io.Copy(io.Discard, c); err != nil {
						t.Errorf("stalled subscriber's connection not closed by the broker: %v", err)
					}
				}
			}
		})
	}
}

// TestLargeAndSmallMessagesArriveWholeInOrder: a device publishes QoS 0
// and QoS 1 messages of 10 bytes to 200 KiB in turn. The broker writes a
// large payload with writev, uncopied, and a small one through the write
// buffer; the application must get every message whole and in order.
func TestLargeAndSmallMessagesArriveWholeInOrder(t *testing.T) {
	t.Parallel()
	h := start(t, "", nil)
	app, _, err := dial5(t, h.addr, &paho.Connect{ClientID: "app:reader", Username: "app:reader", Password: []byte("pw-app:reader"), CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "tele/+/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	dev := device5(t, h.addr, "dev1")

	sizes := []int{10, 200 << 10, 9 << 10, 100, 8 << 10, 64 << 10, 8<<10 - 1, 1, 150 << 10}
	var want []string
	for i := range 3 * len(sizes) {
		payload := make([]byte, sizes[i%len(sizes)])
		for j := range payload {
			payload[j] = byte(i + j*13)
		}
		topic := fmt.Sprintf("tele/dev1/m%d", i)
		want = append(want, topic+"="+string(payload))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := dev.Publish(ctx, &paho.Publish{Topic: topic, QoS: byte(i % 2), Payload: payload})
		cancel()
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	waitLong(t, "every message at the application", func() bool { return len(app.received()) >= len(want) })
	got := app.received()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d: got %d bytes (%.40q…), want %d bytes (%.40q…)", i, len(got[i]), got[i], len(want[i]), want[i])
		}
	}
}
