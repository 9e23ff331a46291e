package tunnel

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// A session token lets one platform node open one session to one target of
// one device, for a short time. The platform signs it with its Ed25519 key;
// the agent holds the public key and checks signature, device, target,
// session and expiry before it dials anything, so a client that can merely
// publish to a device's tunnel topic cannot open a tunnel.
//
// Wire form: JSON claims, then the 64-byte signature over them.

// Claims is what a token grants.
type Claims struct {
	Device  string `json:"dev"`
	Session string `json:"sid"`
	Target  string `json:"tgt"`
	// Principal is who asked for the session (for the agent's audit log).
	Principal string `json:"sub,omitempty"`
	IssuedAt  int64  `json:"iat"` // unix seconds
	Expires   int64  `json:"exp"` // unix seconds
}

// Token errors; all wrap ErrBadToken.
var (
	// ErrBadToken: the token is malformed, forged, expired or for another
	// device, session or target.
	ErrBadToken = errors.New("tunnel: bad session token")
)

// SignToken returns c signed with key.
func SignToken(c Claims, key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("tunnel: signing key is not an Ed25519 private key")
	}
	for _, f := range []string{c.Device, c.Session, c.Target, c.Principal} {
		if !utf8.ValidString(f) {
			// JSON would replace the bad bytes, and the token would no
			// longer name what the frame names.
			return nil, fmt.Errorf("tunnel: token claim %q is not UTF-8", f)
		}
	}
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode token: %w", err)
	}
	tok := append(body, ed25519.Sign(key, body)...)
	if len(tok) > MaxTokenLen {
		return nil, fmt.Errorf("tunnel: token longer than %d bytes", MaxTokenLen)
	}
	return tok, nil
}

// ParseToken checks tok's signature against any of keys and returns its
// claims. It does not check what the claims say; VerifyToken does.
func ParseToken(tok []byte, keys []ed25519.PublicKey) (Claims, error) {
	var c Claims
	if len(tok) <= ed25519.SignatureSize || len(tok) > MaxTokenLen {
		return c, fmt.Errorf("%w: wrong length", ErrBadToken)
	}
	body, sig := tok[:len(tok)-ed25519.SignatureSize], tok[len(tok)-ed25519.SignatureSize:]
	signed := false
	for _, k := range keys {
		if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, body, sig) {
			signed = true
			break
		}
	}
	if !signed {
		return c, fmt.Errorf("%w: signature does not verify", ErrBadToken)
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return c, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	return c, nil
}

// VerifyToken checks tok for a session of device to target at now.
func VerifyToken(tok []byte, keys []ed25519.PublicKey, device, session, target string, now time.Time) (Claims, error) {
	c, err := ParseToken(tok, keys)
	if err != nil {
		return c, err
	}
	switch {
	case c.Device != device:
		return c, fmt.Errorf("%w: issued for another device", ErrBadToken)
	case c.Session != session:
		return c, fmt.Errorf("%w: issued for another session", ErrBadToken)
	case c.Target != target:
		return c, fmt.Errorf("%w: issued for another target", ErrBadToken)
	case now.Unix() >= c.Expires:
		return c, fmt.Errorf("%w: expired", ErrBadToken)
	case c.IssuedAt > now.Add(time.Minute).Unix():
		return c, fmt.Errorf("%w: issued in the future (clock skew?)", ErrBadToken)
	}
	return c, nil
}
