// SPDX-License-Identifier: MIT

package mqtt

// lastmile fork: tests of the client write path (clientio.go).

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/third_party/mochi/packets"
	"github.com/lastmile-dm/lastmile/third_party/mochi/system"

	"github.com/stretchr/testify/require"
)

// scriptConn is a non-blocking connection (a WriteBacklogger with an empty
// backlog) that serves reads from a script of chunks and records every
// read and write in order.
type scriptConn struct {
	net.Conn // nil: only what is overridden is used

	mu     sync.Mutex
	chunks [][]byte
	events []string
	out    bytes.Buffer
	writes int
}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, "read")
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, fmt.Sprintf("write %d", len(p)))
	c.writes++
	return c.out.Write(p)
}

func (c *scriptConn) WriteBacklog() int                { return 0 }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(t time.Time) error    { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

func newScriptClient(c net.Conn) *Client {
	cl := newClient(c, &ops{
		info:  new(system.Info),
		hooks: new(Hooks),
		log:   logger,
		options: &Options{
			ClientNetReadBufferSize: 1024,
			Capabilities: &Capabilities{
				MaximumClientWritesPending: 8,
				maximumPacketID:            10,
			},
		},
	})
	cl.ID = "fork"
	return cl
}

var pingresp = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingresp}}

// A read loop holds its replies while more input is buffered and writes
// them with one write before it reads the socket again; a lone packet is
// answered at once (before the next read), so nothing waits.
func TestReadLoopCoalescesReplies(t *testing.T) {
	pingreq := []byte{0xC0, 0x00}
	conn := &scriptConn{chunks: [][]byte{
		bytes.Repeat(pingreq, 3), // three packets in one read
		pingreq,                  // then one alone
	}}
	cl := newScriptClient(conn)
	require.Nil(t, cl.State.outbound, "a non-blocking connection gets no outbound channel")

	err := cl.Read(func(cl *Client, pk packets.Packet) error {
		require.Equal(t, packets.Pingreq, pk.FixedHeader.Type)
		return cl.reply(pingresp)
	})
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, []string{"read", "write 6", "read", "write 2", "read"}, conn.events)
	require.Equal(t, bytes.Repeat([]byte{0xD0, 0x00}, 4), conn.out.Bytes())
}

// A write from another goroutine is not held by a read loop: it flushes at
// once, together with (and after) what the read loop holds, so the order on
// the wire is the order of the writes.
func TestWriteFlushesHeldReplies(t *testing.T) {
	conn := &scriptConn{}
	cl := newScriptClient(conn)
	b := new(writeBatch)
	require.NoError(t, cl.writePacket(pingresp, b))
	require.Equal(t, 0, conn.writes, "held by the batch")
	require.Len(t, b.dirty, 1)

	pub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "a"}
	require.NoError(t, cl.WritePacket(pub))
	require.Equal(t, 1, conn.writes)
	require.Equal(t, []byte{0xD0, 0x00, 0x30, 0x03, 0x00, 0x01, 'a'}, conn.out.Bytes())

	b.flush() // nothing left: no empty write
	require.Equal(t, 1, conn.writes)
}

// Concurrent writers to one client, some held in a batch, some not: every
// writer's packets arrive complete and in the order it wrote them.
func TestConcurrentWritesKeepOrder(t *testing.T) {
	conn := &scriptConn{}
	cl := newScriptClient(conn)
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b *writeBatch
			if w%2 == 0 {
				b = new(writeBatch) // a read loop's batch
			}
			for i := range each {
				pk := packets.Packet{
					FixedHeader: packets.FixedHeader{Type: packets.Publish},
					TopicName:   fmt.Sprintf("w%d", w),
					Payload:     fmt.Appendf(nil, "%d", i),
				}
				require.NoError(t, cl.writePacket(pk, b))
				if b != nil && i%7 == 0 {
					b.flush()
				}
			}
			if b != nil {
				b.flush()
			}
		}()
	}
	wg.Wait()

	next := map[string]int{}
	r := bytes.NewReader(conn.out.Bytes())
	for r.Len() > 0 {
		var fh packets.FixedHeader
		hb, err := r.ReadByte()
		require.NoError(t, err)
		require.NoError(t, fh.Decode(hb))
		fh.Remaining, _, err = packets.DecodeLength(r)
		require.NoError(t, err)
		body := make([]byte, fh.Remaining)
		_, err = io.ReadFull(r, body)
		require.NoError(t, err)
		pk := packets.Packet{FixedHeader: fh, ProtocolVersion: 4}
		require.NoError(t, pk.PublishDecode(body))
		require.Equal(t, fmt.Sprint(next[pk.TopicName]), string(pk.Payload), "writer %s out of order", pk.TopicName)
		next[pk.TopicName]++
	}
	require.Len(t, next, writers)
	for w, n := range next {
		require.Equal(t, each, n, "writer %s", w)
	}
}

