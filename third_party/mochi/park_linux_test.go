// SPDX-License-Identifier: MIT

package mqtt

// lastmile fork: the event loops that serve parked connections must never
// let one connection hold up the others — not a hook that blocks, whether
// or not it says so first (Client.WillBlock), nor a packet that arrives in
// pieces.

import (
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lastmile-dm/lastmile/third_party/mochi/packets"
)

// blockHook blocks the handling of a PUBLISH to "block" until release is
// closed, calling WillBlock first if announce is set.
type blockHook struct {
	HookBase
	announce bool
	release  chan struct{}
	entered  chan struct{}
	once     sync.Once
}

func (h *blockHook) ID() string { return "block" }

func (h *blockHook) Provides(b byte) bool { return b == OnPublish }

func (h *blockHook) OnPublish(cl *Client, pk packets.Packet) (packets.Packet, error) {
	if pk.TopicName == "block" {
		if h.announce {
			cl.WillBlock()
		}
		h.once.Do(func() { close(h.entered) })
		<-h.release
	}
	return pk, nil
}

// newParkingServer starts a server whose connections park, accepting on
// a loopback port, and returns that port's address.
func newParkingServer(t *testing.T, hooks ...Hook) (*Server, string) {
	t.Helper()
	return newParkingServerOn(t, func(c net.Conn) net.Conn { return c }, hooks...)
}

// backlogTCP is a TCP connection that reports no write backlog, as
// lastmile's does: deliveries to it are written from the publisher's read
// loop, held in its batch, not queued for a write goroutine.
type backlogTCP struct{ *net.TCPConn }

func (backlogTCP) WriteBacklog() int { return 0 }

// newParkingServerOn is newParkingServer with each accepted connection
// wrapped by wrap.
func newParkingServerOn(t *testing.T, wrap func(net.Conn) net.Conn, hooks ...Hook) (*Server, string) {
	t.Helper()
	s := New(&Options{ParkIdle: true})
	require.NoError(t, s.AddHook(new(AllowHook), nil))
	for _, h := range hooks {
		require.NoError(t, s.AddHook(h, nil))
	}
	require.NoError(t, s.Serve())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			s.EstablishConnectionThen("t1", wrap(c), func(error) { wg.Done() })
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		_ = s.Close()
		wg.Wait()
	})
	return s, ln.Addr().String()
}

// dialMQTT connects an MQTT 3.1.1 client with the given ID and waits for
// its CONNACK.
func dialMQTT(t *testing.T, addr, id string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, byte(len(id))}
	body = append(body, id...)
	_, err = c.Write(append([]byte{0x10, byte(len(body))}, body...))
	require.NoError(t, err)
	ack := make([]byte, 4)
	_, err = io.ReadFull(c, ack)
	require.NoError(t, err)
	require.Equal(t, []byte{0x20, 2, 0, 0}, ack, "CONNACK for "+id)
	return c
}

// publishQoS1 encodes a QoS 1 PUBLISH with packet ID 1.
func publishQoS1(topic, payload string) []byte {
	body := []byte{0, byte(len(topic))}
	body = append(body, topic...)
	body = append(body, 0, 1)
	body = append(body, payload...)
	return append([]byte{0x32, byte(len(body))}, body...)
}

func expectPuback(t *testing.T, c net.Conn, who string) {
	t.Helper()
	ack := make([]byte, 4)
	_, err := io.ReadFull(c, ack)
	require.NoError(t, err, who)
	require.Equal(t, []byte{0x40, 2, 0, 1}, ack, "PUBACK for "+who)
}

func waitParkedClients(t *testing.T, s *Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.ParkedClients() < n {
		require.True(t, time.Now().Before(deadline), "waiting for %d parked connections, have %d", n, s.ParkedClients())
		time.Sleep(time.Millisecond)
	}
}

// others are enough connections that some share the blocked one's poller,
// whatever the number of pollers (connections are spread round robin).
const others = 2*8 + 1

func TestEventLoopServesOthersWhileAHookBlocks(t *testing.T) {
	for _, announce := range []bool{true, false} {
		t.Run("WillBlock="+strconv.FormatBool(announce), func(t *testing.T) {
			t.Parallel()
			h := &blockHook{announce: announce, release: make(chan struct{}), entered: make(chan struct{})}
			s, addr := newParkingServer(t, h)
			var release sync.Once
			t.Cleanup(func() { release.Do(func() { close(h.release) }) }) // before the server's, if a check fails
			blocked := dialMQTT(t, addr, "blocked")
			conns := make([]net.Conn, others)
			for i := range conns {
				conns[i] = dialMQTT(t, addr, "c"+strconv.Itoa(i))
			}
			waitParkedClients(t, s, others+1)

			_, err := blocked.Write(publishQoS1("block", "x"))
			require.NoError(t, err)
			<-h.entered
			for i, c := range conns {
				_, err := c.Write(publishQoS1("free", "y"))
				require.NoError(t, err)
				expectPuback(t, c, "c"+strconv.Itoa(i))
			}
			release.Do(func() { close(h.release) })
			expectPuback(t, blocked, "blocked")
		})
	}
}

