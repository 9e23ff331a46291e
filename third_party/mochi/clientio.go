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

// Backlogger returns the WriteBacklogger under cl's connection, the one
// mochi writes deliveries through without a write goroutine; nil if the
// connection's writes may block (fork).
func (cl *Client) Backlogger() WriteBacklogger { return cl.Net.backlog }

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
// The read loop's goroutine holds writes in it and flushes it; so may the
// event loops' watchdog (flushStalled), for a loop stalled in a hook: mu
// guards the list.
type writeBatch struct {
	mu    sync.Mutex
	dirty []*Client
	// writes counts the writes held so far: the watchdog tells a busy
	// loop from a blocked one by it (evloop.watchHeld).
	writes atomic.Int64
	// writing is done when the chunk flushAhead handed to a goroutine has
	// been written; only the read loop's goroutine uses it.
	writing sync.WaitGroup
}

// hold lists cl, whose write buffer holds a write this batch is to flush.
func (b *writeBatch) hold(cl *Client) {
	b.mu.Lock()
	b.dirty = append(b.dirty, cl)
	b.mu.Unlock()
	b.writes.Add(1)
}

// held is how many clients the batch holds writes for.
func (b *writeBatch) held() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.dirty)
}

// take empties the list and returns what it held.
func (b *writeBatch) take() []*Client {
	b.mu.Lock()
	defer b.mu.Unlock()
	dirty := b.dirty
	b.dirty = nil
	return dirty
}

// flush writes out what the batch holds, once a chunk flushAhead handed
// off has been written. Only the read loop's goroutine calls it.
func (b *writeBatch) flush() {
	b.writing.Wait()
	b.flushStalled()
}

// flushStalled writes out what the batch holds now, not waiting for a
// chunk being written; the watchdog calls it for a loop that a hook holds
// up, whose goroutine cannot.
func (b *writeBatch) flushStalled() {
	dirty := b.take()
	if len(dirty) == 0 {
		return
	}
	writeOut(dirty)
	b.mu.Lock()
	if b.dirty == nil {
		b.dirty = dirty[:0] // its backing array again
	}
	b.mu.Unlock()
}

// flushAhead has a goroutine of its own write out what the batch holds,
// while the caller goes on: a fan-out's first subscribers get their
// messages while it encodes the others', on another core if there is one,
// instead of after it has encoded them all. One chunk is written at a
// time; flush waits for it. A client's writes stay in order whichever
// goroutine writes them: they are in its buffer, under its write lock.
func (b *writeBatch) flushAhead() {
	flushedAhead.Add(1)
	b.writing.Wait()
	chunk := b.take()
	b.writing.Add(1)
	go func() {
		defer b.writing.Done()
		writeOut(chunk)
	}()
}

// drained reports whether the packet cl's read loop handles is the last
// input in sight: its buffer holds no more, and if an event loop runs it,
// no other connection waits in the loop's queue and the other loops wait
// for events. Under load, the writes of a round are coalesced (a
// subscriber gets many messages in one write), and the other cores have
// work of their own; otherwise a large fan-out is best written as it goes,
// on a core that is idle (flushAhead).
func (cl *Client) drained() bool {
	r := cl.Net.bconn
	if r == nil {
		return true
	}
	return r.Buffered() == 0 && (r.loop == nil || r.loop.alone())
}

// flushedAhead counts flushAhead's chunks (tests look at it).
var flushedAhead atomic.Int64

// writeOut flushes each client's writes and clears the list.
func writeOut(clients []*Client) {
	for i, cl := range clients {
		_ = cl.flushWrites()
		clients[i] = nil
	}
}

