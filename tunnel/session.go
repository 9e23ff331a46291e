package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lastmile-dm/lastmile/internal/bufpool"
)

// Defaults for SessionConfig.
const (
	// DefaultWindow is each stream's receive window: the most bytes a peer
	// may send before the reader consumes them. It bounds memory per stream
	// and, with the round trip, throughput (docs/tunnel.md).
	DefaultWindow      = 512 << 10
	DefaultMaxStreams  = 16
	DefaultIdleTimeout = 15 * time.Minute
	DefaultMaxLifetime = 8 * time.Hour
	// maxControlQueue bounds frames queued by the receive path (resets,
	// pongs, refusals); a peer that makes more is broken or hostile.
	maxControlQueue = 1024
)

// Session errors.
var (
	// ErrSessionClosed: the session has ended; CloseError says why.
	ErrSessionClosed = errors.New("tunnel: session closed")
	// ErrStreamReset: the stream was reset; ResetError says why.
	ErrStreamReset = errors.New("tunnel: stream reset")
	// ErrWriteClosed: Write after CloseWrite.
	ErrWriteClosed = errors.New("tunnel: write after close")
)

// ReasonError carries the reason a session or stream ended or was refused.
// It matches ErrSessionClosed or ErrStreamReset with errors.Is.
type ReasonError struct {
	Reason  Reason
	Message string
	Remote  bool // the peer decided
	kind    error
}

