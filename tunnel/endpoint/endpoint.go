// Package endpoint is the device side of the tunnel, hosted by the agent:
// it answers session opens from the platform, checks each session's token
// and the target against the allow-list, and splices every stream the
// platform opens to a fresh TCP connection to the target. It talks MQTT
// only through tunnel.PubSub (the agent's client connection) and links no
// server dependencies.
package endpoint

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lastmile-dm/lastmile/dm/topic"
	"github.com/lastmile-dm/lastmile/tunnel"
)

// Defaults for Config.
const (
	DefaultMaxSessions  = 3
	DefaultDialTimeout  = 10 * time.Second
	DefaultPingInterval = 30 * time.Second
)

// Config configures an Endpoint.
type Config struct {
	DeviceID string        // required: this device
	PubSub   tunnel.PubSub // required: the agent's MQTT connection
	// AllowList holds the only targets sessions may reach, as host:port
	// exactly as the platform names them ("127.0.0.1:22"). Empty refuses
	// every session.
	AllowList []string
	// TrustedKeys verify session tokens (the platform's tunnel signing
	// public keys; several during a key rotation). Required.
	TrustedKeys []ed25519.PublicKey
	QoS         byte // of tunnel frames; must match the platform's

	IdleTimeout time.Duration // default tunnel.DefaultIdleTimeout; <0 never
	MaxLifetime time.Duration // default tunnel.DefaultMaxLifetime; <0 never
	// PingInterval: the agent pings the platform this often and ends a
	// session silent for three intervals (a platform node that died);
	// default DefaultPingInterval, <0 never.
	PingInterval time.Duration
	MaxSessions  int           // concurrent sessions; default DefaultMaxSessions
	MaxStreams   int           // per session; default tunnel.DefaultMaxStreams
	Window       uint32        // per-stream receive window; default tunnel.DefaultWindow
	MaxData      int           // data frame size; default tunnel.DefaultMaxData
	DialTimeout  time.Duration // default DefaultDialTimeout
	// Dial connects to a target; default a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	Audit  tunnel.Auditor // optional
	Logger *slog.Logger
	Now    func() time.Time
}

// CheckAndSetDefaults validates c and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	switch {
	case !topic.ValidDeviceID(c.DeviceID):
		return fmt.Errorf("endpoint: invalid device ID %q", c.DeviceID)
	case c.PubSub == nil:
		return errors.New("endpoint: PubSub is required")
	case len(c.TrustedKeys) == 0:
		return errors.New("endpoint: TrustedKeys is required (the platform's tunnel public key)")
	case c.QoS > 1:
		return fmt.Errorf("endpoint: QoS %d (0 or 1)", c.QoS)
	}
	for _, k := range c.TrustedKeys {
		if len(k) != ed25519.PublicKeySize {
			return errors.New("endpoint: a trusted key is not an Ed25519 public key")
		}
	}
	for _, a := range c.AllowList {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return fmt.Errorf("endpoint: allow-list entry %q is not host:port", a)
		}
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PingInterval < 0 {
		c.PingInterval = 0
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Dial == nil {
		c.Dial = (&net.Dialer{}).DialContext
	}
	if c.Audit == nil {
		c.Audit = tunnel.AuditFunc(func(tunnel.Event) {})
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Endpoint serves tunnel sessions for one device. Safe for concurrent use.
type Endpoint struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session
	seen     map[string]time.Time // session IDs used, until their token expires (replay guard)
	cancel   func()
	stopped  bool
}

type session struct {
	*tunnel.Session
	target, principal string
	accepted          bool
}

// New returns an Endpoint; Start subscribes it.
func New(cfg Config) (*Endpoint, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Endpoint{cfg: cfg, log: cfg.Logger.With("component", "tunnel-endpoint", "device", cfg.DeviceID),
		sessions: map[string]*session{}, seen: map[string]time.Time{}}, nil
}

// Start subscribes to the device's tunnel topics.
func (e *Endpoint) Start() error {
	cancel, err := e.cfg.PubSub.Subscribe(topic.TunnelDownFilter(e.cfg.DeviceID), e.cfg.QoS, e.receive)
	if err != nil {
		return fmt.Errorf("endpoint: subscribe: %w", err)
	}
	e.mu.Lock()
	e.cancel = cancel
	e.mu.Unlock()
	return nil
}

// Close ends every session and unsubscribes.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	e.stopped = true
	cancel := e.cancel
	ss := make([]*session, 0, len(e.sessions))
	for _, s := range e.sessions {
		ss = append(ss, s)
	}
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	for _, s := range ss {
		s.Close(tunnel.ReasonShutdown, "agent shutting down")
		<-s.Done()
	}
	return nil
}

