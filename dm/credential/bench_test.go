package credential

import "testing"

// The figures behind the choice of hashes (see the package doc and
// docs/security.md): a generated secret must verify in microseconds for
// reconnect storms; a chosen password pays argon2id once per process.
func BenchmarkVerifyGenerated(b *testing.B) {
	secret := GenerateSecret()
	h, _ := Hash(KindGenerated, secret)
	for b.Loop() {
		if err := Verify(h, secret); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyChosen(b *testing.B) {
	h, _ := Hash(KindChosen, "correct horse battery")
	for b.Loop() {
		if err := Verify(h, "correct horse battery"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifierChosenCached(b *testing.B) {
	v := NewVerifier(1000)
	h, _ := Hash(KindChosen, "correct horse battery")
	for b.Loop() {
		if err := v.Verify(h, "correct horse battery"); err != nil {
			b.Fatal(err)
		}
	}
}