// queueHook blocks the handling of every PUBLISH to "block" until release
// is closed, telling entered each time, without calling WillBlock.
type queueHook struct {
	HookBase
	release chan struct{}
	entered chan string
}

func (h *queueHook) ID() string { return "queue-block" }

func (h *queueHook) Provides(b byte) bool { return b == OnPublish }

func (h *queueHook) OnPublish(cl *Client, pk packets.Packet) (packets.Packet, error) {
	if pk.TopicName == "block" {
		h.entered <- cl.ID
		<-h.release
	}
	return pk, nil
}

// TestWatchdogWritesOutWhatAStalledLoopHolds: a loop holds the replies of
// the connections it serves in a round until the round ends. When a hook
// that does not say it blocks holds the loop up in the middle of a round,
// the watchdog hands the rest of the round to a new loop, and must also
// write out the replies the stalled loop holds for the connections it
// served before: their clients would otherwise wait for the hook.
//
// Every loop is first held up by a blocking publish, so that the 40
// publishes below are all readable when the loops the watchdog starts
// look, and one round holds several of them; a second blocking publish
// comes three quarters of the way through.
func TestWatchdogWritesOutWhatAStalledLoopHolds(t *testing.T) {
	h := &queueHook{release: make(chan struct{}), entered: make(chan string, 64)}
	s, addr := newParkingServer(t, h)
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(h.release) }) })
	const nblockers = 16 // enough to find one on every poller (at most 8, round robin)
	blockers := make([]net.Conn, nblockers)
	for i := range blockers {
		blockers[i] = dialMQTT(t, addr, "b"+strconv.Itoa(i))
	}
	second := dialMQTT(t, addr, "second")
	conns := make([]net.Conn, 40)
	for i := range conns {
		conns[i] = dialMQTT(t, addr, "c"+strconv.Itoa(i))
	}
	waitParkedClients(t, s, int64(nblockers+1+len(conns)))

	p := s.getParkerIfStarted()
	used := map[*poller]bool{}
	var stalled []net.Conn
	for i, c := range blockers {
		cl, ok := s.Clients.Get("b" + strconv.Itoa(i))
		require.True(t, ok)
		if po := cl.Net.bconn.po; !used[po] {
			used[po] = true
			stalled = append(stalled, c)
			_, err := c.Write(publishQoS1("block", "x"))
			require.NoError(t, err)
			<-h.entered
		}
	}
	require.Len(t, used, len(p.polls), "a blocker on every poller")

	for i, c := range conns {
		if i == 3*len(conns)/4 {
			_, err := second.Write(publishQoS1("block", "y"))
			require.NoError(t, err)
		}
		_, err := c.Write(publishQoS1("free", "y"))
		require.NoError(t, err)
	}
	for i, c := range conns {
		expectPuback(t, c, "c"+strconv.Itoa(i))
	}
	release.Do(func() { close(h.release) })
	for i, c := range stalled {
		expectPuback(t, c, "blocker "+strconv.Itoa(i))
	}
	expectPuback(t, second, "second")
}

// TestEventLoopKeepsInputThatCameWhileItsReadLoopRanElsewhere: sockets are
// edge-triggered, so input that comes while a connection's read loop runs
// off the event loop (here, its hook blocks) is reported once, to a loop
// that cannot take the connection. The read loop must look at the socket
// again when it parks (connReader.pending), or that input waits for the
// next packet, which may never come.
func TestEventLoopKeepsInputThatCameWhileItsReadLoopRanElsewhere(t *testing.T) {
	for _, announce := range []bool{true, false} {
		t.Run("WillBlock="+strconv.FormatBool(announce), func(t *testing.T) {
			t.Parallel()
			h := &blockHook{announce: announce, release: make(chan struct{}), entered: make(chan struct{})}
			s, addr := newParkingServer(t, h)
			var release sync.Once
			t.Cleanup(func() { release.Do(func() { close(h.release) }) })
			c := dialMQTT(t, addr, "blocked")
			waitParkedClients(t, s, 1)

			_, err := c.Write(publishQoS1("block", "x"))
			require.NoError(t, err)
			<-h.entered
			_, err = c.Write(publishQoS1("free", "y"))
			require.NoError(t, err)
			cl, ok := s.Clients.Get("blocked")
			require.True(t, ok)
			deadline := time.Now().Add(20 * time.Second)
			for !cl.Net.bconn.pending.Load() { // an event loop saw the second PUBLISH
				require.True(t, time.Now().Before(deadline), "no event for the second PUBLISH")
				time.Sleep(time.Millisecond)
			}
			release.Do(func() { close(h.release) })
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second)) // a hang guard, not a timing
			expectPuback(t, c, "the blocked PUBLISH")
			expectPuback(t, c, "the PUBLISH that came while it blocked")
		})
	}
}

