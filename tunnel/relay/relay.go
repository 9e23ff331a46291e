// Package relay is the platform side of the tunnel: it opens sessions to
// devices on an operator's behalf, signs each session's token, and hands
// out streams that the northbound API or a local listener splice to TCP
// connections. It talks MQTT only through tunnel.PubSub (in the server, the
// broker's in-process platform messaging).
package relay

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/dm/topic"
	"github.com/lastmile-dm/lastmile/tunnel"
)

// Defaults for Config.
const (
	DefaultTokenTTL     = 30 * time.Second
	DefaultOpenTimeout  = 10 * time.Second
	DefaultPingInterval = 30 * time.Second
)

// Errors.
var (
	// ErrNotFound: no session with that ID.
	ErrNotFound = errors.New("relay: session not found")
	// ErrInvalid: a request field is malformed (device ID, target).
	ErrInvalid = errors.New("relay: invalid argument")
	// ErrNoAnswer: the device did not answer the session open in time
	// (offline, no tunnel endpoint, or frames lost).
	ErrNoAnswer = errors.New("relay: device did not answer")
	// ErrRejected: the device refused the session; the error is a
	// *tunnel.ReasonError too, saying why.
	ErrRejected = errors.New("relay: session refused by device")
)

// Config configures a Relay.
type Config struct {
	PubSub tunnel.PubSub // required
	// SigningKey signs session tokens; agents trust its public key.
	SigningKey ed25519.PrivateKey // required
	QoS        byte               // MQTT QoS of tunnel frames; default 0 (docs/tunnel.md)

	TokenTTL     time.Duration // default DefaultTokenTTL
	OpenTimeout  time.Duration // wait for the device's answer; default DefaultOpenTimeout
	IdleTimeout  time.Duration // default tunnel.DefaultIdleTimeout; <0 never
	MaxLifetime  time.Duration // default tunnel.DefaultMaxLifetime; <0 never
	PingInterval time.Duration // default DefaultPingInterval; <0 no pings
	Window       uint32        // per-stream receive window; default tunnel.DefaultWindow
	MaxData      int           // data frame size; default tunnel.DefaultMaxData
	MaxStreams   int           // per session; default tunnel.DefaultMaxStreams

	// Connected reports whether a device is connected to this node
	// (optional): a session to an offline device then fails at once
	// instead of after OpenTimeout.
	Connected func(deviceID string) bool

	Audit      tunnel.Auditor        // optional
	Registerer prometheus.Registerer // optional: lastmile_tunnel_* metrics
	Logger     *slog.Logger
	Now        func() time.Time
}

// CheckAndSetDefaults validates c and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	switch {
	case c.PubSub == nil:
		return errors.New("relay: PubSub is required")
	case len(c.SigningKey) != ed25519.PrivateKeySize:
		return errors.New("relay: SigningKey must be an Ed25519 private key")
	case c.QoS > 1:
		return fmt.Errorf("relay: QoS %d (0 or 1)", c.QoS)
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.OpenTimeout == 0 {
		c.OpenTimeout = DefaultOpenTimeout
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PingInterval < 0 {
		c.PingInterval = 0
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Audit == nil {
		c.Audit = tunnel.AuditFunc(func(tunnel.Event) {})
	}
	return nil
}

// Relay opens and tracks tunnel sessions. It is safe for concurrent use.
type Relay struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu       sync.Mutex
	sessions map[string]*Session
}

// New returns a Relay.
func New(cfg Config) (*Relay, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("relay metrics: %w", err)
	}
	return &Relay{cfg: cfg, log: cfg.Logger.With("component", "tunnel-relay"), metrics: m, sessions: map[string]*Session{}}, nil
}

// OpenRequest asks for a session.
type OpenRequest struct {
	DeviceID  string
	Target    string // host:port as the device sees it
	Principal string // who asks, for audit
}

// Info describes a session.
type Info struct {
	ID        string
	DeviceID  string
	Target    string
	Principal string
	Opened    time.Time
	Streams   int
	BytesIn   int64 // from the device
	BytesOut  int64 // to the device
}

// Session is an open tunnel session on the platform side.
type Session struct {
	*tunnel.Session
	info    Info
	answer  chan tunnel.Frame
	cancel  func()
	relay   *Relay
	closing sync.Once
	counted atomic.Bool   // in the open-sessions gauge
	opened  sync.Map      // stream IDs accepted by the device
	ended   chan struct{} // closed once the session's end is recorded
}

// Ended is closed once the session has ended and its end is audited and
// counted.
func (s *Session) Ended() <-chan struct{} { return s.ended }

// Info describes the session now.
func (s *Session) Info() Info {
	i := s.info
	i.Streams = s.Streams()
	i.BytesIn, i.BytesOut = s.Bytes()
	return i
}

