// SPDX-License-Identifier: MIT

package mqtt

// lastmile fork: the client write path (see FORK.md).
//
// Every packet for a client is encoded and appended to the client's write
// buffer (Net.wbuf) under its write lock, and the buffer is written to the
// connection in order. A write made by a client's own read loop while that
// loop still has input buffered — its acknowledgements, and the deliveries
// of the messages it publishes — is held and written when the read loop has
// consumed its input, right before it reads from the socket again: one
// write(2) per batch instead of one per packet. Every other write flushes
// the buffer at once, including whatever a read loop is holding, so order
// is always the order of appends.
//
// On a connection whose writes never block (one that implements
// WriteBacklogger, directly or under a NetConn wrapper such as tls.Conn),
// deliveries are written from the publisher's goroutine: the client has no
// outbound channel and no write goroutine. Any other connection keeps
// upstream's channel and WriteLoop goroutine, so a blocking connection
// never blocks a publisher.

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lastmile-dm/lastmile/third_party/mochi/mempool"
	"github.com/lastmile-dm/lastmile/third_party/mochi/packets"
)

// WriteBacklogger is implemented by connections whose Write never blocks:
// what the socket does not take at once is kept in a backlog, written out
// in the background. WriteBacklog returns the bytes waiting there.
type WriteBacklogger interface {
	WriteBacklog() int
}

// maxHeldBytes bounds what a read loop holds for one client before it
// writes anyway.
const maxHeldBytes = 64 << 10

// maxPooledWriteBuffer is the largest write buffer returned to the pool.
const maxPooledWriteBuffer = 64 << 10

// writeBuffers holds encode and write buffers; larger ones are dropped.
var writeBuffers = mempool.NewBuffer(maxPooledWriteBuffer)

// backlogOf finds the WriteBacklogger under c, looking through wrappers that
// expose the connection they wrap with NetConn (tls.Conn does).
func backlogOf(c net.Conn) WriteBacklogger {
	for i := 0; c != nil && i < 8; i++ {
		if b, ok := c.(WriteBacklogger); ok {
			return b
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
	}
	return nil
}

// writeBatch lists the clients a read loop wrote to and has not flushed.
// Only the read loop's goroutine touches it.
type writeBatch struct {
	dirty []*Client
}

func (b *writeBatch) flush() {
	for i, cl := range b.dirty {
		_ = cl.flushWrites()
		b.dirty[i] = nil
	}
	b.dirty = b.dirty[:0]
}

// connReader is a client's buffered reader (upstream: a bufio.Reader).
//
// It reads from the socket only when its buffer is empty, i.e. when the
// read loop has handled every packet it had, so that is where the writes
// the loop held go out (writeBatch). On a socket it can drive directly
// (syscall.Conn) it holds no buffer while waiting for input: the buffer
// comes from a pool when the socket is readable and goes back when it is
// drained, so an idle connection owns none.
type connReader struct {
	cl   *Client
	rc   syscall.RawConn // nil: read through Conn.Read into a buffer kept for good
	size int
	buf  []byte
	r, w int
	// idle is set when a fill waited at least idleSpell for the socket:
	// the next packet ends an idle spell (Client.Read).
	idle bool
	// kaDeadline is when the client's keepalive runs out (zero: never),
	// as last refreshed on the read loop.
	kaDeadline time.Time

	// Parking (park_linux.go): set only on a connection that may park.
	parker  *parker
	resume  func()       // continues the read loop on a new goroutine
	state   atomic.Int32 // running or parked
	token   uint64       // the socket's epoll user data; 0 until first parked
	timer   *time.Timer  // wakes a parked connection when its keepalive runs out
	resumed bool         // the read loop was just resumed: keep the keepalive deadline
	// waitStart is when the current wait for a packet began; lastWait is
	// how long the last one took: it sets how soon the next wait parks.
	waitStart time.Time
	lastWait  time.Duration
}

// connReader states: whether the read loop has a goroutine.
const (
	running int32 = iota
	parked
)

// errParked is returned by the read loop when it gave up its goroutine:
// the connection goes on without the caller.
var errParked = errors.New("connection parked")

// idleSpell is how long a connection must have waited for input before
// its next packet is handled on a goroutine of its own
// (Client.handlePacketApart). Shorter waits are a busy connection's, which
// would pay the extra goroutine on every packet.
const idleSpell = time.Second

var readBuffers sync.Pool // of *[]byte, of readBufferSize bytes

// readBufferSize is the size of pooled read buffers; a client configured
// with another ClientNetReadBufferSize allocates its own.
const readBufferSize = 2048

func newConnReader(cl *Client, c net.Conn, size int) *connReader {
	if size <= 0 {
		size = readBufferSize
	}
	r := &connReader{cl: cl, size: size}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			r.rc = rc
		}
	}
	return r
}