// connReader is a client's buffered reader (upstream: a bufio.Reader).
//
// It reads from the socket only when its buffer is empty, i.e. when the
// read loop has handled every packet it had, so that is where the writes
// the loop held go out (writeBatch). On a socket it can drive directly
// (syscall.Conn) it holds no buffer while waiting for input: the buffer
// comes from a pool when the socket is readable and goes back when it is
// drained, so an idle connection owns none.
//
// A connection that may park (EstablishConnectionThen, park_linux.go) has
// no goroutine of its own while it waits: when its read loop has consumed
// what the socket held, the connection parks, and an event loop of the
// server's parker runs the read loop again, on the loop's goroutine, when
// the socket is readable. A read loop that must wait in the middle of a
// packet, or whose handling is about to block (Client.WillBlock), or that
// ends, leaves the event loop first (leaveLoop): the loop goes on serving
// the other connections on a new goroutine, and this one carries on
// where it is, a goroutine of its own, until it parks again.
type connReader struct {
	cl   *Client
	rc   syscall.RawConn // nil: read through Conn.Read into a buffer kept for good
	size int
	buf  []byte
	r, w int
	// idle is set when a fill waited at least idleSpell for the socket:
	// the next packet ends an idle spell (Client.Read).
	idle bool

	// Parking (park_linux.go): parker is set only on a connection that
	// may park, po once it has parked.
	parker *parker
	po     *poller
	resume func()       // runs the read loop on the calling goroutine until it parks or the connection ends
	state  atomic.Int32 // running or parked
	// pending is set by an event loop that found the socket readable while
	// the read loop ran elsewhere: it re-arms the socket when it parks.
	pending atomic.Bool
	token   uint64      // the socket's epoll user data; 0 until first parked
	loop    *evloop     // the event loop running this read loop now; nil on a goroutine of its own
	own     *writeBatch // the read loop's batch off an event loop (on one, the loop's is used)
	// ka is when the keepalive runs out, in Unix nanoseconds (0: never),
	// refreshed by every read; timer wakes a parked connection then. The
	// timer is reset only when it fires (onTimer), not on every read.
	ka      atomic.Int64
	timer   *time.Timer
	kaFired atomic.Bool // the timer found ka passed: the read loop checks it
	// full is set when the last read filled the space it had: the socket
	// may hold more. turn counts reads since the last park, so that one
	// busy connection cannot keep an event loop to itself.
	full bool
	turn int
	// whole is set when buf is not from the pool but made for a packet too
	// large for a pooled buffer (assemble); ReadPacket then takes it whole.
	whole bool
}

// connReader states: whether the read loop has a goroutine.
const (
	running int32 = iota
	parked
)

// errParked is returned by the read loop when it parked: the connection
// goes on without the goroutine that ran it.
var errParked = errors.New("connection parked")

// maxTurnReads is how many full buffers a parkable connection reads before
// it parks and lets an event loop serve others; it is served again at once
// (the socket is still readable), after them.
const maxTurnReads = 8

// flushDirty is how many clients an event loop's batch may hold writes for
// before a read loop it runs writes them out when it next waits for input:
// a publisher whose messages fan out to many subscribers.
const flushDirty = 64

// idleSpell is how long a connection must have waited for input before
// its next packet is handled on a goroutine of its own
// (Client.handlePacketApart). Shorter waits are a busy connection's, which
// would pay the extra goroutine on every packet. Parkable connections do
// not wait on a goroutine, so this concerns the others (TLS, WebSocket).
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

// releaseBuf returns the read buffer to the pool; the reader is drained.
func (r *connReader) releaseBuf() {
	if r.buf != nil && !r.whole {
		r.putBuf(r.buf)
	}
	r.buf, r.whole = nil, false
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
			if r.po != nil {
				if err := r.mayWait(); err != nil {
					return 0, err
				}
			}
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
// (not during the handshake) of a connection that does not park,
// refreshes the keepalive deadline (a parkable one keeps it in ka).
func (r *connReader) flushHeld() {
	if b := r.cl.Net.batch; b != nil {
		b.flush()
		if r.po == nil {
			r.cl.refreshDeadline(r.cl.State.Keepalive)
		}
	}
}

// fill reads into the empty buffer, writing out held writes first. It is
// called in the middle of a packet, or, on a connection that does not
// park, to wait for the next one.
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
	if r.po != nil {
		// The rest of a packet is usually there already; if not, this read
		// loop is about to wait, which it must not do on an event loop.
		if got, err := r.tryRead(); got || err != nil {
			return err
		}
		if err := r.mayWait(); err != nil {
			return err
		}
	}
	return r.readRaw()
}

