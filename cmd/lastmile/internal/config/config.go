// Package config is the configuration of the lastmile server: the YAML file,
// the LASTMILE_* environment variables that override it, and the checks
// that turn every bad value into an error naming its key.
//
// Precedence, lowest first: Default(), the file, the environment, flags
// (applied by the caller with Set). Validate runs last, on the merged result.
package config

import (
	"time"
)

// Config is the whole server configuration. Every field has a yaml tag; the
// environment variable of a field is LASTMILE_ followed by its key path in
// upper case joined by "_" (mqtt.tcp_addr is LASTMILE_MQTT_TCP_ADDR).
type Config struct {
	// NodeName names this node in presence records; default the hostname.
	NodeName string `yaml:"node_name"`
	// DataDir holds the embedded store.
	DataDir string       `yaml:"data_dir"`
	Store   StoreConfig  `yaml:"store"`
	MQTT    MQTTConfig   `yaml:"mqtt"`
	GRPC    ServerConfig `yaml:"grpc"`
	HTTP    ServerConfig `yaml:"http"`
	Log     LogConfig    `yaml:"log"`
	Access  AccessConfig `yaml:"access"`
	Tunnel  TunnelConfig `yaml:"tunnel"`
	Shadow  ShadowConfig `yaml:"shadow"`
	SNMP    SNMPConfig   `yaml:"snmp"`
	// Events and Commands tune the event stream and command invocation.
	Events   EventsConfig   `yaml:"events"`
	Commands CommandsConfig `yaml:"commands"`
	Debug    DebugConfig    `yaml:"debug"`
}

// DebugConfig holds switches for diagnosing a running node; all off by
// default.
type DebugConfig struct {
	// PprofAddr serves net/http/pprof (/debug/pprof/) on this address,
	// without authentication: bind it to loopback. "" (default) is off.
	PprofAddr string `yaml:"pprof_addr"`
}

// EventsConfig tunes the northbound event stream. Zero means the default.
type EventsConfig struct {
	// WatcherBuffer is the events buffered per watcher before a watch that
	// does not keep up is ended; default 1024.
	WatcherBuffer int `yaml:"watcher_buffer"`
	// MaxWatchers bounds concurrent watches per node; default 1000.
	MaxWatchers int `yaml:"max_watchers"`
}

// CommandsConfig tunes command invocation. Zero means the default.
type CommandsConfig struct {
	// MaxPending bounds invocations waiting for replies; default 10000.
	MaxPending int `yaml:"max_pending"`
}

// ShadowConfig limits device shadows. Zero means the default.
type ShadowConfig struct {
	MaxDocumentBytes int `yaml:"max_document_bytes"`
	MaxDepth         int `yaml:"max_depth"`
	MaxInFlight      int `yaml:"max_in_flight"`
	MaxNamedShadows  int `yaml:"max_named_shadows"`
}

// Store engines.
const (
	EngineEmbedded = "embedded"
	EngineRedis    = "redis"
)

// StoreConfig selects and configures the store.
type StoreConfig struct {
	// Engine is "embedded" (default, one node) or "redis" (many nodes).
	Engine string      `yaml:"engine"`
	Redis  RedisConfig `yaml:"redis"`
}

// RedisConfig configures the Redis store.
type RedisConfig struct {
	Addr     string `yaml:"addr"`
	Username string `yaml:"username"`
	// Password, or PasswordFile naming a file that holds it (preferred: the
	// file keeps the secret out of the configuration and the environment).
	Password     string         `yaml:"password"`
	PasswordFile string         `yaml:"password_file"`
	DB           int            `yaml:"db"`
	KeyPrefix    string         `yaml:"key_prefix"`
	TLS          RedisTLSConfig `yaml:"tls"`
}