func (r *connReader) getBuf() []byte {
	if r.size == readBufferSize {
		if b, ok := readBuffers.Get().(*[]byte); ok {
			return *b
		}
	}
	return make([]byte, r.size)
}

func (r *connReader) putBuf(b []byte) {
	if len(b) == readBufferSize {
		readBuffers.Put(&b)
	}
}

// ReadByte implements io.ByteReader.
func (r *connReader) ReadByte() (byte, error) {
	if r.r == r.w {
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	b := r.buf[r.r]
	r.r++
	return b, nil
}

// Read implements io.Reader; a read as large as the buffer into an empty
// buffer goes straight to the connection.
func (r *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.r == r.w {
		if len(p) >= r.size {
			r.flushHeld()
			return r.cl.Net.Conn.Read(p)
		}
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf[r.r:r.w])
	r.r += n
	return n, nil
}

// Buffered returns the bytes read from the socket and not yet consumed.
func (r *connReader) Buffered() int { return r.w - r.r }

// flushHeld writes out what the read loop holds and, on the read loop
// (not during the handshake), refreshes the keepalive deadline.
func (r *connReader) flushHeld() {
	if b := r.cl.Net.batch; b != nil {
		b.flush()
		r.kaDeadline = r.cl.refreshDeadline(r.cl.State.Keepalive)
	}
}

// fill reads into the empty buffer, writing out held writes first.
func (r *connReader) fill() error {
	r.flushHeld()
	r.r, r.w = 0, 0
	if r.rc == nil {
		if r.buf == nil {
			r.buf = make([]byte, r.size)
		}
		for range 100 { // as bufio: tolerate reads that return nothing
			n, err := r.cl.Net.Conn.Read(r.buf)
			r.w = n
			if n > 0 {
				return nil
			}
			if err != nil {
				return err
			}
		}
		return io.ErrNoProgress
	}
	return r.readRaw()
}

// readRaw reads into the empty buffer through the raw connection.
func (r *connReader) readRaw() error {
	if r.buf != nil {
		r.putBuf(r.buf)
		r.buf = nil
	}
	var rerr error
	var waitedSince time.Time
	err := r.rc.Read(func(fd uintptr) bool {
		buf := r.getBuf()
		for {
			n, err := syscall.Read(int(fd), buf)
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				r.putBuf(buf)
				if waitedSince.IsZero() {
					waitedSince = time.Now()
				}
				return false // wait until readable, holding no buffer
			case err != nil:
				rerr = err
			case n == 0:
				rerr = io.EOF
			default:
				r.buf, r.w = buf, n
				return true
			}
			r.putBuf(buf)
			return true
		}
	})
	if !waitedSince.IsZero() && time.Since(waitedSince) >= idleSpell {
		r.idle = true
	}
	if err != nil {
		return err
	}
	return rerr
}

