package config

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"time"
)

// TunnelConfig lets the platform open TCP tunnels to targets the device
// reaches (docs/tunnel.md). Tunnels are off until trusted_keys is set.
type TunnelConfig struct {
	// Allow lists the only targets a tunnel may reach, host:port exactly as
	// the operator names them ("127.0.0.1:22"). Empty refuses every session.
	Allow []string `yaml:"allow"`
	// TrustedKeys are the platform's tunnel public keys as printed by
	// "lmctl tunnel key" (base64 Ed25519); several during a key rotation.
	TrustedKeys []string `yaml:"trusted_keys"`
	// MaxSessions bounds concurrent sessions; default 3.
	MaxSessions int `yaml:"max_sessions"`
	// IdleTimeout and MaxLifetime end sessions on the device side too;
	// 0 keeps the protocol defaults (15m, 8h).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	MaxLifetime time.Duration `yaml:"max_lifetime"`
}

// Enabled reports whether the agent hosts the tunnel endpoint.
func (t *TunnelConfig) Enabled() bool { return len(t.TrustedKeys) > 0 }

// Keys decodes TrustedKeys.
func (t *TunnelConfig) Keys() ([]ed25519.PublicKey, error) {
	out := make([]ed25519.PublicKey, 0, len(t.TrustedKeys))
	for i, k := range t.TrustedKeys {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, keyError(fmt.Sprintf("tunnel.trusted_keys[%d]", i), "want the base64 Ed25519 public key printed by \"lmctl tunnel key\"")
		}
		out = append(out, ed25519.PublicKey(b))
	}
	return out, nil
}

func (t *TunnelConfig) check() error {
	if _, err := t.Keys(); err != nil {
		return err
	}
	if len(t.Allow) > 0 && !t.Enabled() {
		return keyError("tunnel.trusted_keys", "required when tunnel.allow is set (\"lmctl tunnel key\" prints it)")
	}
	for i, a := range t.Allow {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return keyError(fmt.Sprintf("tunnel.allow[%d]", i), "%q is not host:port", a)
		}
	}
	if t.MaxSessions < 0 {
		return keyError("tunnel.max_sessions", "negative")
	}
	if t.IdleTimeout < 0 || t.MaxLifetime < 0 {
		return keyError("tunnel.idle_timeout", "negative idle_timeout or max_lifetime")
	}
	return nil
}
