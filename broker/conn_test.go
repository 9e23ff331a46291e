package broker

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// backlogPair returns a backlogConn accepted from a real loopback socket,
// limited to limit backlog bytes, and the peer's end.
func backlogPair(t *testing.T, limit int) (*backlogConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bl := &backlogListener{Listener: ln, limit: limit}
	t.Cleanup(func() { _ = bl.Close() })
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	c, err := bl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	bc, ok := c.(*backlogConn)
	if !ok {
		t.Fatalf("accepted %T, want *backlogConn", c)
	}
	return bc, peer
}

// pattern returns n bytes that tell the i-th write apart from the others.
func pattern(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i*31 + j*7)
	}
	return b
}

// TestWriteBuffersKeepOrderThroughBacklog interleaves vectored and plain
// writes to a peer that does not read until far more than the socket
// buffers hold has been written: every byte must arrive, in the order of
// the writes, whether the socket took it at once, part-way through a
// buffer, or from the backlog.
func TestWriteBuffersKeepOrderThroughBacklog(t *testing.T) {
	t.Parallel()
	c, peer := backlogPair(t, 64<<20)
	// Smaller socket buffers, so that the backlog is reached soon (not
	// much smaller: with a receive buffer far under loopback's 64 KiB MSS
	// the kernel's sender stalls on zero-window probes).
	if err := peer.(*net.TCPConn).SetReadBuffer(256 << 10); err != nil {
		t.Fatal(err)
	}
	if err := c.Conn.(*net.TCPConn).SetWriteBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}

	var want bytes.Buffer
	for i := 0; i < 200; i++ {
		switch i % 3 {
		case 0:
			b := pattern(i, 5+i%7)
			want.Write(b)
			if n, err := c.Write(b); err != nil || n != len(b) {
				t.Fatalf("write %d: n=%d err=%v", i, n, err)
			}
		default:
			bufs := [][]byte{pattern(i, 3+i%5), nil, pattern(i+1, 20000+i*97)}
			total := 0
			for _, b := range bufs {
				want.Write(b)
				total += len(b)
			}
			if n, err := c.WriteBuffers(bufs); err != nil || n != total {
				t.Fatalf("writev %d: n=%d err=%v", i, n, err)
			}
			for _, b := range bufs { // the conn must not keep them
				for j := range b {
					b[j] = 0xff
				}
			}
		}
	}
	if c.WriteBacklog() == 0 {
		t.Fatalf("wrote %d bytes to a peer that was not reading and left no backlog: the test did not reach the backlog path", want.Len())
	}

	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatalf("read %d bytes: %v", len(got), err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		i := 0
		for i < len(got) && got[i] == want.Bytes()[i] {
			i++
		}
		t.Fatalf("the peer got other bytes than were written, first difference at byte %d of %d", i, len(got))
	}
}

// TestWriteBuffersBeyondLimitFailsTheConnection: a vectored write that
// would take the backlog past its limit fails with errWriteBacklog and
// closes the connection, as a plain write does.
func TestWriteBuffersBeyondLimitFailsTheConnection(t *testing.T) {
	t.Parallel()
	c, _ := backlogPair(t, 1<<20)
	big := make([]byte, 256<<10)
	var err error
	for i := 0; i < 200 && err == nil; i++ {
		_, err = c.WriteBuffers([][]byte{{1, 2, 3}, big})
	}
	if !errors.Is(err, errWriteBacklog) {
		t.Fatalf("writes to a peer that never reads: err = %v, want %v", err, errWriteBacklog)
	}
	if _, err := c.Write([]byte{1}); err == nil {
		t.Fatal("a write after the failure succeeded")
	}
}

// TestWriteAllocations: a write to a keeping-up socket is on every
// client's hot path; it allocates the writev and the callback the raw
// connection needs, nothing per buffer.
func TestWriteAllocations(t *testing.T) {
	c, peer := backlogPair(t, 64<<20)
	go func() { _, _ = io.Copy(io.Discard, peer) }()
	b := make([]byte, 100)
	if a := testing.AllocsPerRun(1000, func() { _, _ = c.Write(b) }); a > 2 {
		t.Fatalf("%v allocations per Write, want at most 2", a)
	}
	if a := testing.AllocsPerRun(1000, func() { _, _ = c.WriteBuffers([][]byte{b[:10], b}) }); a > 2 {
		t.Fatalf("%v allocations per WriteBuffers, want at most 2", a)
	}
}

// TestWritesNeverWaitForADrain: while the drain goroutine waits, in the
// kernel, for a peer that does not read (holding the socket's write lock),
// concurrent writers must neither block nor interleave their bytes: an
// event loop writing a batch of deliveries would otherwise wait with it,
// and every client whose deliveries it holds with it. Every byte arrives,
// in order, once the peer reads.
func TestWritesNeverWaitForADrain(t *testing.T) {
	t.Parallel()
	c, peer := backlogPair(t, 256<<20)
	if err := peer.(*net.TCPConn).SetReadBuffer(256 << 10); err != nil {
		t.Fatal(err)
	}
	if err := c.Conn.(*net.TCPConn).SetWriteBuffer(256 << 10); err != nil {
		t.Fatal(err)
	}
	const writers, each, size = 8, 1000, 1 << 10
	var want bytes.Buffer
	mu := make(chan struct{}, 1) // one write at a time, as mochi's wmu has it, so that the order is known
	mu <- struct{}{}
	done := make(chan struct{}, writers)
	for w := range writers {
		go func() {
			for i := range each {
				<-mu
				b := pattern(w*each+i, size)
				want.Write(b)
				if _, err := c.WriteBuffers([][]byte{b[:size/2], b[size/2:]}); err != nil {
					t.Error(err)
				}
				mu <- struct{}{}
			}
			done <- struct{}{}
		}()
	}
	// The peer reads nothing until every write has returned: a write that
	// waited for the drain would wait for good.
	for range writers {
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatal("a write is waiting for the drain, which waits for the peer")
		}
	}
	if c.WriteBacklog() == 0 {
		t.Fatal("the peer took everything: the drain never had to wait")
	}
	got := make([]byte, want.Len())
	_ = peer.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("the bytes arrived out of order or altered")
	}
}
