package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/broker/persist"
)

// This file is the broker's contract with the rest of lastmile: the small
// interfaces it needs (authentication, presence, session storage) and its
// configuration. The broker never imports dm; cmd wires dm to these.

// Sentinel errors an Authenticator returns; the broker maps each to a CONNACK
// reason code (MQTT 5 code / MQTT 3.1.1 return code).
var (
	// ErrBadCredentials: unknown principal, wrong password or certificate (0x86 / 4).
	ErrBadCredentials = errors.New("broker: bad user name or password")
	// ErrNotAuthorized: the principal exists but may not connect, e.g. disabled (0x87 / 5).
	ErrNotAuthorized = errors.New("broker: not authorized")
	// ErrBanned: the principal is banned (0x8A / 5).
	ErrBanned = errors.New("broker: banned")
	// ErrClientIDInvalid: the client ID is not acceptable for this principal (0x85 / 2).
	ErrClientIDInvalid = errors.New("broker: client identifier not valid")
	// ErrUnavailable: authentication could not be decided, e.g. the store is down (0x88 / 3).
	ErrUnavailable = errors.New("broker: server unavailable")
)

// PrincipalKind says what kind of client a principal is.
type PrincipalKind string

// Principal kinds.
const (
	KindDevice      PrincipalKind = "device"
	KindApplication PrincipalKind = "application"
	KindAnonymous   PrincipalKind = "anonymous"
)

// ConnectRequest is what a client presents at CONNECT.
type ConnectRequest struct {
	ClientID        string
	Username        string
	Password        []byte
	RemoteAddr      string
	Listener        string
	ProtocolVersion byte
	// Cert is the verified client certificate on a TLS listener with client
	// authentication, else nil.
	Cert *x509.Certificate
}

// Principal is an authenticated client and what it may do. The functions are
// called on every PUBLISH and SUBSCRIBE and must be fast and safe for
// concurrent use.
type Principal struct {
	// ID is the device ID, or "app:<name>" for applications.
	ID   string
	Kind PrincipalKind
	// CanPublish reports whether the principal may publish to topic.
	CanPublish func(topic string) bool
	// CanSubscribe reports whether the principal may subscribe to filter
	// (share prefix already removed).
	CanSubscribe func(filter string) bool
}

// Authenticator decides who connects. It returns one of the sentinel errors
// above (wrapped) on refusal; any other error counts as ErrUnavailable.
type Authenticator interface {
	Authenticate(ctx context.Context, r ConnectRequest) (*Principal, error)
}

// Session describes one accepted connection, for presence.
type Session struct {
	ClientID  string
	Principal *Principal
	// ConnID is unique per connection within this process; with the node
	// name it is unique across nodes and restarts.
	ConnID          uint64
	RemoteAddr      string
	Listener        string
	ProtocolVersion byte
	Keepalive       uint16
	CleanStart      bool
	ConnectedAt     time.Time
}

// PresenceSink learns about connections. Calls for one client ID arrive in
// order; a Disconnected for an older ConnID after a newer Connected is stale
// and the sink must ignore it (registry.PresenceStore.SetOffline does).
type PresenceSink interface {
	Connected(s Session)
	Disconnected(clientID, principalID string, connID uint64, at time.Time, reason string)
}

// SessionStore persists MQTT session state; see package persist.
type SessionStore = persist.Store

// Op is one write in a SessionStore batch.
type Op = persist.Op

// Limits bound what clients can make the broker hold.
type Limits struct {
	MaxPacketSize        uint32        // bytes; default 256 KiB
	MaxInflight          uint16        // receive maximum / outbound inflight per client; default 64
	MaxPendingWrites     int           // packets a client may have unsent in its write backlog before QoS 0 drops / QoS >= 1 requeues; default 512
	MaxPendingBytes      int           // unread bytes beyond the socket buffer before a client is closed as stalled; default 1 MiB
	MaxQueuedMessages    int           // per offline session; default 1000
	MaxConnections       int           // 0 = unlimited
	ConnectRatePerIP     float64       // connects/s per source IP; 0 = unlimited
	ConnectBurstPerIP    int           // burst for ConnectRatePerIP
	MaxSessionExpiry     time.Duration // cap on MQTT 5 session expiry; default 7 days
	DefaultSessionExpiry time.Duration // for 3.1.1 clean_session=false; default 7 days
	MaxKeepalive         uint16        // seconds; server keepalive cap
	// SlowConsumerPolicy is SlowConsumerDrop (default) or
	// SlowConsumerDisconnect; see deliveryHook.
	SlowConsumerPolicy string
}

// Config configures a Server.
type Config struct {
	// NodeName identifies this node in presence records; default hostname.
	NodeName string
	// TCPAddr is the plain MQTT listener ("" = off), e.g. ":1883".
	TCPAddr string
	// TLSAddr is the MQTT over TLS listener ("" = off), needs TLS.
	TLSAddr string
	// WSAddr is the MQTT over WebSocket listener ("" = off); over TLS if WSTLS.
	WSAddr string
	WSTLS  bool
	// TLS is the server TLS config for TLSAddr (and WSAddr with WSTLS). Set
	// ClientAuth/ClientCAs for X.509 device authentication.
	TLS *tls.Config

	Limits        Limits
	Authenticator Authenticator // required
	Presence      PresenceSink  // optional
	Sessions      SessionStore  // optional: nil keeps sessions in memory only
	// Subscriptions learns which filters clients hold (optional); see
	// SubscriptionSink.
	Subscriptions SubscriptionSink

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}