// Sessions returns how many sessions are open.
func (e *Endpoint) Sessions() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sessions)
}

// receive runs on the MQTT receive goroutine.
func (e *Endpoint) receive(name string, payload []byte) {
	dev, sid, dir, ok := topic.ParseTunnelTopic(name)
	if !ok || dev != e.cfg.DeviceID || dir != topic.TunnelDown {
		return
	}
	e.mu.Lock()
	s := e.sessions[sid]
	e.mu.Unlock()
	if s != nil {
		s.Deliver(payload)
		return
	}
	f, err := tunnel.Decode(payload)
	if err != nil || f.Type != tunnel.TypeSessionOpen || f.Seq != 1 {
		// Not the start of a session: a frame of one that ended. Ignored,
		// so a stray publish cannot make the device publish.
		return
	}
	e.open(sid, f)
}

func (e *Endpoint) open(sid string, f tunnel.Frame) {
	up := topic.TunnelUpTopic(e.cfg.DeviceID, sid)
	s := &session{target: f.Target}
	ts, err := tunnel.NewSession(tunnel.SessionConfig{
		ID: sid, DeviceID: e.cfg.DeviceID,
		Send: func(ctx context.Context, b []byte) error {
			return e.cfg.PubSub.Publish(ctx, up, e.cfg.QoS, b)
		},
		Window: e.cfg.Window, MaxData: e.cfg.MaxData, MaxStreams: e.cfg.MaxStreams,
		IdleTimeout: e.cfg.IdleTimeout, MaxLifetime: e.cfg.MaxLifetime, PingInterval: e.cfg.PingInterval,
		Accept: func(st *tunnel.Stream) { e.serve(s, st) },
		Control: func(f tunnel.Frame) {
			if f.Type == tunnel.TypeSessionOpen {
				e.admit(sid, s, f)
			}
		},
		Closed: func(err *tunnel.ReasonError, in, out int64) { e.closed(sid, s, err, in, out) },
		Logger: e.log, Now: e.cfg.Now,
	})
	if err != nil {
		e.log.Error("tunnel session not started", "session", sid, "error", err)
		return
	}
	s.Session = ts
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		ts.Reject(tunnel.ReasonShutdown, "agent shutting down")
		return
	}
	if _, dup := e.sessions[sid]; dup {
		e.mu.Unlock()
		return
	}
	e.sessions[sid] = s
	e.mu.Unlock()
	// Through the session, so that it counts the frame's sequence number.
	ts.DeliverFrame(f)
}

