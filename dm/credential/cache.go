package credential

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
)

// Verifier verifies secrets against stored hashes and remembers successful
// checks of slow (argon2id) hashes, so a device that reconnects pays for
// argon2id once per process rather than on every connect.
//
// It remembers a keyed MAC of (hash, secret) under a random per-process key,
// never the secret: a memory dump does not reveal a password, and the MAC is
// invalid the moment the stored hash changes (a new password). The cache is
// bounded; when full it is cleared, which costs only re-verification.
// Verifier is safe for concurrent use.
type Verifier struct {
	key []byte
	max int

	mu   sync.Mutex
	seen map[[sha256.Size]byte]struct{}
}

// NewVerifier returns a Verifier that remembers at most max successful slow
// checks (0 disables the memory).
func NewVerifier(max int) *Verifier {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &Verifier{key: key, max: max, seen: make(map[[sha256.Size]byte]struct{})}
}

// Verify is Verify with memory of successful slow checks.
func (v *Verifier) Verify(hash, secret string) error {
	if KindOf(hash) != KindChosen || v.max == 0 {
		return Verify(hash, secret)
	}
	mac := hmac.New(sha256.New, v.key)
	mac.Write([]byte(hash))
	mac.Write([]byte{0})
	mac.Write([]byte(secret))
	var k [sha256.Size]byte
	mac.Sum(k[:0])

	v.mu.Lock()
	_, ok := v.seen[k]
	v.mu.Unlock()
	if ok {
		return nil
	}
	if err := Verify(hash, secret); err != nil {
		return err
	}
	v.mu.Lock()
	if len(v.seen) >= v.max {
		clear(v.seen)
	}
	v.seen[k] = struct{}{}
	v.mu.Unlock()
	return nil
}