// ValidTarget reports whether target is a host:port a session can name.
func ValidTarget(target string) error {
	host, port, err := net.SplitHostPort(target)
	if err != nil || host == "" || port == "" || len(target) > tunnel.MaxTargetLen || !utf8.ValidString(target) {
		return fmt.Errorf("%w: target %q is not host:port", ErrInvalid, target)
	}
	return nil
}

// Open opens a session to req.Target on req.DeviceID and waits for the
// device to accept it.
func (r *Relay) Open(ctx context.Context, req OpenRequest) (*Session, error) {
	if !topic.ValidDeviceID(req.DeviceID) {
		return nil, fmt.Errorf("%w: device ID %q", ErrInvalid, req.DeviceID)
	}
	if err := ValidTarget(req.Target); err != nil {
		return nil, err
	}
	if r.cfg.Connected != nil && !r.cfg.Connected(req.DeviceID) {
		return nil, fmt.Errorf("%w: device %s is not connected", ErrNoAnswer, req.DeviceID)
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	now := r.cfg.Now()
	tok, err := tunnel.SignToken(tunnel.Claims{Device: req.DeviceID, Session: id, Target: req.Target,
		Principal: req.Principal, IssuedAt: now.Unix(), Expires: now.Add(r.cfg.TokenTTL).Unix()}, r.cfg.SigningKey)
	if err != nil {
		return nil, err
	}
	s := &Session{info: Info{ID: id, DeviceID: req.DeviceID, Target: req.Target, Principal: req.Principal, Opened: now},
		answer: make(chan tunnel.Frame, 1), relay: r, ended: make(chan struct{})}
	down := topic.TunnelDownTopic(req.DeviceID, id)
	log := r.log.With("device", req.DeviceID, "session", id)
	ts, err := tunnel.NewSession(tunnel.SessionConfig{
		ID: id, DeviceID: req.DeviceID, Initiator: true,
		Send: func(ctx context.Context, b []byte) error {
			return r.cfg.PubSub.Publish(ctx, down, r.cfg.QoS, b)
		},
		Window: r.cfg.Window, MaxData: r.cfg.MaxData, MaxStreams: r.cfg.MaxStreams,
		IdleTimeout: r.cfg.IdleTimeout, MaxLifetime: r.cfg.MaxLifetime, PingInterval: r.cfg.PingInterval,
		Control: func(f tunnel.Frame) {
			if f.Type == tunnel.TypeSessionAccept || f.Type == tunnel.TypeSessionReject {
				select {
				case s.answer <- f:
				default:
				}
			}
		},
		Closed: func(e *tunnel.ReasonError, in, out int64) { r.closed(s, e, in, out) },
		StreamClosed: func(stream uint32, err error, in, out int64) {
			if _, opened := s.opened.LoadAndDelete(stream); !opened {
				return // refused: audited as a reject
			}
			ev := r.event(s, tunnel.EventStreamClose)
			ev.Stream, ev.BytesIn, ev.BytesOut = stream, in, out
			setReason(&ev, err)
			r.cfg.Audit.Audit(ev)
		},
		Logger: log, Now: r.cfg.Now,
	})
	if err != nil {
		return nil, err
	}
	s.Session = ts
	cancel, err := r.cfg.PubSub.Subscribe(topic.TunnelUpTopic(req.DeviceID, id), r.cfg.QoS, func(_ string, b []byte) {
		ts.Deliver(b)
	})
	if err != nil {
		ts.Close(tunnel.ReasonShutdown, "subscribe failed")
		return nil, fmt.Errorf("subscribe to device's tunnel topic: %w", err)
	}
	s.cancel = cancel
	r.mu.Lock()
	r.sessions[id] = s
	r.mu.Unlock()

	ctx, done := context.WithTimeout(ctx, r.cfg.OpenTimeout)
	defer done()
	if err := ts.SendControl(ctx, tunnel.Frame{Type: tunnel.TypeSessionOpen, Target: req.Target, Token: tok}); err != nil {
		s.abandon(tunnel.ReasonShutdown, "could not send session open")
		return nil, fmt.Errorf("send session open: %w", err)
	}
	select {
	case f := <-s.answer:
		if f.Type == tunnel.TypeSessionReject {
			s.abandon(f.Reason, f.Message)
			rej := &tunnel.ReasonError{Reason: f.Reason, Message: f.Message, Remote: true}
			ev := r.event(s, tunnel.EventSessionReject)
			ev.Reason, ev.Message = f.Reason, f.Message
			r.cfg.Audit.Audit(ev)
			r.metrics.sessions.WithLabelValues("refused").Inc()
			log.Info("tunnel session refused by device", "target", req.Target, "reason", f.Reason, "message", f.Message)
			return nil, fmt.Errorf("%w: %w", ErrRejected, rej)
		}
	case <-ts.Done():
		r.metrics.sessions.WithLabelValues("no_answer").Inc()
		return nil, fmt.Errorf("%w: %w", ErrNoAnswer, ts.Err())
	case <-ctx.Done():
		s.abandon(tunnel.ReasonShutdown, "no answer")
		r.metrics.sessions.WithLabelValues("no_answer").Inc()
		return nil, fmt.Errorf("%w within %v", ErrNoAnswer, r.cfg.OpenTimeout)
	}
	r.metrics.sessions.WithLabelValues("accepted").Inc()
	r.metrics.open.Inc()
	s.counted.Store(true)
	r.cfg.Audit.Audit(r.event(s, tunnel.EventSessionOpen))
	log.Info("tunnel session open", "target", req.Target, "principal", req.Principal)
	return s, nil
}

// abandon ends a session that never opened, with no close audit event.
func (s *Session) abandon(reason tunnel.Reason, msg string) {
	s.closing.Do(func() {})
	s.Close(reason, msg)
}

func (r *Relay) event(s *Session, k tunnel.EventKind) tunnel.Event {
	return tunnel.Event{Kind: k, At: r.cfg.Now(), DeviceID: s.info.DeviceID, SessionID: s.info.ID,
		Target: s.info.Target, Principal: s.info.Principal}
}

func setReason(ev *tunnel.Event, err error) {
	var re *tunnel.ReasonError
	if errors.As(err, &re) {
		ev.Reason, ev.Message = re.Reason, re.Message
	}
}

func (r *Relay) closed(s *Session, e *tunnel.ReasonError, in, out int64) {
	defer close(s.ended)
	if s.cancel != nil {
		s.cancel()
	}
	r.mu.Lock()
	delete(r.sessions, s.info.ID)
	r.mu.Unlock()
	if s.counted.CompareAndSwap(true, false) {
		reason := tunnel.ReasonNormal
		if e != nil {
			reason = e.Reason
		}
		r.metrics.sessionClosed(reason, in, out)
	}
	s.closing.Do(func() {
		ev := r.event(s, tunnel.EventSessionClose)
		ev.BytesIn, ev.BytesOut = in, out
		if e != nil {
			ev.Reason, ev.Message = e.Reason, e.Message
		}
		r.cfg.Audit.Audit(ev)
		r.log.Info("tunnel session closed", "device", s.info.DeviceID, "session", s.info.ID,
			"reason", ev.Reason, "message", ev.Message, "bytes_in", in, "bytes_out", out)
	})
}

// Get returns an open session.
func (r *Relay) Get(id string) (*Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sessions[id]
	if !ok || !s.counted.Load() {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return s, nil
}

// List describes the open sessions (accepted by the device), oldest first.
func (r *Relay) List() []Info {
	r.mu.Lock()
	ss := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		if s.counted.Load() { // accepted and not yet ended
			ss = append(ss, s)
		}
	}
	r.mu.Unlock()
	out := make([]Info, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.Info())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Opened.Equal(out[j].Opened) {
			return out[i].Opened.Before(out[j].Opened)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Close ends a session on an operator's request.
func (r *Relay) Close(id string) error {
	s, err := r.Get(id)
	if err != nil {
		return err
	}
	s.Close(tunnel.ReasonClosedByUser, "")
	<-s.ended
	return nil
}

// Shutdown ends every session.
func (r *Relay) Shutdown() {
	r.mu.Lock()
	ss := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		ss = append(ss, s)
	}
	r.mu.Unlock()
	for _, s := range ss {
		s.Close(tunnel.ReasonShutdown, "platform shutting down")
	}
}

// Dial opens a stream to the session's target.
func (s *Session) Dial(ctx context.Context) (*tunnel.Stream, error) {
	st, err := s.Open(ctx)
	if err != nil {
		s.relay.metrics.streams.WithLabelValues("refused").Inc()
		ev := s.relay.event(s, tunnel.EventStreamReject)
		setReason(&ev, err)
		s.relay.cfg.Audit.Audit(ev)
		return nil, err
	}
	s.opened.Store(st.ID(), true)
	s.relay.metrics.streams.WithLabelValues("opened").Inc()
	ev := s.relay.event(s, tunnel.EventStreamOpen)
	ev.Stream = st.ID()
	s.relay.cfg.Audit.Audit(ev)
	return st, nil
}

// PublicKey returns the key agents trust to check this relay's tokens.
func (r *Relay) PublicKey() ed25519.PublicKey {
	return r.cfg.SigningKey.Public().(ed25519.PublicKey)
}