// await waits for the first byte of the next packet, the read loop having
// consumed all it had: fill, except that a connection that may park gives
// up its goroutine (errParked) after Options.ParkIdleAfter without input.
func (r *connReader) await() error {
	if r.parker == nil {
		return r.fill()
	}
	now := time.Now()
	if r.resumed {
		// Woken from a park: the keepalive deadline stands (a wake by the
		// keepalive timer must end the connection, not extend it), and so
		// does the start of the wait.
		r.resumed = false
	} else {
		r.flushHeld()
		r.waitStart = now
	}
	r.r, r.w = 0, 0
	rd := r.kaDeadline
	if parkAt := now.Add(r.parkGrace()); rd.IsZero() || parkAt.Before(rd) {
		rd = parkAt
	}
	if err := r.cl.Net.Conn.SetReadDeadline(rd); err != nil {
		return err
	}
	err := r.readRaw()
	if err == nil {
		r.lastWait = time.Since(r.waitStart)
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) && (r.kaDeadline.IsZero() || time.Now().Before(r.kaDeadline)) {
		return r.park()
	}
	return err
}

// parkGrace is how long await waits before it parks: twice the
// connection's last wait for input, at least a tenth of
// Options.ParkIdleAfter and at most all of it. A device whose packets come
// at a steady pace never parks between them (a park and a wake cost far
// more CPU than a parked goroutine's wait: about 45 µs here), while one
// that has said nothing since it connected, the usual state after a
// reconnect storm, parks after a tenth, so the storm never holds many
// goroutine stacks at once.
func (r *connReader) parkGrace() time.Duration {
	most := r.cl.ops.options.ParkIdleAfter
	return min(max(2*r.lastWait, most/10), most)
}

// park hands the connection to the parker and returns errParked: its
// goroutine ends, and the parker starts another to continue the read loop
// (r.resume) when the socket is readable or closed, or when the keepalive
// runs out; Client.Stop wakes it too. An idle connection thus holds no
// goroutine and no stack, only its state on the heap and the socket's
// registration in the parker's epoll instance.
func (r *connReader) park() error {
	first := r.token == 0
	if first {
		r.token = r.parker.add(r)
		r.timer = time.AfterFunc(time.Duration(math.MaxInt64), r.wake)
	}
	ka := r.kaDeadline
	r.resumed = true
	r.idle = false // the goroutine that resumes it is a fresh one already
	r.parker.n.Add(1)
	r.state.Store(parked)
	// From here on this goroutine must not touch r or r.cl: any of the
	// wakes may already be continuing the read loop on another.
	if !ka.IsZero() {
		r.timer.Reset(time.Until(ka))
	}
	if err := r.parker.arm(r.rc, r.token, first); err != nil {
		r.wake() // the socket cannot be watched (closed?): carry on reading
	}
	return errParked
}

// wake continues a parked connection's read loop on a new goroutine; it
// does nothing to a connection that is not parked.
func (r *connReader) wake() {
	if r.state.CompareAndSwap(parked, running) {
		r.parker.n.Add(-1)
		go r.resume()
	}
}

// ended releases the parking state of a connection that has ended.
func (r *connReader) ended() {
	if r.token != 0 {
		r.parker.forget(r.token)
		r.timer.Stop()
	}
}

// reply writes pk to cl from cl's own read loop: held while the loop has
// more input buffered. Call it only on cl's read goroutine.
func (cl *Client) reply(pk packets.Packet) error {
	return cl.writePacket(pk, cl.Net.batch)
}

// FlushWrites writes out whatever cl's read loop is holding, for cl and for
// the clients it delivered to. Call it only from cl's read goroutine (a hook
// handling one of cl's packets), before that hook blocks for long, e.g. on
// a disk sync.
func (cl *Client) FlushWrites() {
	if b := cl.Net.batch; b != nil {
		b.flush()
	}
	_ = cl.flushWrites()
}

// flushWrites writes cl's buffered packets to its connection.
func (cl *Client) flushWrites() error {
	cl.Net.wmu.Lock()
	defer cl.Net.wmu.Unlock()
	return cl.flushLocked()
}

