package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3packets "github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/lastmile-dm/lastmile/broker"
)

// rawDevice connects an MQTT 3.1.1 device on a raw socket, so that a test
// can pipeline many packets into one write (the broker then handles them
// from one read, holding its writes).
func rawDevice(t *testing.T, addr, id string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cp := paho3packets.NewControlPacket(paho3packets.Connect).(*paho3packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion, cp.CleanSession, cp.Keepalive = "MQTT", 4, true, 60
	cp.ClientIdentifier, cp.UsernameFlag, cp.Username, cp.PasswordFlag, cp.Password = id, true, id, true, []byte("pw-"+id)
	if err := cp.Write(conn); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if pk, err := paho3packets.ReadPacket(conn); err != nil {
		t.Fatalf("CONNACK: %v", err)
	} else if ca, ok := pk.(*paho3packets.ConnackPacket); !ok || ca.ReturnCode != 0 {
		t.Fatalf("CONNACK: %v", pk)
	}
	return conn
}

// TestPipelinedPublishersKeepOrder: several devices each write bursts of
// QoS 1 and QoS 0 publishes in single writes, all at once; a subscriber
// gets every QoS 1 message of each device exactly in the order it was
// published (MQTT's per-publisher ordering), and each device gets a PUBACK
// for every QoS 1 message, in order. This is the path where the broker
// holds a read loop's acknowledgements and deliveries and writes them per
// batch, with several publishers writing to the same subscriber at once.
func TestPipelinedPublishersKeepOrder(t *testing.T) {
	t.Parallel()
	const devices, bursts, perBurst = 4, 20, 25
	h := start(t, "", func(c *broker.Config) {
		// Only the write path is under test. On a loaded machine the
		// subscriber falls behind: its unacknowledged messages must not
		// reach the session queue's bound (dropped by policy, counted) nor
		// the write buffer's (requeued, which does not keep order; see
		// docs/performance.md).
		c.Limits.MaxPendingWrites = 1 << 20
		c.Limits.MaxPendingBytes = 64 << 20
		c.Limits.MaxQueuedMessages = 10 * devices * bursts * perBurst
	})
	h.users.edit(func(u *users) {
		for i := range devices {
			u.password[fmt.Sprintf("pub%d", i)] = fmt.Sprintf("pw-pub%d", i)
		}
	})
	sub := device5(t, h.addr, "app:reader")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "tele/+/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, devices)
	for d := range devices {
		id := fmt.Sprintf("pub%d", d)
		conn := rawDevice(t, h.addr, id)
		wg.Add(2)
		go func() { // publisher: bursts of pipelined packets
			defer wg.Done()
			seq := 0
			for range bursts {
				var burst bytes.Buffer
				for range perBurst {
					pp := paho3packets.NewControlPacket(paho3packets.Publish).(*paho3packets.PublishPacket)
					pp.TopicName, pp.Qos, pp.MessageID = "tele/"+id+"/seq", 1, uint16(seq%60000+1)
					pp.Payload = []byte(strconv.Itoa(seq))
					_ = pp.Write(&burst)
					q0 := paho3packets.NewControlPacket(paho3packets.Publish).(*paho3packets.PublishPacket)
					q0.TopicName, q0.Payload = "tele/"+id+"/q0", []byte("x")
					_ = q0.Write(&burst)
					seq++
				}
				if _, err := conn.Write(burst.Bytes()); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() { // its PUBACKs, in order
			defer wg.Done()
			for want := range bursts * perBurst {
				pk, err := paho3packets.ReadPacket(conn)
				if err != nil {
					errs <- fmt.Errorf("%s: PUBACK %d: %w", id, want, err)
					return
				}
				pa, ok := pk.(*paho3packets.PubackPacket)
				if !ok || pa.MessageID != uint16(want%60000+1) {
					errs <- fmt.Errorf("%s: want PUBACK %d, got %v", id, want+1, pk)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	total := devices * bursts * perBurst
	count := func() int {
		n := 0
		for _, m := range sub.received() {
			if strings.Contains(m, "/seq=") {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for count() < total {
		if time.Now().After(deadline) {
			seen := map[string][]int{}
			for _, m := range sub.received() {
				topic, payload, _ := strings.Cut(m, "=")
				if strings.HasSuffix(topic, "/seq") {
					n, _ := strconv.Atoi(payload)
					seen[topic] = append(seen[topic], n)
				}
			}
			for topic, ns := range seen {
				var missing []int
				next := 0
				for _, n := range ns {
					for ; next < n; next++ {
						missing = append(missing, next)
					}
					next = n + 1
				}
				for ; next < bursts*perBurst; next++ {
					missing = append(missing, next)
				}
				t.Logf("%s: %d received, missing %v", topic, len(ns), missing)
			}
			t.Fatalf("%d of %d QoS 1 messages at the subscriber", count(), total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	next := map[string]int{}
	for _, m := range sub.received() {
		topic, payload, _ := strings.Cut(m, "=")
		if !strings.HasSuffix(topic, "/seq") {
			continue
		}
		n, _ := strconv.Atoi(payload)
		if n != next[topic] {
			t.Fatalf("%s: got message %d, want %d (out of order or lost)", topic, n, next[topic])
		}
		next[topic]++
	}
	for topic, n := range next {
		if n != bursts*perBurst {
			t.Errorf("%s: %d messages, want %d", topic, n, bursts*perBurst)
		}
	}
}

// TestNonReadingSubscriberNeverBlocksPublisher: a subscriber that stops
// reading, with the broker's default limits, never holds up a publisher:
// every publish is acknowledged while the subscriber's socket is full.
func TestNonReadingSubscriberNeverBlocksPublisher(t *testing.T) {
	t.Parallel()
	h := start(t, "", func(c *broker.Config) {
		c.Limits.MaxPendingBytes = 64 << 20 // keep it connected: only the publisher's progress is tested
	})
	_ = stalled(t, h.addr, "app:reader:stalled", "tele/#", 0)
	pub := rawDevice(t, h.addr, "dev1")
	payload := bytes.Repeat([]byte("y"), 8<<10)
	const messages = 1000 // 8 MB: far more than the socket buffers hold
	done := make(chan error, 1)
	go func() {
		for i := range messages {
			pp := paho3packets.NewControlPacket(paho3packets.Publish).(*paho3packets.PublishPacket)
			pp.TopicName, pp.Qos, pp.MessageID, pp.Payload = "tele/dev1/x", 1, uint16(i+1), payload
			if err := pp.Write(pub); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := range messages {
		_ = pub.SetReadDeadline(time.Now().Add(30 * time.Second))
		pk, err := paho3packets.ReadPacket(pub)
		if err != nil {
			t.Fatalf("PUBACK %d: %v (publisher blocked behind the stalled subscriber?)", i+1, err)
		}
		if pa, ok := pk.(*paho3packets.PubackPacket); !ok || pa.MessageID != uint16(i+1) {
			t.Fatalf("want PUBACK %d, got %v", i+1, pk)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