// A connection whose writes may block (net.Pipe) keeps upstream's outbound
// channel; its WriteLoop writes what is queued with one write.
func TestWriteLoopCoalescesQueued(t *testing.T) {
	r, w := net.Pipe()
	defer r.Close()
	cl := newScriptClient(w)
	require.NotNil(t, cl.State.outbound)
	for range 3 {
		pk := pingresp
		cl.State.outbound <- &pk
	}
	go cl.WriteLoop()
	defer cl.Stop(errClientStop)

	buf := make([]byte, 64)
	n, err := r.Read(buf)
	require.NoError(t, err)
	require.Equal(t, bytes.Repeat([]byte{0xD0, 0x00}, 3), buf[:n])
}

// On a real socket the reader drives the file descriptor itself (holding
// no buffer while it waits): packets split over reads, larger than the
// buffer, and several in one read all arrive intact, and replies go out.
func TestConnReaderOnSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer peer.Close()
	srv, err := ln.Accept()
	require.NoError(t, err)
	defer srv.Close()

	cl := newScriptClient(srv)
	require.NotNil(t, cl.Net.bconn.rc, "a TCP socket is read through its raw connection")

	big := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "big", Payload: bytes.Repeat([]byte("x"), 5000)}
	var enc bytes.Buffer
	require.NoError(t, big.PublishEncode(&enc))
	stream := append(enc.Bytes(), 0xC0, 0x00, 0xC0, 0x00)
	go func() {
		// in two pieces, the first ending inside the big packet's header
		_, _ = peer.Write(stream[:2])
		_, _ = peer.Write(stream[2:])
	}()

	var got []packets.Packet
	done := make(chan error, 1)
	go func() {
		done <- cl.Read(func(cl *Client, pk packets.Packet) error {
			got = append(got, pk)
			if pk.FixedHeader.Type == packets.Pingreq {
				return cl.reply(pingresp)
			}
			return nil
		})
	}()
	resp := make([]byte, 4)
	_, err = io.ReadFull(peer, resp)
	require.NoError(t, err)
	require.Equal(t, []byte{0xD0, 0x00, 0xD0, 0x00}, resp)
	_ = peer.Close()
	require.ErrorIs(t, <-done, io.EOF)
	require.Len(t, got, 3)
	require.Equal(t, "big", got[0].TopicName)
	require.Equal(t, big.Payload, got[0].Payload)
}

// countingHook provides OnPacketSent only and counts how often it is asked.
type countingHook struct {
	HookBase
	asked, sent int
}

func (h *countingHook) Provides(b byte) bool { h.asked++; return b == OnPacketSent }
func (h *countingHook) OnPacketSent(*Client, packets.Packet, []byte) {
	h.sent++
}

// fork: an event asks only the hooks that provide it, decided once in Add.
func TestHooksAskOnlyProviders(t *testing.T) {
	h := &Hooks{Log: logger}
	ch := new(countingHook)
	require.NoError(t, h.Add(ch, nil))
	asked := ch.asked // Add's survey of every event
	h.OnPacketRead(nil, packets.Packet{})
	h.OnPacketProcessed(nil, packets.Packet{}, nil)
	h.OnPacketSent(nil, packets.Packet{}, nil)
	require.Equal(t, 1, ch.sent)
	require.Equal(t, asked+1, ch.asked, "only the event it provides asks it (once)")
}