// flushLocked writes the write buffer out; cl.Net.wmu is held. On a
// WriteBacklogger the write does not block; what it leaves in the backlog
// counts toward MaximumClientWritesPending (see writesFull).
func (cl *Client) flushLocked() error {
	cl.Net.heldBy = nil
	w := cl.Net.wbuf
	if w == nil {
		return nil
	}
	n := cl.Net.wpkts
	cl.Net.wbuf, cl.Net.wpkts = nil, 0
	_, err := cl.Net.Conn.Write(w.Bytes())
	writeBuffers.Put(w)
	cl.noteBacklog(n)
	return err
}

// noteBacklog counts n packets just written against the client's pending
// writes while its connection reports a backlog (writesFull).
func (cl *Client) noteBacklog(n int32) {
	if bl := cl.Net.backlog; bl != nil {
		if bl.WriteBacklog() > 0 {
			atomic.AddInt32(&cl.State.outboundQty, n)
		} else {
			atomic.StoreInt32(&cl.State.outboundQty, 0)
		}
	}
}

// writesFull reports whether a client on a non-blocking connection has
// MaximumClientWritesPending packets or more written while its socket was
// not keeping up — the equivalent of upstream's full outbound channel.
func (cl *Client) writesFull() bool {
	if atomic.LoadInt32(&cl.State.outboundQty) < cl.ops.options.Capabilities.MaximumClientWritesPending {
		return false
	}
	if cl.Net.backlog.WriteBacklog() == 0 {
		atomic.StoreInt32(&cl.State.outboundQty, 0)
		return false
	}
	return true
}

// BuffersWriter is implemented by connections that write several buffers
// with one call (writev) and, like Write, never keep a reference to them
// after returning. A large PUBLISH goes to such a connection as its encoded
// header and its payload, the payload never copied in user space.
type BuffersWriter interface {
	WriteBuffers(bufs [][]byte) (int, error)
}

// minVectoredPayload is the payload size from which a PUBLISH is written
// vectored on a BuffersWriter: below it, one copy into the write buffer
// costs less than the extra iovec, and small packets still coalesce.
const minVectoredPayload = 8 << 10

// writePublishVectored writes a PUBLISH with a large payload: whatever the
// client's write buffer holds (a read loop's held writes included), the
// packet's header and its payload in one writev, so the wire order stays
// the order of writes. It does what
// writePacket does after encoding, including the size check and the hooks;
// OnPacketSent gets the header bytes (the payload is pk.Payload).
func (cl *Client) writePublishVectored(pk packets.Packet, hdr *bytes.Buffer, bw BuffersWriter) error {
	if err := pk.PublishEncodeHeader(hdr); err != nil {
		return err
	}
	n := int64(hdr.Len() + len(pk.Payload))
	if pk.Mods.MaxSize > 0 && n > int64(pk.Mods.MaxSize) {
		return packets.ErrPacketTooLarge // [MQTT-3.1.2-24] [MQTT-3.1.2-25]
	}

	cl.Net.wmu.Lock()
	pending := cl.Net.wbuf
	pkts := cl.Net.wpkts + 1
	cl.Net.wbuf, cl.Net.wpkts, cl.Net.heldBy = nil, 0, nil
	bufs := make([][]byte, 0, 3)
	if pending != nil && pending.Len() > 0 {
		bufs = append(bufs, pending.Bytes())
	}
	bufs = append(bufs, hdr.Bytes(), pk.Payload)
	_, err := bw.WriteBuffers(bufs)
	if pending != nil {
		writeBuffers.Put(pending)
	}
	cl.noteBacklog(pkts)
	cl.Net.wmu.Unlock()
	if err != nil {
		return err
	}

	atomic.AddInt64(&cl.ops.info.BytesSent, n)
	atomic.AddInt64(&cl.ops.info.PacketsSent, 1)
	atomic.AddInt64(&cl.ops.info.MessagesSent, 1)
	cl.ops.hooks.OnPacketSent(cl, pk, hdr.Bytes())
	return nil
}
