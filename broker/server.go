package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/lastmile-dm/lastmile/third_party/mochi"
	"github.com/lastmile-dm/lastmile/third_party/mochi/listeners"
	"github.com/lastmile-dm/lastmile/third_party/mochi/packets"
)

// Defaults for Limits.
const (
	DefaultMaxPacketSize = 256 << 10
	DefaultMaxInflight   = 64
	// DefaultMaxPendingWrites is how many packets a client may have written
	// while its socket refuses bytes (they wait in the connection's write
	// backlog, see backlogConn); beyond, QoS >= 1 packets stay in the
	// session's inflight queue and are resent, QoS 0 packets are dropped and
	// counted. Nothing is allocated for it per connection (the mochi fork
	// has no outbound channel on a socket).
	DefaultMaxPendingWrites  = 512
	DefaultMaxQueuedMessages = 1000
	DefaultMaxSessionExpiry  = 7 * 24 * time.Hour
)

// CheckAndSetDefaults validates cfg and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Authenticator == nil {
		return errors.New("broker: Authenticator is required")
	}
	if c.TLSAddr != "" && c.TLS == nil {
		return errors.New("broker: TLSAddr needs a TLS config")
	}
	if c.WSTLS && c.TLS == nil {
		return errors.New("broker: WSTLS needs a TLS config")
	}
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	l := &c.Limits
	if l.MaxPacketSize == 0 {
		l.MaxPacketSize = DefaultMaxPacketSize
	}
	if l.MaxInflight == 0 {
		l.MaxInflight = DefaultMaxInflight
	}
	if l.MaxPendingWrites == 0 {
		l.MaxPendingWrites = DefaultMaxPendingWrites
	}
	if l.MaxPendingBytes == 0 {
		l.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if l.MaxQueuedMessages == 0 {
		l.MaxQueuedMessages = DefaultMaxQueuedMessages
	}
	if l.MaxQueuedMessages > 65535 {
		return fmt.Errorf("broker: MaxQueuedMessages %d exceeds 65535 (MQTT packet IDs)", l.MaxQueuedMessages)
	}
	if l.MaxSessionExpiry == 0 {
		l.MaxSessionExpiry = DefaultMaxSessionExpiry
	}
	switch l.SlowConsumerPolicy {
	case "":
		l.SlowConsumerPolicy = SlowConsumerDrop
	case SlowConsumerDrop, SlowConsumerDisconnect:
	default:
		return fmt.Errorf("broker: SlowConsumerPolicy %q: want %q or %q", l.SlowConsumerPolicy, SlowConsumerDrop, SlowConsumerDisconnect)
	}
	if l.ConnectRatePerIP > 0 && l.ConnectBurstPerIP <= 0 {
		l.ConnectBurstPerIP = max(1, int(l.ConnectRatePerIP))
	}
	return nil
}

// Server is a running MQTT broker.
type Server struct {
	cfg   Config
	log   *slog.Logger
	mochi *mqtt.Server
	auth  *authHook
	tails *tails
	// platform publishes for the platform's own services (PublishMessage).
	platform *mqtt.Client
	persist  *sessionHook
	metrics  *metrics

	mu    sync.Mutex
	addrs map[string]net.Addr

	started  atomic.Bool
	stopOnce sync.Once
	stopErr  error
}

