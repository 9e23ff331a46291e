package conn

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// session3 is a minimal MQTT 3.1.1 client, used when the server refuses
// MQTT 5. It does what the agent needs and no more: CONNECT with a clean
// session, PUBLISH at QoS 0 and 1, SUBSCRIBE at QoS 1, keepalive, and
// DISCONNECT. Written here rather than linking paho.mqtt.golang, which
// brings net/http, a WebSocket library and a proxy dialer (about 1 MB) into
// a binary for small CPEs.
type session3 struct {
	c       net.Conn
	handler func(Message)
	done    chan struct{}

	wmu       sync.Mutex // one packet at a time on the wire
	lastWrite time.Time

	mu       sync.Mutex
	err      error
	nextID   uint16
	pending  map[uint16]chan []byte // packet ID -> PUBACK / SUBACK body
	lastRead time.Time
}

var _ Session = (*session3)(nil)

// maxPacket bounds what the session reads: a bigger packet ends it.
const maxPacket = 1 << 20

// MQTT 3.1.1 packet types (high nibble of the first byte).
const (
	pConnect    = 1
	pConnack    = 2
	pPublish    = 3
	pPuback     = 4
	pSubscribe  = 8
	pSuback     = 9
	pPingreq    = 12
	pPingresp   = 13
	pDisconnect = 14
)

// connackReasons3 names the CONNACK return codes of 3.1.1.
var connackReasons3 = map[byte]string{
	1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
	4: "bad user name or password", 5: "not authorized",
}

func connect3(ctx context.Context, cfg Config, handler func(Message)) (*session3, error) {
	nc, err := dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &session3{c: nc, handler: handler, done: make(chan struct{}), pending: map[uint16]chan []byte{}}
	deadline := time.Now().Add(cfg.ConnectTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = nc.SetDeadline(deadline)
	if err := s.write(encodeConnect3(cfg)); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("MQTT 3.1.1 connect: %w", err)
	}
	r := bufio.NewReader(nc)
	typ, _, body, err := readPacket(r)
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("MQTT 3.1.1 connect: %w", err)
	}
	if typ != pConnack || len(body) != 2 {
		_ = nc.Close()
		return nil, fmt.Errorf("MQTT 3.1.1 connect: %w: packet type %d instead of CONNACK", ErrMalformed, typ)
	}
	if rc := body[1]; rc != 0 {
		_ = nc.Close()
		return nil, fmt.Errorf("%w: MQTT 3.1.1 CONNACK return code %d (%s)", ErrRefused, rc, connackReasons3[rc])
	}
	_ = nc.SetDeadline(time.Time{})
	s.lastRead = time.Now()
	go s.readLoop(r)
	go s.keepalive(cfg.Keepalive)
	return s, nil
}

// ErrMalformed is a packet that breaks the protocol.
var ErrMalformed = errors.New("malformed MQTT packet")

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// frame prepends the fixed header to body.
func frame(first byte, body []byte) []byte {
	out := []byte{first}
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		out = append(out, d)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func encodeConnect3(cfg Config) []byte {
	flags := byte(0x02) // clean session: the agent's spool holds what must survive
	if cfg.Username != "" {
		flags |= 0x80
	}
	if cfg.Password != "" {
		flags |= 0x40
	}
	b := appendString(nil, "MQTT")
	b = append(b, 4, flags)
	b = binary.BigEndian.AppendUint16(b, uint16(cfg.Keepalive/time.Second))
	b = appendString(b, cfg.ClientID)
	if cfg.Username != "" {
		b = appendString(b, cfg.Username)
	}
	if cfg.Password != "" {
		b = appendString(b, cfg.Password)
	}
	return frame(pConnect<<4, b)
}

// packetReader is what readPacket reads from: a *bufio.Reader.
type packetReader interface {
	io.ByteReader
	io.Reader
}

// readPacket reads one packet: its type, flags and body.
func readPacket(r packetReader) (typ, flags byte, body []byte, err error) {
	first, err := r.ReadByte()
	if err != nil {
		return 0, 0, nil, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return 0, 0, nil, fmt.Errorf("%w: remaining length longer than 4 bytes", ErrMalformed)
		}
		d, err := r.ReadByte()
		if err != nil {
			return 0, 0, nil, err
		}
		n += int(d&0x7F) * mult
		mult *= 128
		if d&0x80 == 0 {
			break
		}
	}
	if n > maxPacket {
		return 0, 0, nil, fmt.Errorf("%w: %d-byte packet, at most %d", ErrMalformed, n, maxPacket)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, nil, err
	}
	return first >> 4, first & 0x0F, body, nil
}

// parsePublish decodes a PUBLISH body.
func parsePublish(flags byte, body []byte) (topic string, qos byte, id uint16, payload []byte, err error) {
	qos = (flags >> 1) & 3
	if qos == 3 || len(body) < 2 {
		return "", 0, 0, nil, fmt.Errorf("%w: PUBLISH flags 0x%x, %d bytes", ErrMalformed, flags, len(body))
	}
	tl := int(binary.BigEndian.Uint16(body))
	rest := body[2:]
	if tl == 0 || tl > len(rest) {
		return "", 0, 0, nil, fmt.Errorf("%w: PUBLISH topic length %d", ErrMalformed, tl)
	}
	topic, rest = string(rest[:tl]), rest[tl:]
	if qos > 0 {
		if len(rest) < 2 {
			return "", 0, 0, nil, fmt.Errorf("%w: PUBLISH without a packet ID", ErrMalformed)
		}
		id, rest = binary.BigEndian.Uint16(rest), rest[2:]
	}
	return topic, qos, id, rest, nil
}

