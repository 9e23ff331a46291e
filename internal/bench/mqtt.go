package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// client is a minimal MQTT 3.1.1 client: CONNECT, PUBLISH QoS 0/1,
// SUBSCRIBE, PINGREQ. It is written for the generator not to be the
// bottleneck: one reader goroutine, no per-message allocation beyond the
// payload slice handed to the callback, writes coalesced under one lock.
// Both brokers speak 3.1.1, so every scenario measures them on equal terms.
type client struct {
	conn net.Conn

	wmu sync.Mutex
	w   *bufio.Writer

	nextID   uint16
	inflight chan struct{} // QoS 1 window: a slot per unacknowledged PUBLISH
	acks     atomic.Int64

	onMessage func(topic string, payload []byte)
	onAck     func()
	subacks   chan []byte
	done      chan struct{}
	err       error
}

// connectOpts describes one CONNECT.
type connectOpts struct {
	addr      string
	localIP   string // source address, e.g. 127.0.0.7; "" lets the kernel choose
	clientID  string
	username  string
	password  string
	keepalive uint16
	clean     bool
	window    int // QoS 1 publishes allowed unacknowledged
	onMessage func(topic string, payload []byte)
	onAck     func()
}

// errRefused is a CONNACK with a non-zero return code.
var errRefused = errors.New("connection refused")

// dial connects and completes the MQTT handshake; sessionPresent is the
// CONNACK flag.
func dial(ctx context.Context, o connectOpts) (c *client, sessionPresent bool, err error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if o.localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.localIP)}
	}
	conn, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return nil, false, err
	}
	if o.window <= 0 {
		o.window = 1
	}
	c = &client{conn: conn, w: bufio.NewWriterSize(conn, 4096), inflight: make(chan struct{}, o.window),
		onMessage: o.onMessage, onAck: o.onAck, subacks: make(chan []byte, 1), done: make(chan struct{})}
	if err := c.writeConnect(o); err != nil {
		_ = conn.Close()
		return nil, false, err
	}
	r := bufio.NewReaderSize(conn, 4096)
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	typ, body, err := readPacket(r, nil)
	if err != nil {
		_ = conn.Close()
		return nil, false, fmt.Errorf("read CONNACK: %w", err)
	}
	if typ != 2 || len(body) != 2 {
		_ = conn.Close()
		return nil, false, fmt.Errorf("expected CONNACK, got packet type %d", typ)
	}
	if body[1] != 0 {
		_ = conn.Close()
		return nil, false, fmt.Errorf("%w: return code %d", errRefused, body[1])
	}
	_ = conn.SetReadDeadline(time.Time{})
	go c.read(r)
	return c, body[0]&1 == 1, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s))) //nolint:gosec // MQTT strings are short here
	return append(b, s...)
}

func appendLength(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func (c *client) writeConnect(o connectOpts) error {
	var v []byte
	v = appendString(v, "MQTT")
	flags := byte(0)
	if o.clean {
		flags |= 0x02
	}
	if o.username != "" {
		flags |= 0x80 | 0x40
	}
	v = append(v, 4, flags)
	v = binary.BigEndian.AppendUint16(v, o.keepalive)
	v = appendString(v, o.clientID)
	if o.username != "" {
		v = appendString(v, o.username)
		v = appendString(v, o.password)
	}
	return c.send(0x10, v, true)
}

// send writes one packet; flush pushes it (and anything queued) out.
func (c *client) send(header byte, body []byte, flush bool) error {
	var hdr [5]byte
	h := appendLength(append(hdr[:0], header), len(body))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.w.Write(h); err != nil {
		return err
	}
	if _, err := c.w.Write(body); err != nil {
		return err
	}
	if flush {
		return c.w.Flush()
	}
	return nil
}

// publish sends one PUBLISH. At QoS 1 it blocks while the window is full
// (or ctx ends); onAck runs when the PUBACK arrives.
func (c *client) publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	body := make([]byte, 0, 2+len(topic)+2+len(payload))
	body = appendString(body, topic)
	if qos > 0 {
		select {
		case c.inflight <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return c.closedErr()
		}
		c.wmu.Lock()
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1
		}
		id := c.nextID
		c.wmu.Unlock()
		body = binary.BigEndian.AppendUint16(body, id)
	}
	body = append(body, payload...)
	return c.send(0x30|qos<<1, body, true)
}