// mayWait prepares a parkable connection's read loop for a read that
// waits: off the event loop, with the keepalive as the read deadline.
func (r *connReader) mayWait() error {
	r.leaveLoop()
	var dl time.Time
	if ka := r.ka.Load(); ka != 0 {
		dl = time.Unix(0, ka)
	}
	return r.cl.Net.Conn.SetReadDeadline(dl)
}

// readRaw reads into the empty buffer through the raw connection, waiting
// for the socket if it has nothing.
func (r *connReader) readRaw() error {
	r.releaseBuf()
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
				r.refreshKeepalive()
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

// tryRead reads what the socket holds now into the empty buffer, without
// waiting: got is false if it holds nothing.
func (r *connReader) tryRead() (got bool, err error) {
	buf := r.buf
	if buf == nil || r.whole {
		buf = r.getBuf()
	}
	r.buf, r.whole = nil, false
	n, err := r.readNow(buf)
	if n == 0 {
		r.putBuf(buf)
		return false, err
	}
	r.buf, r.r, r.w = buf, 0, n
	r.full = n == len(buf)
	return true, nil
}

// tryReadMore reads what the socket holds now into buf[w:end], after what
// the buffer holds, without waiting: got is false if it holds nothing.
func (r *connReader) tryReadMore(end int) (got bool, err error) {
	n, err := r.readNow(r.buf[r.w:end])
	r.w += n
	r.full = r.w == end
	return n > 0, err
}

// readNow is one read(2) of the socket into b that does not wait: 0 and
// no error if the socket holds nothing; io.EOF if the peer closed it.
func (r *connReader) readNow(b []byte) (int, error) {
	var n int
	var rerr error
	err := r.rc.Control(func(fd uintptr) {
		for {
			m, err := syscall.Read(int(fd), b)
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
			case err != nil:
				rerr = err
			case m == 0:
				rerr = io.EOF
			default:
				n = m
				r.refreshKeepalive()
			}
			return
		}
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}

// assemble makes sure, on an event loop, that the buffer holds the whole
// packet that starts at r, reading what the socket holds now; if it does
// not hold the rest yet, the connection parks with what it has, and the
// read loop goes on when the rest has come. So the read loop never waits
// in the middle of a packet, which an event loop must not do. A packet
// larger than a pooled buffer is read into one of its own, which
// ReadPacket then takes as it is (takeWhole).
func (r *connReader) assemble() error {
	for {
		avail := r.w - r.r
		total, known := packetLength(r.buf[r.r:r.w])
		if known && (total <= avail || total > r.maxAssembled()) {
			return nil // whole, or malformed or too large: ReadFixedHeader says so
		}
		need := total
		if !known {
			need = avail + 1 // the fixed header is not complete yet
		}
		if r.r+need > len(r.buf) || (known && r.whole) {
			r.makeRoom(need, known)
		}
		end := len(r.buf)
		if r.whole {
			end = total // never past the packet: the buffer is handed over whole
		}
		got, err := r.tryReadMore(end)
		if err != nil {
			return err
		}
		if !got {
			return r.park()
		}
	}
}

// makeRoom moves what the buffer holds to the start of a buffer with room
// for need bytes: the pooled one if need fits, else one of need bytes made
// for this packet (known says need is the packet's whole length).
func (r *connReader) makeRoom(need int, known bool) {
	held := r.buf[r.r:r.w]
	switch {
	case need <= r.size && !r.whole:
		copy(r.buf, held)
	case need <= r.size:
		buf := r.getBuf()
		copy(buf, held)
		r.buf, r.whole = buf, false
	default:
		size := need
		if !known {
			size = r.size
		}
		buf := make([]byte, size)
		copy(buf, held)
		r.releaseBuf()
		r.buf, r.whole = buf, known
	}
	r.w -= r.r
	r.r = 0
}

// maxAssembled is the largest packet assemble reads into a buffer of its
// own: the server's maximum packet size, or 1 MiB if it has none (a larger
// packet is read as before, off the event loop).
func (r *connReader) maxAssembled() int {
	if m := r.cl.ops.options.Capabilities.MaximumPacketSize; m > 0 {
		return int(m) + 5
	}
	return 1 << 20
}

// takeWhole returns the next n buffered bytes without copying them if they
// are the rest of a buffer made for their packet (assemble); the reader
// lets go of the buffer.
func (r *connReader) takeWhole(n int) ([]byte, bool) {
	if r == nil || !r.whole || r.w-r.r != n {
		return nil, false
	}
	p := r.buf[r.r:r.w]
	r.buf, r.whole = nil, false
	r.r, r.w = 0, 0
	return p, true
}

// packetLength returns the length of the MQTT packet b starts with, fixed
// header included; known is false while b holds too little of the fixed
// header to tell. A malformed length is known, and larger than b.
func packetLength(b []byte) (total int, known bool) {
	n, mul := 0, 1
	for i := 1; i < len(b); i++ {
		n += int(b[i]&127) * mul
		if b[i]&128 == 0 {
			return 1 + i + n, true
		}
		if i == 4 {
			return math.MaxInt32, true // more than 4 length bytes: malformed
		}
		mul *= 128
	}
	return 0, false
}

// refreshKeepalive notes that the client sent something: its keepalive
// starts again.
func (r *connReader) refreshKeepalive() {
	if r.po != nil {
		if k := r.cl.State.Keepalive; k > 0 {
			r.ka.Store(time.Now().Add(time.Duration(k+k/2) * time.Second).UnixNano()) // [MQTT-3.1.2-22]
		}
	}
}

// await waits for the first byte of the next packet, the read loop having
// consumed all it had: fill, except that a parkable connection parks
// (errParked) when the socket has nothing for it.
func (r *connReader) await() error {
	if r.parker == nil {
		return r.fill()
	}
	if r.loop == nil || r.loop.batch.held() >= flushDirty {
		// On an event loop, the loop writes what it holds once it has
		// served a round, unless a fan-out has made it hold much already.
		r.flushHeld()
	}
	if r.kaFired.Load() {
		r.kaFired.Store(false)
		if ka := r.ka.Load(); ka != 0 && time.Now().UnixNano() >= ka {
			return &net.OpError{Op: "read", Net: "tcp", Addr: r.cl.Net.Conn.RemoteAddr(), Err: os.ErrDeadlineExceeded}
		}
	}
	// A read that did not fill the buffer emptied the socket: anything
	// that came since makes the parked socket readable at once, so there
	// is no need to ask it now.
	if r.full && r.turn < maxTurnReads {
		r.turn++
		got, err := r.tryRead()
		if err != nil {
			return err
		}
		if got {
			if r.loop != nil {
				return r.assemble()
			}
			return nil
		}
	}
	return r.park()
}

// park hands the connection to the parker and returns errParked: the
// goroutine that ran its read loop goes back to its event loop, or ends,
// and an event loop runs the read loop again (r.resume) when the socket
// is readable or closed. Client.Stop and the keepalive timer wake it too
// (wake). A parked connection holds no goroutine, no stack and no buffer,
// only its state on the heap and its registration in an epoll instance.
func (r *connReader) park() error {
	if r.Buffered() == 0 { // else it keeps the start of a packet (assemble)
		r.releaseBuf()
		r.r, r.w = 0, 0
	}
	more := r.full // the last read filled its space: the socket may hold more
	r.full, r.turn = false, 0
	first := r.token == 0
	if first {
		// From now on the keepalive is ka and its timer, not a deadline on
		// the socket: a socket deadline is refreshed with a timer operation
		// on every read, and it would fail the writes of a quiet client.
		if err := r.cl.Net.Conn.SetDeadline(time.Time{}); err != nil {
			return err
		}
		r.po = r.parker.assign()
		r.token = r.po.add(r)
		if k := r.cl.State.Keepalive; k > 0 {
			if r.ka.Load() == 0 {
				r.ka.Store(time.Now().Add(time.Duration(k+k/2) * time.Second).UnixNano())
			}
			r.timer = time.AfterFunc(time.Duration(math.MaxInt64), r.onTimer)
			r.timer.Reset(time.Until(time.Unix(0, r.ka.Load())))
		}
	}
	po, token, rc := r.po, r.token, r.rc
	r.leaveBatch()
	r.loop = nil
	r.parker.n.Add(1)
	r.state.Store(parked)
	// From here on this goroutine must not touch r or r.cl, but for their
	// atomic fields: a wake may already be running the read loop on
	// another. The socket is edge-triggered: it reports input that comes
	// from now on, but not what it holds already (more), nor input that an
	// event loop saw while this read loop ran (pending, set before the
	// loop's second claim, so one of the two sees the other).
	var err error
	switch {
	case first:
		err = po.arm(rc, token, armAdd)
	case more, r.pending.Swap(false):
		err = po.arm(rc, token, armAgain)
	}
	if err != nil {
		r.wake() // the socket cannot be watched (closed?): carry on reading
	}
	return errParked
}

// serveOn runs a parked connection's read loop on the event loop lp, the
// socket being readable; it does nothing if the connection is not parked.
func (r *connReader) serveOn(lp *evloop) {
	if !r.claim() {
		// Its read loop runs: it looks at the socket again when it parks
		// (see park), unless it parked just now, and then it is ours.
		r.pending.Store(true)
		if !r.claim() {
			return
		}
	}
	r.pending.Store(false) // its first read (claim sets full) comes after this
	r.loop = lp
	if r.own == nil {
		r.own = r.cl.Net.batch
	}
	r.cl.Net.batch = &lp.batch
	r.resume()
}

// leaveBatch makes the read loop hold its writes in a batch of its own
// again, not in its event loop's.
func (r *connReader) leaveBatch() {
	if r.own != nil {
		r.cl.Net.batch = r.own
	}
}

// wake runs a parked connection's read loop on a goroutine of its own; it
// does nothing (false) if the connection is not parked.
func (r *connReader) wake() bool {
	if r.claim() {
		go r.resume()
		return true
	}
	return false
}

// claim takes a parked connection for the caller to run its read loop;
// false if it is not parked (someone else runs it).
func (r *connReader) claim() bool {
	if !r.state.CompareAndSwap(parked, running) {
		return false
	}
	r.parker.n.Add(-1)
	r.full = true // ask the socket first: it is readable, or the wake has a reason to look
	return true
}

// onTimer runs when the keepalive timer fires: at a keepalive deadline
// that reads may have moved since it was set.
func (r *connReader) onTimer() {
	if d := time.Until(time.Unix(0, r.ka.Load())); d > 0 {
		r.timer.Reset(d)
		return
	}
	r.kaFired.Store(true)
	if !r.wake() {
		// Running: its read loop sees kaFired unless a read has moved the
		// deadline meanwhile; look again in case it parks first.
		r.timer.Reset(time.Second)
	}
}

// leaveLoop moves the read loop off the event loop running it, if any:
// the event loop goes on on a new goroutine, and the current goroutine is
// this connection's until it parks or ends.
func (r *connReader) leaveLoop() {
	if lp := r.loop; lp != nil {
		r.loop = nil
		lp.batch.flush()
		r.leaveBatch()
		lp.handOver()
	}
}

// ended releases the parking state of a connection that has ended.
func (r *connReader) ended() {
	if r.token != 0 {
		r.po.forget(r.token)
		if r.timer != nil {
			r.timer.Stop()
		}
	}
}

// WillBlock prepares cl's read loop for a wait, e.g. a hook handling one of
// cl's packets that syncs a disk write: what the loop holds (cl's replies
// and the deliveries of what it published) is written out, and if an
// event loop runs the read loop, the event loop goes on serving the other
// connections without it. Call it only on cl's read loop, i.e. from a hook
// handling a packet of cl's.
func (cl *Client) WillBlock() {
	if b := cl.Net.batch; b != nil {
		b.flush()
	}
	_ = cl.flushWrites()
	if r := cl.Net.bconn; r != nil {
		r.leaveLoop()
	}
}

// reply writes pk to cl from cl's own read loop: held while the loop has
// more input buffered. Call it only on cl's read goroutine.
func (cl *Client) reply(pk packets.Packet) error {
	return cl.writePacket(pk, cl.Net.batch)
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