// admit checks a session open and answers it.
func (e *Endpoint) admit(sid string, s *session, f tunnel.Frame) {
	ts := s.Session
	e.mu.Lock()
	count := len(e.sessions)
	now := e.cfg.Now()
	for id, exp := range e.seen {
		if now.After(exp) {
			delete(e.seen, id)
		}
	}
	_, replay := e.seen[sid]
	e.mu.Unlock()

	reject := func(r tunnel.Reason, msg string) {
		e.cfg.Audit.Audit(tunnel.Event{Kind: tunnel.EventSessionReject, At: now, DeviceID: e.cfg.DeviceID,
			SessionID: sid, Target: f.Target, Principal: s.principal, Reason: r, Message: msg})
		e.log.Warn("tunnel session refused", "session", sid, "target", f.Target, "reason", r, "message", msg)
		ts.Reject(r, msg)
	}
	claims, err := tunnel.VerifyToken(f.Token, e.cfg.TrustedKeys, e.cfg.DeviceID, sid, f.Target, now)
	switch {
	case err != nil:
		reject(tunnel.ReasonBadToken, err.Error())
		return
	case replay:
		reject(tunnel.ReasonBadToken, "session ID used before")
		return
	}
	s.principal = claims.Principal
	e.mu.Lock()
	e.seen[sid] = time.Unix(claims.Expires, 0)
	e.mu.Unlock()
	switch {
	case !slices.Contains(e.cfg.AllowList, f.Target):
		reject(tunnel.ReasonNotAllowed, fmt.Sprintf("target %s is not on this device's tunnel allow-list", f.Target))
		return
	case count > e.cfg.MaxSessions:
		reject(tunnel.ReasonTooMany, fmt.Sprintf("at most %d tunnel sessions", e.cfg.MaxSessions))
		return
	}
	// SendControl publishes; this runs on the receive goroutine, so hand
	// it off.
	go func() {
		if err := ts.SendControl(context.Background(), tunnel.Frame{Type: tunnel.TypeSessionAccept}); err != nil {
			ts.Close(tunnel.ReasonShutdown, "could not answer")
			return
		}
		e.mu.Lock()
		s.accepted = true
		e.mu.Unlock()
		e.cfg.Audit.Audit(e.event(sid, s, tunnel.EventSessionOpen))
		e.log.Info("tunnel session open", "session", sid, "target", f.Target, "principal", s.principal)
	}()
}

func (e *Endpoint) event(sid string, s *session, k tunnel.EventKind) tunnel.Event {
	return tunnel.Event{Kind: k, At: e.cfg.Now(), DeviceID: e.cfg.DeviceID, SessionID: sid, Target: s.target, Principal: s.principal}
}

func (e *Endpoint) closed(sid string, s *session, err *tunnel.ReasonError, in, out int64) {
	e.mu.Lock()
	if e.sessions[sid] == s {
		delete(e.sessions, sid)
	}
	accepted := s.accepted
	e.mu.Unlock()
	if !accepted {
		return // refused: the reject event was recorded
	}
	ev := e.event(sid, s, tunnel.EventSessionClose)
	ev.BytesIn, ev.BytesOut = in, out
	if err != nil {
		ev.Reason, ev.Message = err.Reason, err.Message
	}
	e.cfg.Audit.Audit(ev)
	e.log.Info("tunnel session closed", "session", sid, "reason", ev.Reason, "message", ev.Message, "bytes_in", in, "bytes_out", out)
}

// serve dials the session's target for a stream the platform opened.
func (e *Endpoint) serve(s *session, st *tunnel.Stream) {
	sid := s.ID()
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.DialTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, err := e.cfg.Dial(ctx, "tcp", s.target)
	if err != nil {
		ev := e.event(sid, s, tunnel.EventStreamReject)
		ev.Stream, ev.Reason, ev.Message = st.ID(), tunnel.ReasonDialFailed, err.Error()
		e.cfg.Audit.Audit(ev)
		st.Refuse(tunnel.ReasonDialFailed, err.Error())
		return
	}
	if err := st.Accept(ctx); err != nil {
		_ = conn.Close()
		st.Reset(tunnel.ReasonShutdown, "could not answer")
		return
	}
	ev := e.event(sid, s, tunnel.EventStreamOpen)
	ev.Stream = st.ID()
	e.cfg.Audit.Audit(ev)
	tunnel.Splice(st, conn)
	in, out := st.Bytes()
	ev = e.event(sid, s, tunnel.EventStreamClose)
	ev.Stream, ev.BytesIn, ev.BytesOut = st.ID(), in, out
	e.cfg.Audit.Audit(ev)
}

// ParseTrustedKeys decodes the platform's tunnel public keys as printed by
// "lmctl tunnel key" (base64 of the 32-byte Ed25519 key), for an agent's
// configuration file.
func ParseTrustedKeys(keys []string) ([]ed25519.PublicKey, error) {
	out := make([]ed25519.PublicKey, 0, len(keys))
	for i, k := range keys {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("tunnel trusted key %d: want base64 of a 32-byte Ed25519 public key", i+1)
		}
		out = append(out, ed25519.PublicKey(b))
	}
	return out, nil
}
