package broker

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	mqtt "github.com/lastmile-dm/lastmile/third_party/mochi"
)

// DefaultMaxPendingBytes bounds the bytes a client may leave unread beyond
// what its socket buffers hold before it is disconnected as stalled.
const DefaultMaxPendingBytes = 1 << 20

// parkIdle has plain TCP connections park whenever they have consumed
// their input (the mochi fork's event loops): an idle device costs no
// goroutine, no stack and no read buffer, only its state on the heap and
// its socket's registration in an epoll instance, and a device that speaks
// is served by an event loop goroutine without a goroutine wake-up of its
// own. TLS and WebSocket connections do not park: their reads go through
// buffered layers that cannot be watched from the socket.
const parkIdle = true

// errWriteBacklog is the cause given to a connection closed because its
// write backlog exceeded Limits.MaxPendingBytes.
var errWriteBacklog = errors.New("broker: client write backlog full")

// backlogListener wraps every accepted connection in a backlogConn.
type backlogListener struct {
	net.Listener
	limit   int
	onStall func(remote string)
}

func (l *backlogListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c, nil //nolint:nilerr // not a socket we can drive: leave it as it is
	}
	return &backlogConn{Conn: c, rc: rc, limit: l.limit, onStall: l.onStall}, nil
}

// backlogConn makes a socket write never block its caller.
//
// mochi writes to a client while holding the client's lock, and publishers
// take that lock to number a QoS >= 1 message for it (NextPacketID). A
// client that stops reading therefore used to stall, through a full socket
// buffer, every publisher whose messages it subscribes to. Here Write
// tries the socket without waiting; what the kernel does not take is kept
// in a per-connection backlog that a goroutine, started only then and
// holding no broker lock, drains. An idle or keeping-up connection owns no
// backlog and no extra goroutine. A backlog beyond limit bytes means the
// client is not reading: the connection is closed (onStall is told), and a
// persistent session keeps its unacknowledged messages for the reconnect.
type backlogConn struct {
	net.Conn
	rc      syscall.RawConn
	limit   int
	onStall func(remote string)
	// onDrained, if set, runs when the backlog has been written out: the
	// client takes writes again (its requeued messages can go).
	onDrained atomic.Pointer[func()]

	mu       sync.Mutex
	backlog  []byte
	draining bool
	failed   error
}

func (c *backlogConn) Write(b []byte) (int, error) {
	one := [1][]byte{b}
	return c.WriteBuffers(one[:])
}

// WriteBuffers is Write for several buffers at once, written with one
// writev: the mochi fork hands it a large PUBLISH as its header and its
// payload, so the payload is never copied in user space unless the socket
// leaves part of it for the backlog. It keeps no reference to bufs.
// Write is WriteBuffers of one buffer.
func (c *backlogConn) WriteBuffers(bufs [][]byte) (int, error) {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	// The lock is held across the write: the drain goroutine holds the
	// socket's write lock while it waits for the peer, so a writev that
	// overlapped it would wait with it (and with it an event loop that
	// holds other clients' writes). Under c.mu a writer either sees
	// draining and appends, or knows that no drain is under way, whether
	// or not its callers serialize their writes (mochi does, per client).
	c.mu.Lock()
	if c.failed != nil {
		err := c.failed
		c.mu.Unlock()
		return 0, err
	}
	if c.draining {
		if len(c.backlog)+total > c.limit {
			c.failed = errWriteBacklog
			c.mu.Unlock()
			c.stall()
			return 0, errWriteBacklog
		}
		for _, b := range bufs {
			c.backlog = append(c.backlog, b...)
		}
		c.mu.Unlock()
		return total, nil
	}
	defer c.mu.Unlock()

	n, err := c.tryWritev(bufs)
	if err != nil {
		return n, err
	}
	if n == total {
		return n, nil
	}
	c.backlog = c.backlog[:0]
	for _, b := range bufs {
		if n >= len(b) {
			n -= len(b)
			continue
		}
		c.backlog = append(c.backlog, b[n:]...)
		n = 0
	}
	c.draining = true
	go c.drain()
	return total, nil
}

// WriteBacklog returns the bytes written but not yet taken by the socket.
// The mochi fork writes deliveries to a connection that has it from the
// publisher's goroutine, and counts packets written while it is non-zero
// against Limits.MaxPendingWrites.
func (c *backlogConn) WriteBacklog() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.backlog)
}

// SyscallConn returns the socket's raw connection: the mochi fork reads
// through it so that an idle connection holds no read buffer.
func (c *backlogConn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// tryWritev writes what the socket takes now of bufs, in order, with one
// writev and without waiting, and returns the bytes written. At most
// maxIovecs buffers are tried; the caller backlogs whatever is left.
func (c *backlogConn) tryWritev(bufs [][]byte) (int, error) {
	op := writevs.Get().(*writev)
	defer writevs.Put(op)
	op.k, op.n, op.err = 0, 0, nil
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		if op.k == maxIovecs {
			break
		}
		op.iov[op.k].Base = &b[0]
		op.iov[op.k].SetLen(len(b))
		op.k++
	}
	if op.k == 0 {
		return 0, nil
	}
	err := c.rc.Write(op.do)
	clear(op.iov[:op.k]) // keep no reference to bufs
	if err != nil {
		return op.n, err
	}
	return op.n, op.err
}

// writev is one tryWritev: the iovecs and what the system call returned.
// They are pooled (writevs), do bound once: one made per write escaped to
// the heap with its callback, about 200 bytes for every write.
type writev struct {
	iov [maxIovecs]syscall.Iovec
	k   int
	n   int
	err error
	do  func(fd uintptr) bool // call
}

var writevs = sync.Pool{New: func() any {
	op := &writev{}
	op.do = op.call
	return op
}}

// call is the syscall.RawConn.Write callback: one writev, retried on
// EINTR; EAGAIN writes nothing and is no error (the caller backlogs the
// rest).
func (op *writev) call(fd uintptr) bool {
	for {
		//nolint:gosec // writev takes the iovec array's address; op and the buffers it points to outlive the call
		m, _, errno := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&op.iov[0])), uintptr(op.k))
		switch errno {
		case 0:
			op.n = int(m)
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
		default:
			op.err = errno
		}
		return true
	}
}

// maxIovecs is the most buffers one tryWritev passes to writev.
const maxIovecs = 8

// drain writes the backlog out, blocking in the kernel but in no lock of
// the broker's.
func (c *backlogConn) drain() {
	for {
		c.mu.Lock()
		buf := c.backlog
		c.backlog = nil
		if len(buf) == 0 {
			c.draining = false
			c.mu.Unlock()
			if f := c.onDrained.Load(); f != nil {
				(*f)()
			}
			return
		}
		c.mu.Unlock()
		if _, err := c.Conn.Write(buf); err != nil {
			c.mu.Lock()
			c.failed, c.draining, c.backlog = err, false, nil
			c.mu.Unlock()
			_ = c.Close()
			return
		}
	}
}

func (c *backlogConn) stall() {
	if c.onStall != nil {
		c.onStall(c.RemoteAddr().String())
	}
	_ = c.Close()
}

var (
	_ mqtt.WriteBacklogger = (*backlogConn)(nil)
	_ mqtt.BuffersWriter   = (*backlogConn)(nil)
)