// New builds a broker; Start binds its listeners.
func New(cfg Config) (*Server, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "broker")
	caps := mqtt.NewDefaultServerCapabilities()
	l := cfg.Limits
	caps.MaximumPacketSize = l.MaxPacketSize
	caps.ReceiveMaximum = l.MaxInflight
	caps.MaximumClientWritesPending = int32(min(l.MaxPendingWrites, 1<<30)) //nolint:gosec // bounded
	caps.MaximumInflight = uint16(l.MaxQueuedMessages)                      //nolint:gosec // checked above
	caps.MaximumSessionExpiryInterval = uint32(l.MaxSessionExpiry / time.Second)
	if l.MaxConnections > 0 {
		caps.MaximumClients = int64(l.MaxConnections)
	}
	caps.Compatibilities.ObscureNotAuthorized = false

	m := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 slog.New(quieter{Handler: log.With("lib", "mochi").Handler(), quota: &sampler{}}),
		InlineClient:           true,
		SysTopicResendInterval: 0,
		ParkIdle:               parkIdle,
	})
	s := &Server{cfg: cfg, log: log, mochi: m, addrs: map[string]net.Addr{}, tails: newTails()}
	s.metrics = newMetrics(m)
	if cfg.Registerer != nil {
		if err := s.metrics.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("broker metrics: %w", err)
		}
	}
	s.auth = newAuthHook(s)
	if err := m.AddHook(s.auth, nil); err != nil {
		return nil, err
	}
	if err := m.AddHook(&metricsHook{m: s.metrics}, nil); err != nil {
		return nil, err
	}
	if cfg.Subscriptions != nil {
		if err := m.AddHook(&subscriptionHook{s: s, sink: cfg.Subscriptions}, nil); err != nil {
			return nil, err
		}
	}
	s.platform = m.NewClient(nil, "local", "lastmile-platform", true)
	if cfg.Sessions != nil {
		s.persist = newSessionHook(cfg.Sessions, m, log, s.auth.persistentOwner, s.metrics.persistErrors)
		if err := m.AddHook(s.persist, nil); err != nil {
			return nil, err
		}
	}
	// After the session hook: a message it requeues is stored like any other.
	if err := m.AddHook(newDeliveryHook(s), nil); err != nil {
		return nil, err
	}
	return s, nil
}

// Start binds every configured listener, restores stored sessions and
// serves in the background. A listener that cannot bind is an error.
func (s *Server) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("broker: already started")
	}
	bind := func(id, addr string) (net.Listener, error) {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("mqtt %s listener on %s: %w", id, addr, err)
		}
		return &backlogListener{Listener: ln, limit: s.cfg.Limits.MaxPendingBytes, onStall: s.stalled}, nil
	}
	var bound []net.Listener
	fail := func(err error) error {
		for _, ln := range bound {
			_ = ln.Close()
		}
		return err
	}
	if s.cfg.TCPAddr != "" {
		ln, err := bind("tcp", s.cfg.TCPAddr)
		if err != nil {
			return fail(err)
		}
		bound = append(bound, ln)
		s.addrs["tcp"] = ln.Addr()
		if err := s.mochi.AddListener(s.track(listeners.NewNet("tcp", ln))); err != nil {
			return fail(err)
		}
	}
	if s.cfg.TLSAddr != "" {
		ln, err := bind("tls", s.cfg.TLSAddr)
		if err != nil {
			return fail(err)
		}
		bound = append(bound, ln)
		s.addrs["tls"] = ln.Addr()
		if err := s.mochi.AddListener(s.track(listeners.NewNet("tls", tls.NewListener(ln, s.cfg.TLS)))); err != nil {
			return fail(err)
		}
	}
	if s.cfg.WSAddr != "" {
		ln, err := bind("ws", s.cfg.WSAddr)
		if err != nil {
			return fail(err)
		}
		bound = append(bound, ln)
		s.addrs["ws"] = ln.Addr()
		if s.cfg.WSTLS {
			ln = tls.NewListener(ln, s.cfg.TLS)
		}
		if err := s.mochi.AddListener(s.track(newWSListener("ws", ln))); err != nil {
			return fail(err)
		}
	}
	if s.persist != nil {
		if err := s.persist.Load(ctx); err != nil {
			return fail(fmt.Errorf("restore sessions: %w", err))
		}
	}
	if err := s.mochi.Serve(); err != nil {
		return fail(err)
	}
	if s.persist != nil {
		if err := s.persist.ReplayWAL(ctx); err != nil {
			s.log.Error("replay publish log", "error", err)
		}
	}
	return nil
}

