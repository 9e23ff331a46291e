package config

import "time"

// TunnelConfig configures TCP tunnels to devices (docs/tunnel.md).
type TunnelConfig struct {
	// Enabled serves TunnelService; default true.
	Enabled bool `yaml:"enabled"`
	// SigningKeyFile holds the Ed25519 private key (PEM, PKCS #8) that signs
	// session tokens; agents trust its public key. Empty means
	// <data_dir>/tunnel-signing-key.pem, created on first start. Nodes of a
	// cluster must share one key.
	SigningKeyFile string `yaml:"signing_key_file"`
	// IdleTimeout ends a session with no data either way for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxLifetime ends a session this long after it opened.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// OpenTimeout bounds the wait for the device to accept a session.
	OpenTimeout time.Duration `yaml:"open_timeout"`
}

func defaultTunnel() TunnelConfig {
	return TunnelConfig{Enabled: true, IdleTimeout: 15 * time.Minute, MaxLifetime: 8 * time.Hour, OpenTimeout: 10 * time.Second}
}

func (t TunnelConfig) validate(bad func(key, format string, args ...any)) {
	if t.IdleTimeout <= 0 {
		bad("tunnel.idle_timeout", "%v must be positive", t.IdleTimeout)
	}
	if t.MaxLifetime <= 0 {
		bad("tunnel.max_lifetime", "%v must be positive", t.MaxLifetime)
	}
	if t.OpenTimeout <= 0 || t.OpenTimeout > time.Minute {
		bad("tunnel.open_timeout", "%v must be between 0 and 1m", t.OpenTimeout)
	}
}