// subscribe sends SUBSCRIBE for filter and waits for the SUBACK's code.
func (c *client) subscribe(ctx context.Context, filter string, qos byte) error {
	body := binary.BigEndian.AppendUint16(nil, 1)
	body = appendString(body, filter)
	body = append(body, qos)
	if err := c.send(0x82, body, true); err != nil {
		return err
	}
	select {
	case codes := <-c.subacks:
		if len(codes) != 1 || codes[0] > 2 {
			return fmt.Errorf("subscribe %s: refused (%x)", filter, codes)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("subscribe %s: %w", filter, ctx.Err())
	case <-c.done:
		return c.closedErr()
	}
}

func (c *client) flush() {
	c.wmu.Lock()
	if c.w.Buffered() > 0 {
		_ = c.w.Flush()
	}
	c.wmu.Unlock()
}

// disconnect sends DISCONNECT and closes; cut closes without it, as a
// network failure would.
func (c *client) disconnect() {
	_ = c.send(0xe0, nil, true)
	_ = c.conn.Close()
	<-c.done
}

func (c *client) cut() {
	_ = c.conn.Close()
	<-c.done
}

func (c *client) closedErr() error {
	if c.err != nil {
		return c.err
	}
	return net.ErrClosed
}

// read dispatches incoming packets until the connection ends.
func (c *client) read(r *bufio.Reader) {
	defer close(c.done)
	var buf []byte
	for {
		typ, body, err := readPacket(r, buf)
		if err != nil {
			c.err = err
			_ = c.conn.Close()
			return
		}
		buf = body[:0]
		if r.Buffered() == 0 {
			c.flush()
		}
		switch typ {
		case 3: // PUBLISH
			topic, payload, id, qos, err := parsePublish(body, body[:0])
			if err != nil {
				c.err = err
				_ = c.conn.Close()
				return
			}
			if c.onMessage != nil {
				c.onMessage(topic, payload)
			}
			if qos > 0 {
				// Acknowledgements are coalesced: flushed once the
				// reader has drained what the kernel handed it.
				var ack [2]byte
				binary.BigEndian.PutUint16(ack[:], id)
				_ = c.send(0x40, ack[:], r.Buffered() == 0)
			}
			buf = nil // the callback may keep the payload
		case 4: // PUBACK
			select {
			case <-c.inflight:
			default:
			}
			c.acks.Add(1)
			if c.onAck != nil {
				c.onAck()
			}
		case 9: // SUBACK
			if len(body) >= 2 {
				select {
				case c.subacks <- append([]byte(nil), body[2:]...):
				default:
				}
			}
		}
	}
}

// errMalformed is a packet the client cannot decode.
var errMalformed = errors.New("malformed MQTT packet")

// maxPacket bounds what the client reads from a broker.
const maxPacket = 1 << 20

// readPacket reads one packet and returns its type (high nibble; the low
// nibble of a PUBLISH is folded into the body's first byte) and body.
// buf is reused when large enough.
func readPacket(r *bufio.Reader, buf []byte) (byte, []byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		mul *= 128
		if i == 3 {
			return 0, nil, errMalformed
		}
	}
	if n > maxPacket {
		return 0, nil, fmt.Errorf("%w: %d bytes", errMalformed, n)
	}
	typ := h >> 4
	extra := 0
	if typ == 3 {
		extra = 1 // keep the flags: QoS is needed to parse the body
	}
	if cap(buf) < n+extra {
		buf = make([]byte, n+extra)
	}
	buf = buf[:n+extra]
	if extra == 1 {
		buf[0] = h & 0x0f
	}
	if _, err := io.ReadFull(r, buf[extra:]); err != nil {
		return 0, nil, err
	}
	return typ, buf, nil
}

// parsePublish decodes a PUBLISH body as readPacket returns it (flags
// first).
func parsePublish(b, _ []byte) (topic string, payload []byte, id uint16, qos byte, err error) {
	if len(b) < 3 {
		return "", nil, 0, 0, errMalformed
	}
	qos = b[0] >> 1 & 3
	if qos > 2 {
		return "", nil, 0, 0, errMalformed
	}
	b = b[1:]
	tl := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+tl {
		return "", nil, 0, 0, errMalformed
	}
	topic = string(b[2 : 2+tl])
	b = b[2+tl:]
	if qos > 0 {
		if len(b) < 2 {
			return "", nil, 0, 0, errMalformed
		}
		id = binary.BigEndian.Uint16(b)
		b = b[2:]
	}
	return topic, b, id, qos, nil
}
