package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lastmile-dm/lastmile/dm/access"
)

// Bounds of the limits.
const (
	MinPacketSize    = 1024
	MaxPacketSize    = 256 << 20 // the MQTT maximum
	MaxSessionExpiry = 365 * 24 * time.Hour
)

// CheckAndSetDefaults fills the defaults that depend on the environment
// (node name from the hostname) and validates every key. Each error names
// its key; all errors are returned at once.
func (c *Config) CheckAndSetDefaults() error {
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "lastmile"
		}
		c.NodeName = h
	}
	return c.Validate()
}

// Validate checks every key and returns all problems joined.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.NodeName != "" && (strings.ContainsAny(c.NodeName, "/ \t\n") || len(c.NodeName) > 128) {
		bad("node_name", "%q must be at most 128 characters without '/' or spaces", c.NodeName)
	}

	switch c.Store.Engine {
	case EngineEmbedded:
		if c.DataDir == "" {
			bad("data_dir", "required with store.engine embedded")
		}
	case EngineRedis:
		r := c.Store.Redis
		if r.Addr == "" {
			bad("store.redis.addr", "required with store.engine redis")
		} else if err := checkAddr(r.Addr, false); err != nil {
			bad("store.redis.addr", "%v", err)
		}
		if r.Password != "" && r.PasswordFile != "" {
			bad("store.redis.password_file", "set either password or password_file, not both")
		}
		if r.PasswordFile != "" {
			if _, err := os.ReadFile(r.PasswordFile); err != nil {
				bad("store.redis.password_file", "%v", err)
			}
		}
		if r.DB < 0 || r.DB > 15 {
			bad("store.redis.db", "%d is not a database number 0-15", r.DB)
		}
		if r.TLS.Enabled {
			if _, err := c.Store.Redis.TLS.Build(); err != nil {
				errs = append(errs, err)
			}
		}
	default:
		bad("store.engine", "%q is not embedded or redis", c.Store.Engine)
	}

	checkListen := func(key, addr string) {
		if addr == "" {
			return
		}
		if err := checkAddr(addr, true); err != nil {
			bad(key, "%v", err)
		}
	}
	checkListen("mqtt.tcp_addr", c.MQTT.TCPAddr)
	checkListen("mqtt.tls_addr", c.MQTT.TLSAddr)
	checkListen("mqtt.ws_addr", c.MQTT.WSAddr)
	checkListen("grpc.addr", c.GRPC.Addr)
	checkListen("http.addr", c.HTTP.Addr)
	if c.MQTT.TCPAddr == "" && c.MQTT.WSAddr == "" && (c.MQTT.TLSAddr == "" || !c.MQTT.TLS.Enabled()) {
		bad("mqtt", "every MQTT listener is off: set mqtt.tcp_addr, mqtt.ws_addr, or mqtt.tls_addr with a certificate")
	}

	if c.MQTT.TLS.Enabled() || c.MQTT.TLS.ClientCAFile != "" || c.MQTT.TLS.RequireClientCert {
		if _, err := c.MQTT.TLS.Build(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MQTT.WSTLS && !c.MQTT.TLS.Enabled() {
		bad("mqtt.ws_tls", "needs mqtt.tls.cert_file and mqtt.tls.key_file")
	}
	for key, t := range map[string]TLSConfig{"grpc.tls": c.GRPC.TLS, "http.tls": c.HTTP.TLS} {
		if t.Enabled() {
			if _, err := t.build(key); err != nil {
				errs = append(errs, err)
			}
		}
	}

	for key, v := range map[string]int{"shadow.max_document_bytes": c.Shadow.MaxDocumentBytes, "shadow.max_depth": c.Shadow.MaxDepth,
		"shadow.max_in_flight": c.Shadow.MaxInFlight, "shadow.max_named_shadows": c.Shadow.MaxNamedShadows} {
		if v < 0 {
			bad(key, "must not be negative (0 = default)")
		}
	}
	if c.Shadow.MaxDocumentBytes > 0 && c.MQTT.Limits.MaxPacketSize > 0 && c.Shadow.MaxDocumentBytes > int(c.MQTT.Limits.MaxPacketSize) {
		bad("shadow.max_document_bytes", "%d exceeds mqtt.limits.max_packet_size %d: devices could not send such a document", c.Shadow.MaxDocumentBytes, c.MQTT.Limits.MaxPacketSize)
	}

	l := c.MQTT.Limits
	if l.MaxPacketSize != 0 && (l.MaxPacketSize < MinPacketSize || l.MaxPacketSize > MaxPacketSize) {
		bad("mqtt.limits.max_packet_size", "%d is outside %d-%d bytes", l.MaxPacketSize, MinPacketSize, MaxPacketSize)
	}
	if p := l.SlowConsumerPolicy; p != "" && p != "drop" && p != "disconnect" {
		bad("mqtt.limits.slow_consumer_policy", "%q: want drop or disconnect", p)
	}
	if l.MaxPendingBytes < 0 {
		bad("mqtt.limits.max_pending_bytes", "must not be negative")
	}
	if l.MaxPendingWrites < 0 {
		bad("mqtt.limits.max_pending_writes", "must not be negative")
	}
	if l.MaxQueuedMessages < 0 {
		bad("mqtt.limits.max_queued_messages", "must not be negative")
	}
	if l.MaxConnections < 0 {
		bad("mqtt.limits.max_connections", "must not be negative (0 = unlimited)")
	}
	if l.ConnectRatePerIP < 0 {
		bad("mqtt.limits.connect_rate_per_ip", "must not be negative (0 = unlimited)")
	}
	if l.ConnectBurstPerIP < 0 {
		bad("mqtt.limits.connect_burst_per_ip", "must not be negative")
	}
	if l.ConnectRatePerIP > 0 && l.ConnectBurstPerIP == 0 {
		bad("mqtt.limits.connect_burst_per_ip", "must be at least 1 when connect_rate_per_ip is set")
	}
	for key, d := range map[string]time.Duration{
		"mqtt.limits.max_session_expiry":     l.MaxSessionExpiry,
		"mqtt.limits.default_session_expiry": l.DefaultSessionExpiry,
	} {
		if d < 0 || d > MaxSessionExpiry {
			bad(key, "%s is outside 0-%s", d, MaxSessionExpiry)
		}
	}
	if l.MaxSessionExpiry > 0 && l.DefaultSessionExpiry > l.MaxSessionExpiry {
		bad("mqtt.limits.default_session_expiry", "%s exceeds max_session_expiry %s", l.DefaultSessionExpiry, l.MaxSessionExpiry)
	}

	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not text or json", c.Log.Format)
	}

	seen := map[string]bool{}
	for i, rc := range c.Access.Roles {
		key := fmt.Sprintf("access.roles[%d]", i)
		r := rc.Role()
		if len(rc.Rules) == 0 {
			bad(key, "role %q has no rules", rc.Name)
		}
		for j, ru := range rc.Rules {
			if len(ru.Topics) == 0 {
				bad(fmt.Sprintf("%s.rules[%d].topics", key, j), "at least one topic filter is required")
			}
		}
		if err := r.Validate(); err != nil {
			bad(key, "%v", strings.TrimPrefix(err.Error(), access.ErrInvalid.Error()+": "))
		}
		if seen[rc.Name] {
			bad(key, "role %q is defined twice", rc.Name)
		}
		seen[rc.Name] = true
	}
	if c.Access.Anonymous.Enabled {
		if c.Access.Anonymous.Role == "" {
			bad("access.anonymous.role", "required when access.anonymous.enabled is true")
		} else if !seen[c.Access.Anonymous.Role] {
			bad("access.anonymous.role", "%q is not a role in access.roles", c.Access.Anonymous.Role)
		}
	}
	c.Tunnel.validate(bad)
	if b := c.Events.WatcherBuffer; b < 0 || b > 100_000 {
		bad("events.watcher_buffer", "%d must be 0 (default) to 100000", b)
	}
	if c.Events.MaxWatchers < 0 {
		bad("events.max_watchers", "%d must not be negative", c.Events.MaxWatchers)
	}
	if a := c.Debug.PprofAddr; a != "" {
		if err := checkAddr(a, true); err != nil {
			bad("debug.pprof_addr", "%v", err)
		} else if host, _, _ := net.SplitHostPort(a); host != "localhost" && !net.ParseIP(host).IsLoopback() {
			bad("debug.pprof_addr", "%q: pprof is unauthenticated, so it listens on loopback only (e.g. 127.0.0.1:6060)", a)
		}
	}
	if c.Commands.MaxPending < 0 {
		bad("commands.max_pending", "%d must not be negative", c.Commands.MaxPending)
	}
	c.SNMP.validate(bad)
	return errors.Join(errs...)
}