func (s *session3) write(p []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.c.Write(p)
	s.lastWrite = time.Now()
	return err
}

// end closes the session once, with the first reason.
func (s *session3) end(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	s.mu.Unlock()
	_ = s.c.Close()
	close(s.done)
}

func (s *session3) readLoop(r *bufio.Reader) {
	for {
		typ, flags, body, err := readPacket(r)
		if err != nil {
			s.end(fmt.Errorf("read: %w", err))
			return
		}
		s.mu.Lock()
		s.lastRead = time.Now()
		s.mu.Unlock()
		switch typ {
		case pPublish:
			topic, qos, id, payload, err := parsePublish(flags, body)
			if err == nil && qos == 2 {
				err = fmt.Errorf("%w: QoS 2 PUBLISH on a QoS 1 subscription", ErrMalformed)
			}
			if err != nil {
				s.end(err)
				return
			}
			s.handler(Message{Topic: topic, Payload: append([]byte(nil), payload...), QoS: qos})
			if qos == 1 {
				if err := s.write(frame(pPuback<<4, binary.BigEndian.AppendUint16(nil, id))); err != nil {
					s.end(err)
					return
				}
			}
		case pPuback, pSuback:
			if len(body) < 2 {
				s.end(fmt.Errorf("%w: %d-byte ack", ErrMalformed, len(body)))
				return
			}
			id := binary.BigEndian.Uint16(body)
			s.mu.Lock()
			ch := s.pending[id]
			delete(s.pending, id)
			s.mu.Unlock()
			if ch != nil {
				ch <- body[2:]
			}
		case pPingresp:
		default:
			s.end(fmt.Errorf("%w: unexpected packet type %d", ErrMalformed, typ))
			return
		}
	}
}

// keepalive sends PINGREQ when the session was quiet for half the
// keepalive, and ends it when the server was silent for 1.5 keepalives.
func (s *session3) keepalive(k time.Duration) {
	t := time.NewTicker(k / 4)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		silent := time.Since(s.lastRead)
		s.mu.Unlock()
		if silent > k*3/2 {
			s.end(fmt.Errorf("keepalive: no packet from the server for %s", silent.Round(time.Millisecond)))
			return
		}
		s.wmu.Lock()
		quiet := time.Since(s.lastWrite)
		s.wmu.Unlock()
		if quiet >= k/2 {
			if err := s.write([]byte{pPingreq << 4, 0}); err != nil {
				s.end(err)
				return
			}
		}
	}
}

// request sends a packet with a fresh packet ID and waits for its ack.
func (s *session3) request(ctx context.Context, build func(id uint16) []byte) ([]byte, error) {
	ch := make(chan []byte, 1)
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrClosed, s.err)
	}
	var id uint16
	for {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		if _, used := s.pending[s.nextID]; !used {
			id = s.nextID
			break
		}
	}
	s.pending[id] = ch
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}
	if err := s.write(build(id)); err != nil {
		forget()
		s.end(err)
		return nil, err
	}
	select {
	case body := <-ch:
		return body, nil
	case <-s.done:
		forget()
		return nil, fmt.Errorf("%w: %w", ErrClosed, s.Err())
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
}

func (s *session3) Publish(ctx context.Context, m Outgoing) error {
	if m.QoS > 1 {
		return fmt.Errorf("publish %s: QoS %d: this client publishes at QoS 0 or 1", m.Topic, m.QoS)
	}
	build := func(id uint16) []byte {
		b := appendString(nil, m.Topic)
		if m.QoS == 1 {
			b = binary.BigEndian.AppendUint16(b, id)
		}
		return frame(pPublish<<4|m.QoS<<1, append(b, m.Payload...))
	}
	if m.QoS == 0 {
		return s.write(build(0))
	}
	if _, err := s.request(ctx, build); err != nil {
		return fmt.Errorf("publish %s: %w", m.Topic, err)
	}
	return nil
}

func (s *session3) Subscribe(ctx context.Context, filters ...string) error {
	codes, err := s.request(ctx, func(id uint16) []byte {
		b := binary.BigEndian.AppendUint16(nil, id)
		for _, f := range filters {
			b = append(appendString(b, f), 1)
		}
		return frame(pSubscribe<<4|0x02, b)
	})
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for i, c := range codes {
		if c >= 0x80 && i < len(filters) {
			return fmt.Errorf("%w: SUBACK 0x%02x for %s", ErrRefused, c, filters[i])
		}
	}
	return nil
}

func (s *session3) Done() <-chan struct{} { return s.done }

func (s *session3) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		return ErrClosed
	}
	return s.err
}

func (s *session3) Protocol() Protocol { return MQTT3 }

func (s *session3) Close() error {
	_ = s.c.SetWriteDeadline(time.Now().Add(time.Second))
	_ = s.write([]byte{pDisconnect << 4, 0})
	s.end(ErrClosed)
	return nil
}