// RedisTLSConfig configures TLS to Redis.
type RedisTLSConfig struct {
	Enabled bool `yaml:"enabled"`
	// CAFile verifies the server; empty means the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile give a client certificate, if Redis asks for one.
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// MQTTConfig configures the MQTT listeners. An empty address switches a
// listener off.
type MQTTConfig struct {
	TCPAddr string `yaml:"tcp_addr"`
	// TLSAddr listens only when TLS.CertFile and TLS.KeyFile are set.
	TLSAddr string `yaml:"tls_addr"`
	WSAddr  string `yaml:"ws_addr"`
	// WSTLS serves the WebSocket listener over TLS (wss) with TLS below.
	WSTLS  bool          `yaml:"ws_tls"`
	TLS    MQTTTLSConfig `yaml:"tls"`
	Limits LimitsConfig  `yaml:"limits"`
}

// MQTTTLSConfig is the MQTT server certificate and X.509 device
// authentication.
type MQTTTLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile enables client certificates: a device presenting one
	// signed by this CA authenticates with CN = device ID.
	ClientCAFile string `yaml:"client_ca_file"`
	// RequireClientCert refuses TLS clients without a certificate.
	RequireClientCert bool `yaml:"require_client_cert"`
}

// Enabled reports whether a server certificate is configured.
func (t MQTTTLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// LimitsConfig bounds what clients can make the broker hold. Zero means the
// broker's default unless said otherwise.
type LimitsConfig struct {
	MaxPacketSize        uint32        `yaml:"max_packet_size"`
	MaxInflight          uint16        `yaml:"max_inflight"`
	MaxPendingWrites     int           `yaml:"max_pending_writes"`
	MaxPendingBytes      int           `yaml:"max_pending_bytes"`
	MaxQueuedMessages    int           `yaml:"max_queued_messages"`
	MaxConnections       int           `yaml:"max_connections"`     // 0 = unlimited
	ConnectRatePerIP     float64       `yaml:"connect_rate_per_ip"` // 0 = unlimited
	ConnectBurstPerIP    int           `yaml:"connect_burst_per_ip"`
	MaxSessionExpiry     time.Duration `yaml:"max_session_expiry"`
	DefaultSessionExpiry time.Duration `yaml:"default_session_expiry"`
	MaxKeepalive         uint16        `yaml:"max_keepalive"`
	SlowConsumerPolicy   string        `yaml:"slow_consumer_policy"` // drop or disconnect
}

// ServerConfig is a gRPC or HTTP listener.
type ServerConfig struct {
	// Addr is the listen address; "" switches the listener off.
	Addr string    `yaml:"addr"`
	TLS  TLSConfig `yaml:"tls"`
}

// TLSConfig is a server certificate; both empty means plain text.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether a certificate is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// LogConfig configures logging.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// AccessConfig holds the roles of MQTT applications and anonymous clients.
// Applications themselves are created through the API.
type AccessConfig struct {
	Roles     []RoleConfig    `yaml:"roles"`
	Anonymous AnonymousConfig `yaml:"anonymous"`
}

// RoleConfig is a role defined in the file; read-only through the API.
type RoleConfig struct {
	Name  string       `yaml:"name"`
	Rules []RuleConfig `yaml:"rules"`
}

// RuleConfig is one rule applied to several topic filters.
type RuleConfig struct {
	// Action is publish, subscribe or all.
	Action string `yaml:"action"`
	// Effect is allow or deny.
	Effect string `yaml:"effect"`
	// Topics are MQTT topic filters, without $share/<group>/.
	Topics []string `yaml:"topics"`
}

// AnonymousConfig lets clients without credentials connect under a role.
// Off by default; meant for labs.
type AnonymousConfig struct {
	Enabled bool   `yaml:"enabled"`
	Role    string `yaml:"role"`
}

// Default returns the configuration used where neither file, environment
// nor flags say otherwise.
func Default() Config {
	return Config{
		DataDir: "./data",
		Store:   StoreConfig{Engine: EngineEmbedded, Redis: RedisConfig{KeyPrefix: "lastmile:"}},
		MQTT: MQTTConfig{
			TCPAddr: ":1883",
			TLSAddr: ":8883",
			WSAddr:  ":8083",
		},
		GRPC: ServerConfig{Addr: ":9090"},
		HTTP: ServerConfig{Addr: ":8080"},
		Log:  LogConfig{Level: "info", Format: "text"},

		Tunnel: defaultTunnel(),
		SNMP:   defaultSNMP(),
	}
}