// Role converts a role of the file to the domain's: one rule per topic.
func (rc RoleConfig) Role() access.Role {
	r := access.Role{Name: rc.Name}
	for _, ru := range rc.Rules {
		for _, t := range ru.Topics {
			r.Rules = append(r.Rules, access.Rule{Action: access.Action(ru.Action), Effect: access.Effect(ru.Effect), Filter: t})
		}
	}
	return r
}

// DomainRoles returns the file's roles in the domain's form.
func (a AccessConfig) DomainRoles() []access.Role {
	out := make([]access.Role, 0, len(a.Roles))
	for _, rc := range a.Roles {
		out = append(out, rc.Role())
	}
	return out
}

// checkAddr checks a host:port; listen addresses may leave the host empty
// and use port 0 (any free port).
func checkAddr(addr string, listen bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if !listen && host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (!listen && n == 0) {
		return fmt.Errorf("%q: port %q is not a number 1-65535", addr, port)
	}
	if host != "" && strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q: bad host %q", addr, host)
	}
	return nil
}

// Build returns the server TLS config of the MQTT listeners, with client
// certificate verification when a client CA is configured.
func (t MQTTTLSConfig) Build() (*tls.Config, error) {
	if !t.Enabled() {
		return nil, errors.New("mqtt.tls: cert_file and key_file are required for client_ca_file or require_client_cert")
	}
	cfg, err := TLSConfig{CertFile: t.CertFile, KeyFile: t.KeyFile}.build("mqtt.tls")
	if err != nil {
		return nil, err
	}
	if t.ClientCAFile != "" {
		pool, err := loadPool(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls.client_ca_file: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if t.RequireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	} else if t.RequireClientCert {
		return nil, errors.New("mqtt.tls.require_client_cert: needs mqtt.tls.client_ca_file")
	}
	return cfg, nil
}

// Build returns the server TLS config, or nil when TLS is off.
func (t TLSConfig) Build(key string) (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	return t.build(key)
}

func (t TLSConfig) build(key string) (*tls.Config, error) {
	if t.CertFile == "" {
		return nil, fmt.Errorf("%s.cert_file: required with %s.key_file", key, key)
	}
	if t.KeyFile == "" {
		return nil, fmt.Errorf("%s.key_file: required with %s.cert_file", key, key)
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s.cert_file/key_file: %w", key, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Build returns the client TLS config for Redis.
func (t RedisTLSConfig) Build() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pool, err := loadPool(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("store.redis.tls.ca_file: %w", err)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("store.redis.tls.cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// RedisPassword returns the Redis password, read from password_file if set.
func (r RedisConfig) RedisPassword() (string, error) {
	if r.PasswordFile == "" {
		return r.Password, nil
	}
	b, err := os.ReadFile(r.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("store.redis.password_file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