func (e *ReasonError) Error() string {
	s := fmt.Sprint(e.Reason)
	if e.kind != nil {
		s = fmt.Sprintf("%v: %s", e.kind, e.Reason)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func (e *ReasonError) Unwrap() error { return e.kind }

// SessionConfig configures one side of a session. Both sides of a tunnel
// run a Session; package relay and package endpoint set it up.
type SessionConfig struct {
	ID       string
	DeviceID string
	// Send publishes one encoded frame to the peer. The session serialises
	// calls, so calls are in sequence-number order. Send must not keep
	// payload after it returns: the session reuses the buffer.
	Send func(ctx context.Context, payload []byte) error
	// Initiator is true on the side that opens streams (the platform): it
	// uses odd stream IDs, the other side even ones.
	Initiator bool

	Window       uint32        // per-stream receive window; default DefaultWindow
	MaxData      int           // largest data frame body; default DefaultMaxData
	MaxStreams   int           // concurrent streams; default DefaultMaxStreams
	IdleTimeout  time.Duration // no data either way for this long ends the session; <0 never
	MaxLifetime  time.Duration // the session ends this long after it began; <0 never
	PingInterval time.Duration // 0: no pings; else silence for 3 intervals ends the session

	// Accept is called on its own goroutine for each stream the peer opens;
	// it must call Stream.Accept or Stream.Refuse. Nil refuses them all.
	Accept func(*Stream)
	// Control receives the session-level frames the session does not
	// handle itself (session open, accept, reject). It runs on the receive
	// path and must not block.
	Control func(Frame)
	// Closed is called once, on its own goroutine, after the session ended
	// and its last frame was sent.
	Closed func(err *ReasonError, in, out int64)
	// StreamClosed is called after a stream ended (optional).
	StreamClosed func(id uint32, err error, in, out int64)

	Logger *slog.Logger
	Now    func() time.Time
}

// CheckAndSetDefaults validates c and fills defaults.
func (c *SessionConfig) CheckAndSetDefaults() error {
	if c.Send == nil {
		return errors.New("tunnel: SessionConfig.Send is required")
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.MaxData == 0 {
		c.MaxData = DefaultMaxData
	}
	if c.MaxData < 0 || c.MaxData > MaxData {
		return fmt.Errorf("tunnel: MaxData %d out of range 1..%d", c.MaxData, MaxData)
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxLifetime == 0 {
		c.MaxLifetime = DefaultMaxLifetime
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Session multiplexes streams over one pair of MQTT topics. Frames arrive
// through Deliver; frames leave through Config.Send, numbered per
// direction so that a lost frame is noticed (and ends the session) and a
// duplicate is dropped.
//
// Lock order: Session.mu before Stream.mu; sendMu is taken alone.
type Session struct {
	cfg    SessionConfig
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	sendMu  sync.Mutex
	sendSeq uint64

	mu       sync.Mutex
	recvSeq  uint64
	streams  map[uint32]*Stream
	nextID   uint32
	queue    []Frame // control frames from the receive path
	closeErr *ReasonError
	notify   bool // send SessionClose when closing
	started  time.Time

	lastData atomic.Int64 // unix nanos of the last data frame either way
	lastRecv atomic.Int64 // unix nanos of the last frame received
	in, out  atomic.Int64 // data bytes

	wake chan struct{}
	done chan struct{}
}

// NewSession starts a session: its writer and its timers.
func NewSession(cfg SessionConfig) (*Session, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Session{cfg: cfg, ctx: ctx, cancel: cancel, streams: map[uint32]*Stream{},
		log:  cfg.Logger.With("session", cfg.ID, "device", cfg.DeviceID),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.nextID = 2
	if cfg.Initiator {
		s.nextID = 1
	}
	now := cfg.Now()
	s.started = now
	s.lastData.Store(now.UnixNano())
	s.lastRecv.Store(now.UnixNano())
	go s.writer()
	go s.timers()
	return s, nil
}

// ID returns the session ID.
func (s *Session) ID() string { return s.cfg.ID }

// MaxData returns the largest data frame body the session sends.
func (s *Session) MaxData() int { return s.cfg.MaxData }

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended, or nil while it runs.
func (s *Session) Err() *ReasonError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeErr
}

// Bytes returns the data bytes received from and sent to the peer.
func (s *Session) Bytes() (in, out int64) { return s.in.Load(), s.out.Load() }

// Streams returns how many streams are open.
func (s *Session) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// Close ends the session, telling the peer why.
func (s *Session) Close(r Reason, msg string) { s.close(&ReasonError{Reason: r, Message: msg}, true) }

// Reject answers a session open with a refusal and ends the session.
func (s *Session) Reject(r Reason, msg string) {
	s.enqueue(Frame{Type: TypeSessionReject, Reason: r, Message: msg})
	s.close(&ReasonError{Reason: r, Message: msg}, false)
}

// SendControl sends a session-level frame (session open or accept) in
// order with the others.
func (s *Session) SendControl(ctx context.Context, f Frame) error {
	return s.send(ctx, f)
}

func (s *Session) close(e *ReasonError, notify bool) {
	e.kind = ErrSessionClosed
	s.mu.Lock()
	if s.closeErr != nil {
		s.mu.Unlock()
		return
	}
	s.closeErr = e
	s.notify = notify
	streams := s.streams
	s.streams = map[uint32]*Stream{}
	if notify {
		s.queue = append(s.queue, Frame{Type: TypeSessionClose, Reason: e.Reason, Message: e.Message})
	}
	s.mu.Unlock()
	for _, st := range streams {
		st.fail(&ReasonError{Reason: e.Reason, Message: e.Message, Remote: e.Remote, kind: ErrStreamReset}, false)
	}
	close(s.done)
}

// enqueue hands a frame to the writer; it never blocks.
func (s *Session) enqueue(f Frame) {
	s.mu.Lock()
	if len(s.queue) >= maxControlQueue {
		s.mu.Unlock()
		s.close(&ReasonError{Reason: ReasonProtocol, Message: "control queue overflow"}, true)
		return
	}
	s.queue = append(s.queue, f)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// writer sends queued control frames; after the session closed it sends
// what is left (the SessionClose last) and reports the end.
func (s *Session) writer() {
	for {
		var ended bool
		select {
		case <-s.wake:
		case <-s.done:
			ended = true
		}
		s.mu.Lock()
		q := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, f := range q {
			if err := s.send(s.ctx, f); err != nil {
				s.log.Debug("tunnel frame not sent", "type", f.Type, "error", err)
			}
		}
		if ended {
			s.cancel()
			if s.cfg.Closed != nil {
				s.cfg.Closed(s.Err(), s.in.Load(), s.out.Load())
			}
			return
		}
	}
}

func (s *Session) timers() {
	tick := time.Second
	for _, d := range []time.Duration{s.cfg.IdleTimeout / 4, s.cfg.MaxLifetime / 4, s.cfg.PingInterval} {
		if d > 0 && d < tick {
			tick = d
		}
	}
	tick = max(tick, 5*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	var lastPing time.Time
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		now := s.cfg.Now()
		switch {
		case s.cfg.MaxLifetime > 0 && now.Sub(s.started) >= s.cfg.MaxLifetime:
			s.Close(ReasonLifetime, fmt.Sprintf("session older than %v", s.cfg.MaxLifetime))
		case s.cfg.IdleTimeout > 0 && now.Sub(time.Unix(0, s.lastData.Load())) >= s.cfg.IdleTimeout:
			s.Close(ReasonIdle, fmt.Sprintf("no data for %v", s.cfg.IdleTimeout))
		case s.cfg.PingInterval > 0 && now.Sub(time.Unix(0, s.lastRecv.Load())) >= 3*s.cfg.PingInterval:
			s.close(&ReasonError{Reason: ReasonPeerGone, Message: "no answer to pings"}, true)
		case s.cfg.PingInterval > 0 && now.Sub(lastPing) >= s.cfg.PingInterval:
			lastPing = now
			s.enqueue(Frame{Type: TypePing, Nonce: uint64(now.UnixNano())}) //nolint:gosec // any value
		}
	}
}

// send numbers, encodes and publishes f.
func (s *Session) send(ctx context.Context, f Frame) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	f.Seq = s.sendSeq + 1
	// Send does not keep the payload (SessionConfig.Send), so the encoded
	// frame goes back to the pool once it is published.
	bp := bufpool.Get(f.encodedLen())
	defer bufpool.Put(bp)
	b, err := f.Append((*bp)[:0])
	if err != nil {
		return err
	}
	*bp = b
	if err := s.cfg.Send(ctx, b); err != nil {
		return fmt.Errorf("send %s: %w", f.Type, err)
	}
	s.sendSeq = f.Seq
	return nil
}

// sendData numbers and publishes one data frame of the next n bytes of
// *bufs (n > 0, at most MaxData, no more than *bufs holds), and advances
// *bufs past them. The bytes are copied once, into the frame.
func (s *Session) sendData(ctx context.Context, stream uint32, bufs *[][]byte, n int) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	seq := s.sendSeq + 1
	bp := bufpool.Get(HeaderLen + n)
	defer bufpool.Put(bp)
	b := appendHeader((*bp)[:0], TypeData, seq, stream)
	for len(b) < HeaderLen+n {
		v := (*bufs)[0]
		k := min(len(v), HeaderLen+n-len(b))
		b = append(b, v[:k]...)
		if k == len(v) {
			*bufs = (*bufs)[1:]
		} else {
			(*bufs)[0] = v[k:]
		}
	}
	*bp = b
	if err := s.cfg.Send(ctx, b); err != nil {
		return fmt.Errorf("send %s: %w", TypeData, err)
	}
	s.sendSeq = seq
	return nil
}

// Deliver hands the session one received payload. It never blocks, so it
// may run on an MQTT receive goroutine, and it copies what it keeps.
func (s *Session) Deliver(payload []byte) {
	f, err := Decode(payload)
	if err != nil {
		s.close(&ReasonError{Reason: ReasonProtocol, Message: err.Error()}, true)
		return
	}
	s.DeliverFrame(f)
}

// DeliverFrame is Deliver for a decoded frame.
func (s *Session) DeliverFrame(f Frame) {
	s.mu.Lock()
	if s.closeErr != nil {
		s.mu.Unlock()
		return
	}
	switch {
	case f.Seq <= s.recvSeq:
		s.mu.Unlock() // a duplicate (QoS 1 redelivery)
		return
	case f.Seq != s.recvSeq+1:
		s.mu.Unlock()
		s.close(&ReasonError{Reason: ReasonLost, Message: fmt.Sprintf("expected frame %d, got %d", s.recvSeq+1, f.Seq)}, true)
		return
	}
	s.recvSeq = f.Seq
	now := s.cfg.Now().UnixNano()
	s.lastRecv.Store(now)
	if f.Stream == 0 {
		s.mu.Unlock()
		s.session(f)
		return
	}
	st := s.streams[f.Stream]
	if f.Type == TypeOpen {
		s.lastData.Store(now)
		s.mu.Unlock()
		s.peerOpen(f, st)
		return
	}
	s.mu.Unlock()
	if st == nil {
		if f.Type == TypeData {
			s.enqueue(Frame{Type: TypeReset, Stream: f.Stream, Reason: ReasonUnknown})
		}
		return
	}
	if f.Type == TypeData {
		s.lastData.Store(now)
	}
	st.deliver(f)
}

func (s *Session) session(f Frame) {
	switch f.Type {
	case TypeSessionClose:
		s.close(&ReasonError{Reason: f.Reason, Message: f.Message, Remote: true}, false)
	case TypePing:
		s.enqueue(Frame{Type: TypePong, Nonce: f.Nonce})
	case TypePong:
	default:
		if s.cfg.Control != nil {
			s.cfg.Control(f)
		}
	}
}

func (s *Session) peerOpen(f Frame, existing *Stream) {
	refuse := func(r Reason, msg string) {
		s.enqueue(Frame{Type: TypeReject, Stream: f.Stream, Reason: r, Message: msg})
	}
	switch {
	case existing != nil || (f.Stream%2 == 1) != !s.cfg.Initiator:
		s.close(&ReasonError{Reason: ReasonProtocol, Message: fmt.Sprintf("bad stream ID %d", f.Stream)}, true)
		return
	case s.cfg.Accept == nil:
		refuse(ReasonProtocol, "this side does not accept streams")
		return
	}
	st := newStream(s, f.Stream, f.Window)
	s.mu.Lock()
	if len(s.streams) >= s.cfg.MaxStreams {
		s.mu.Unlock()
		refuse(ReasonTooMany, fmt.Sprintf("at most %d streams per session", s.cfg.MaxStreams))
		return
	}
	s.streams[f.Stream] = st
	s.mu.Unlock()
	go s.cfg.Accept(st)
}

// Open opens a stream and waits until the peer accepts or refuses it.
func (s *Session) Open(ctx context.Context) (*Stream, error) {
	s.mu.Lock()
	if s.closeErr != nil {
		err := s.closeErr
		s.mu.Unlock()
		return nil, err
	}
	if len(s.streams) >= s.cfg.MaxStreams {
		s.mu.Unlock()
		return nil, &ReasonError{Reason: ReasonTooMany, Message: fmt.Sprintf("at most %d streams per session", s.cfg.MaxStreams), kind: ErrStreamReset}
	}
	id := s.nextID
	s.nextID += 2
	st := newStream(s, id, 0)
	st.opening = true
	s.streams[id] = st
	s.mu.Unlock()
	s.lastData.Store(s.cfg.Now().UnixNano())
	if err := s.send(ctx, Frame{Type: TypeOpen, Stream: id, Window: s.cfg.Window}); err != nil {
		st.fail(&ReasonError{Reason: ReasonShutdown, Message: err.Error(), kind: ErrStreamReset}, false)
		return nil, err
	}
	select {
	case <-st.accepted:
	case <-ctx.Done():
		st.Reset(ReasonNormal, "open abandoned")
		return nil, ctx.Err()
	}
	st.mu.Lock()
	err := st.err
	st.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (s *Session) forget(st *Stream) {
	s.mu.Lock()
	if s.streams[st.id] == st {
		delete(s.streams, st.id)
	}
	s.mu.Unlock()
	if s.cfg.StreamClosed != nil {
		st.mu.Lock()
		err, in, out := st.err, st.in, st.out
		st.mu.Unlock()
		s.cfg.StreamClosed(st.id, err, in, out)
	}
}
