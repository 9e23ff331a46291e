// Package credential generates secrets and hashes and verifies them for
// every principal of lastmile: devices, MQTT applications and API tokens.
//
// Two hashes, chosen by where the secret came from:
//
//   - A secret the platform generated has 256 bits of entropy. Guessing it is
//     hopeless however fast the hash, so it is stored as SHA-256 over a
//     per-secret random salt and the secret ("s256"). Verifying costs about a
//     microsecond, which is what a reconnect storm of a million devices
//     needs.
//   - A password a person chose may be guessable, so it is stored with
//     argon2id ("argon2id", 19 MiB, 2 passes — the OWASP minimum), which
//     costs tens of milliseconds per check. Verifier caches a successful
//     check so that a reconnecting device pays it once, not on every connect.
//
// Hashes are stored as PHC-style strings: "$s256$<salt>$<sum>" and
// "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<sum>" (unpadded base64).
package credential

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Kind says how a secret was chosen.
type Kind string

// The kinds of secret.
const (
	// KindNone means no secret is set.
	KindNone Kind = ""
	// KindGenerated is a platform-generated, high-entropy secret.
	KindGenerated Kind = "generated"
	// KindChosen is a password chosen by a person.
	KindChosen Kind = "chosen"
)

// MinPasswordLen is the shortest password a person may choose.
const MinPasswordLen = 8

// MaxPasswordLen bounds the work an attacker can make a hash do.
const MaxPasswordLen = 256

var (
	// ErrMismatch is returned when a secret does not match its hash.
	ErrMismatch = errors.New("credential: secret does not match")
	// ErrMalformedHash is returned for a stored hash that cannot be parsed.
	ErrMalformedHash = errors.New("credential: malformed hash")
	// ErrWeakPassword is returned for a chosen password that is too short or too long.
	ErrWeakPassword = fmt.Errorf("credential: a password must be %d to %d characters", MinPasswordLen, MaxPasswordLen)
)

var b64 = base64.RawURLEncoding

// Argon2id parameters for chosen passwords (OWASP 2023 minimum).
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	saltLen        = 16
)

// GenerateSecret returns a new random secret of 256 bits, URL-safe.
func GenerateSecret() string {
	buf := make([]byte, 32)
	_, _ = rand.Read(buf) // crypto/rand.Read never fails (Go 1.24+).
	return b64.EncodeToString(buf)
}

// Hash hashes secret for storage with the hash its kind calls for.
func Hash(kind Kind, secret string) (string, error) {
	salt := make([]byte, saltLen)
	_, _ = rand.Read(salt)
	switch kind {
	case KindGenerated:
		sum := s256(salt, secret)
		return "$s256$" + b64.EncodeToString(salt) + "$" + b64.EncodeToString(sum[:]), nil
	case KindChosen:
		if len(secret) < MinPasswordLen || len(secret) > MaxPasswordLen {
			return "", ErrWeakPassword
		}
		sum := argon2.IDKey([]byte(secret), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
		return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
			b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
	default:
		return "", fmt.Errorf("credential: cannot hash a secret of kind %q", kind)
	}
}

// Verify checks secret against a hash made by Hash. It returns nil,
// ErrMismatch, or ErrMalformedHash.
func Verify(hash, secret string) error {
	if len(secret) > MaxPasswordLen {
		return ErrMismatch
	}
	parts := strings.Split(hash, "$")
	switch {
	case len(parts) == 4 && parts[0] == "" && parts[1] == "s256":
		salt, err1 := b64.DecodeString(parts[2])
		want, err2 := b64.DecodeString(parts[3])
		if err1 != nil || err2 != nil || len(want) != sha256.Size {
			return ErrMalformedHash
		}
		got := s256(salt, secret)
		return equal(got[:], want)
	case len(parts) == 6 && parts[0] == "" && parts[1] == "argon2id":
		m, t, p, err := argonParams(parts[2], parts[3])
		if err != nil {
			return err
		}
		salt, err1 := b64.DecodeString(parts[4])
		want, err2 := b64.DecodeString(parts[5])
		if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 64 {
			return ErrMalformedHash
		}
		got := argon2.IDKey([]byte(secret), salt, t, m, p, uint32(len(want)))
		return equal(got, want)
	default:
		return ErrMalformedHash
	}
}

// KindOf returns the kind of secret a stored hash was made for.
func KindOf(hash string) Kind {
	switch {
	case strings.HasPrefix(hash, "$s256$"):
		return KindGenerated
	case strings.HasPrefix(hash, "$argon2id$"):
		return KindChosen
	default:
		return KindNone
	}
}

func s256(salt []byte, secret string) [sha256.Size]byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(secret))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

func equal(got, want []byte) error {
	if subtle.ConstantTimeCompare(got, want) == 1 {
		return nil
	}
	return ErrMismatch
}

// argonParams parses "v=19" and "m=..,t=..,p=..", refusing parameters that
// would let a forged hash make Verify burn memory or time.
func argonParams(version, params string) (m, t uint32, p uint8, err error) {
	if version != "v="+strconv.Itoa(argon2.Version) {
		return 0, 0, 0, ErrMalformedHash
	}
	var mm, tt, pp int
	if _, err := fmt.Sscanf(params, "m=%d,t=%d,p=%d", &mm, &tt, &pp); err != nil {
		return 0, 0, 0, ErrMalformedHash
	}
	if mm < 8 || mm > 256*1024 || tt < 1 || tt > 10 || pp < 1 || pp > 16 {
		return 0, 0, 0, ErrMalformedHash
	}
	return uint32(mm), uint32(tt), uint8(pp), nil
}