// stalled counts and logs a connection closed for its write backlog.
func (s *Server) stalled(remote string) {
	s.metrics.slowDisconnects.WithLabelValues(dropWriteBacklog).Inc()
	s.log.Warn("disconnecting slow consumer", "remote", remote, "reason", dropWriteBacklog,
		"max_pending_bytes", s.cfg.Limits.MaxPendingBytes)
}

// Addrs returns the bound listener addresses keyed "tcp", "tls", "ws".
func (s *Server) Addrs() map[string]net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]net.Addr, len(s.addrs))
	for k, v := range s.addrs {
		out[k] = v
	}
	return out
}

// KickPrincipal disconnects every connection of a principal (a device ID
// or "app:<name>") with reason 0x98 "administrative action" and returns
// how many there were.
func (s *Server) KickPrincipal(principalID, reason string) int {
	clients := s.auth.clientsOf(principalID)
	for _, cl := range clients {
		s.log.Info("disconnecting client", "client", cl.ID, "principal", principalID, "reason", reason)
		s.auth.setReason(cl, reason)
		_ = s.mochi.DisconnectClient(cl, packets.ErrAdministrativeAction)
	}
	return len(clients)
}

// Publish sends a message from the platform itself (not subject to ACLs).
func (s *Server) Publish(topic string, payload []byte, retain bool, qos byte) error {
	return s.mochi.Publish(topic, payload, retain, qos)
}

// Shutdown stops accepting, disconnects every client, waits for their
// session state to reach the store (or ctx to end), and flushes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.started.Load() {
		return nil
	}
	s.stopOnce.Do(func() { s.stopErr = s.shutdown(ctx) })
	return s.stopErr
}

func (s *Server) shutdown(ctx context.Context) error {
	err := s.mochi.Close()
	for atomic.LoadInt64(&s.mochi.Info.ClientsConnected) > 0 || s.auth.live() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("broker shutdown: %d clients still closing: %w", s.auth.live(), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if s.persist != nil {
		if ferr := s.persist.Flush(ctx); ferr != nil && err == nil {
			err = ferr
		}
	}
	return err
}

// quieter logs at Debug what mochi logs at Info (hooks added, listeners
// started) and its per-connection warnings: the end of every connection
// that closed with an error (message "") and "error processing packet",
// which would print the packet, payload included. lastmile logs refusals,
// denials and kicks itself, with the device ID and without payloads.
// mochi's "client store quota reached" (a QoS >= 1 message dropped because
// a session queue is full, counted in lastmile_broker_inflight_dropped_total)
// comes once per message: it is passed on at most once per dropLogInterval,
// with the number of drops it stands for.
type quieter struct {
	slog.Handler
	quota *sampler
}

// sampler lets one record through per dropLogInterval and counts the rest.
type sampler struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (s *sampler) allow(now time.Time) (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.last) < dropLogInterval {
		s.suppressed++
		return false, 0
	}
	n := s.suppressed
	s.last, s.suppressed = now, 0
	return true, n
}

func (q quieter) Enabled(ctx context.Context, l slog.Level) bool {
	// Decided per record in Handle; Warn must get there to be demoted.
	return q.Handler.Enabled(ctx, l) || (l == slog.LevelWarn || l == slog.LevelInfo) && q.Handler.Enabled(ctx, slog.LevelDebug)
}

func (q quieter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo || r.Level == slog.LevelWarn && (r.Message == "" || r.Message == "error processing packet") {
		r.Level = slog.LevelDebug
	}
	if r.Message == "client store quota reached" && q.quota != nil {
		ok, n := q.quota.allow(r.Time)
		if !ok {
			return nil
		}
		r.AddAttrs(slog.String("reason", dropQueueFull), slog.Int("dropped_since_last_log", n+1))
	}
	if !q.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return q.Handler.Handle(ctx, r)
}

func (q quieter) WithAttrs(a []slog.Attr) slog.Handler {
	return quieter{Handler: q.Handler.WithAttrs(a), quota: q.quota}
}
func (q quieter) WithGroup(g string) slog.Handler {
	return quieter{Handler: q.Handler.WithGroup(g), quota: q.quota}
}
