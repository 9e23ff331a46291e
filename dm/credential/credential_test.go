package credential

import (
	"errors"
	"strings"
	"testing"
)

func TestHashVerify(t *testing.T) {
	t.Parallel()
	for _, kind := range []Kind{KindGenerated, KindChosen} {
		secret := "correct horse battery"
		if kind == KindGenerated {
			secret = GenerateSecret()
		}
		h, err := Hash(kind, secret)
		if err != nil {
			t.Fatalf("Hash(%s): %v", kind, err)
		}
		if strings.Contains(h, secret) {
			t.Fatalf("hash %q contains the secret", h)
		}
		if KindOf(h) != kind {
			t.Errorf("KindOf(%q) = %q, want %q", h, KindOf(h), kind)
		}
		if err := Verify(h, secret); err != nil {
			t.Errorf("Verify(%s, right secret) = %v", kind, err)
		}
		if err := Verify(h, secret+"x"); !errors.Is(err, ErrMismatch) {
			t.Errorf("Verify(%s, wrong secret) = %v, want ErrMismatch", kind, err)
		}
		h2, _ := Hash(kind, secret)
		if h2 == h {
			t.Errorf("two hashes of the same secret are equal: salt missing")
		}
	}
}

func TestWeakPassword(t *testing.T) {
	t.Parallel()
	if _, err := Hash(KindChosen, "short"); !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("Hash(short) = %v, want ErrWeakPassword", err)
	}
	if _, err := Hash(KindChosen, strings.Repeat("x", MaxPasswordLen+1)); !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("Hash(long) = %v, want ErrWeakPassword", err)
	}
}

func TestVerifierRemembersOnlySuccess(t *testing.T) {
	t.Parallel()
	v := NewVerifier(2)
	h, _ := Hash(KindChosen, "password-1")
	for range 3 {
		if err := v.Verify(h, "password-1"); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if err := v.Verify(h, "password-2"); !errors.Is(err, ErrMismatch) {
			t.Fatalf("Verify(wrong) after success = %v, want ErrMismatch", err)
		}
	}
	// A new hash for the same password must not be answered from memory of
	// the old one being replaced by a different password.
	h2, _ := Hash(KindChosen, "password-2")
	if err := v.Verify(h2, "password-1"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Verify(old password, new hash) = %v, want ErrMismatch", err)
	}
}

func FuzzVerify(f *testing.F) {
	g, _ := Hash(KindGenerated, "s")
	f.Add(g, "s")
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", "pw")
	f.Add("$argon2id$v=19$m=99999999,t=2,p=1$c2FsdA$aGFzaA", "pw")
	f.Add("$s256$$", "")
	f.Add("garbage", "x")
	f.Fuzz(func(t *testing.T, hash, secret string) {
		err := Verify(hash, secret)
		if err != nil && !errors.Is(err, ErrMismatch) && !errors.Is(err, ErrMalformedHash) {
			t.Fatalf("Verify(%q) = %v: not a sentinel", hash, err)
		}
	})
}