func TestEventLoopServesOthersWhileAPacketArrivesInPieces(t *testing.T) {
	for _, size := range []int{
		1500,       // straddles the end of a pooled read buffer
		10 << 10,   // read into a buffer of its own
		1200 << 10, // larger than the event loop assembles: read off the loop (the watchdog would cover it too)
	} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			t.Parallel()
			s, addr := newParkingServer(t)
			sub := dialMQTT(t, addr, "sub")
			subscribeQoS0(t, sub, "split")
			slow := dialMQTT(t, addr, "slow")
			conns := make([]net.Conn, others)
			for i := range conns {
				conns[i] = dialMQTT(t, addr, "c"+strconv.Itoa(i))
			}
			waitParkedClients(t, s, others+2)

			payload := make([]byte, size)
			for i := range payload {
				payload[i] = byte(i * 7)
			}
			pk := publishQoS1Long("split", payload)
			_, err := slow.Write(pk[:1024])
			require.NoError(t, err)
			for i, c := range conns {
				_, err := c.Write(publishQoS1("free", "y"))
				require.NoError(t, err)
				expectPuback(t, c, "c"+strconv.Itoa(i))
			}
			_, err = slow.Write(pk[1024:])
			require.NoError(t, err)
			expectPuback(t, slow, "slow")
			require.Equal(t, payload, readPublish(t, sub, "split"), "the payload as published")
			waitParkedClients(t, s, others+2)
		})
	}
}

// TestLargeFanoutWrittenAheadArrivesWholeAndInOrder: a large fan-out
// that follows a quiet spell is written as it goes, chunk by chunk, by a
// goroutine of its own while the event loop encodes the next chunk
// (writeBatch.flushAhead); fan-outs in quick succession are written as a
// batch. Either way every subscriber gets every message, whole and in
// order (and the race detector watches the hand-over of chunks).
func TestLargeFanoutWrittenAheadArrivesWholeAndInOrder(t *testing.T) {
	s, addr := newParkingServerOn(t, func(c net.Conn) net.Conn { return backlogTCP{c.(*net.TCPConn)} })
	subs := make([]net.Conn, 3*flushDirty+5) // several chunks and a remainder
	for i := range subs {
		subs[i] = dialMQTT(t, addr, "s"+strconv.Itoa(i))
		subscribeQoS0(t, subs[i], "fan")
	}
	pub := dialMQTT(t, addr, "pub")
	waitParkedClients(t, s, int64(len(subs)+1))

	before := flushedAhead.Load()
	var want []string
	send := func(payload string) {
		_, err := pub.Write(publishQoS0("fan", payload))
		require.NoError(t, err)
		want = append(want, payload)
	}
	for i := range 3 { // quiet spells: written ahead
		send("quiet " + strconv.Itoa(i))
		time.Sleep(2 * fanoutQuiet)
	}
	for i := range 30 { // back to back: written as batches
		send("burst " + strconv.Itoa(i))
	}
	for i, c := range subs {
		for _, w := range want {
			require.Equal(t, w, string(readPublish(t, c, "fan")), "subscriber %d", i)
		}
	}
	require.GreaterOrEqual(t, flushedAhead.Load()-before, int64(3*3), "the quiet fan-outs were written ahead, three chunks each")
}

// publishQoS0 encodes a QoS 0 PUBLISH.
func publishQoS0(topic, payload string) []byte {
	body := []byte{0, byte(len(topic))}
	body = append(body, topic...)
	body = append(body, payload...)
	return append([]byte{0x30, byte(len(body))}, body...)
}

// subscribeQoS0 subscribes c to filter at QoS 0 and waits for the SUBACK.
func subscribeQoS0(t *testing.T, c net.Conn, filter string) {
	t.Helper()
	body := []byte{0, 1, 0, byte(len(filter))}
	body = append(body, filter...)
	body = append(body, 0)
	_, err := c.Write(append([]byte{0x82, byte(len(body))}, body...))
	require.NoError(t, err)
	ack := make([]byte, 5)
	_, err = io.ReadFull(c, ack)
	require.NoError(t, err)
	require.Equal(t, []byte{0x90, 3, 0, 1, 0}, ack, "SUBACK")
}

// readPublish reads a QoS 0 PUBLISH to topic from c and returns its payload.
func readPublish(t *testing.T, c net.Conn, topic string) []byte {
	t.Helper()
	var hdr [1]byte
	_, err := io.ReadFull(c, hdr[:])
	require.NoError(t, err)
	require.Equal(t, byte(0x30), hdr[0], "a QoS 0 PUBLISH")
	n, mul := 0, 1
	for {
		_, err := io.ReadFull(c, hdr[:])
		require.NoError(t, err)
		n += int(hdr[0]&127) * mul
		if hdr[0]&128 == 0 {
			break
		}
		mul *= 128
	}
	body := make([]byte, n)
	_, err = io.ReadFull(c, body)
	require.NoError(t, err)
	require.Equal(t, topic, string(body[2:2+len(topic)]))
	return body[2+len(topic):]
}

// publishQoS1Long is publishQoS1 for a payload of any size.
func publishQoS1Long(topic string, payload []byte) []byte {
	body := []byte{0, byte(len(topic))}
	body = append(body, topic...)
	body = append(body, 0, 1)
	body = append(body, payload...)
	b := []byte{0x32}
	for n := len(body); ; { // the remaining length, a variable byte integer
		d := byte(n % 128)
		if n /= 128; n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			break
		}
	}
	return append(b, body...)
}
