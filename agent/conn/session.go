package conn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"
)

// Protocol is an MQTT protocol version.
type Protocol string

// Protocols.
const (
	// Auto tries MQTT 5 and falls back to 3.1.1 when the server refuses 5.
	Auto  Protocol = "auto"
	MQTT5 Protocol = "5"
	MQTT3 Protocol = "3.1.1"
)

// Message is a message the platform sent to the device.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	// ResponseTopic and CorrelationData are MQTT 5 request/response
	// properties; empty on 3.1.1.
	ResponseTopic   string
	CorrelationData []byte
	UserProperties  map[string]string
}

// Outgoing is a message the device publishes.
type Outgoing struct {
	Topic           string
	Payload         []byte
	QoS             byte
	ResponseTopic   string            // MQTT 5 only
	CorrelationData []byte            // MQTT 5 only
	UserProperties  map[string]string // MQTT 5 only
}

// Session is one MQTT connection. Methods are safe for concurrent use.
type Session interface {
	// Publish sends m; with QoS 1 it returns once the broker acknowledged
	// it. A refusal by the broker (MQTT 5 reason code >= 0x80) is an
	// error wrapping ErrRefused.
	Publish(ctx context.Context, m Outgoing) error
	// Subscribe subscribes to filters at QoS 1; every message on them goes
	// to the handler given to Connect.
	Subscribe(ctx context.Context, filters ...string) error
	// Done is closed when the connection ends; Err then says why.
	Done() <-chan struct{}
	Err() error
	// Protocol is the version in use.
	Protocol() Protocol
	// Close disconnects cleanly.
	Close() error
}

// Errors.
var (
	// ErrRefused wraps a broker's refusal of a CONNECT, PUBLISH or SUBSCRIBE.
	ErrRefused = errors.New("refused by the broker")
	// ErrProtocolVersion means the server does not speak the protocol
	// version offered; Connect with Auto then tries 3.1.1.
	ErrProtocolVersion = errors.New("protocol version not supported by the server")
	// ErrClosed is returned for use of a session that has ended.
	ErrClosed = errors.New("session closed")
)

// Config says where and as whom to connect.
type Config struct {
	// Address is host:port of the MQTT (or MQTT over TLS) listener.
	Address string
	// TLS is nil for plain TCP.
	TLS *tls.Config
	// ClientID is the device ID.
	ClientID string
	// Username and Password authenticate with the device secret; with a
	// client certificate in TLS, Password may be empty.
	Username string
	Password string
	// Keepalive is the MQTT keepalive. Default 60s. An MQTT 5 server may
	// impose its own (Server Keep Alive), which the session follows.
	Keepalive time.Duration
	// ConnectTimeout bounds the TCP, TLS and MQTT handshakes. Default 15s.
	ConnectTimeout time.Duration
	// Protocol is Auto (default), MQTT5 or MQTT3.
	Protocol Protocol
	// Dial replaces net.Dialer.DialContext (tests, proxies).
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger *slog.Logger
}

// CheckAndSetDefaults validates c and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Address == "" {
		return errors.New("conn: Address is required")
	}
	if c.ClientID == "" {
		return errors.New("conn: ClientID is required")
	}
	if c.Keepalive == 0 {
		c.Keepalive = 60 * time.Second
	}
	if c.Keepalive < time.Second || c.Keepalive > 65535*time.Second {
		return fmt.Errorf("conn: keepalive %s outside [1s, 65535s]", c.Keepalive)
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 15 * time.Second
	}
	switch c.Protocol {
	case "":
		c.Protocol = Auto
	case Auto, MQTT5, MQTT3:
	default:
		return fmt.Errorf("conn: unknown protocol %q (want auto, 5 or 3.1.1)", c.Protocol)
	}
	if c.Dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		c.Dial = d.DialContext
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Connect opens a session. With Auto it offers MQTT 5 first and falls back
// to 3.1.1 only when the server refuses the protocol version; the returned
// session says which one it uses (keep it for the next Connect, so a 3.1.1
// broker is not asked for 5 every time).
func Connect(ctx context.Context, cfg Config, handler func(Message)) (Session, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	if handler == nil {
		handler = func(Message) {}
	}
	switch cfg.Protocol {
	case MQTT3:
		return connect3(ctx, cfg, handler)
	case MQTT5:
		return connect5(ctx, cfg, handler)
	}
	s, err := connect5(ctx, cfg, handler)
	if err == nil || !errors.Is(err, ErrProtocolVersion) {
		return s, err
	}
	cfg.Logger.Info("server refused MQTT 5, trying MQTT 3.1.1", "err", err)
	return connect3(ctx, cfg, handler)
}

// dial opens the transport: TCP, then TLS if configured.
func dial(ctx context.Context, cfg Config) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	c, err := cfg.Dial(ctx, "tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", cfg.Address, err)
	}
	if cfg.TLS == nil {
		return c, nil
	}
	tc := tls.Client(c, cfg.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", cfg.Address, err)
	}
	return tc, nil
}

// TLSFiles are the PEM files of a TLS configuration.
type TLSFiles struct {
	// CAFile is the pinned CA: the server certificate must chain to it, and
	// only to it (the system roots are not consulted).
	CAFile string
	// CertFile and KeyFile are the device's client certificate (CN = device
	// ID), optional.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the server certificate;
	// default the host of the address.
	ServerName string
}

// LoadTLS builds a client TLS configuration that trusts only the pinned CA.
func LoadTLS(f TLSFiles, address string) (*tls.Config, error) {
	if f.CAFile == "" {
		return nil, errors.New("tls: a pinned CA file is required")
	}
	pem, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, fmt.Errorf("tls: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", f.CAFile)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("tls: address %q: %w", address, err)
		}
		cfg.ServerName = host
	}
	if f.CertFile != "" || f.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
