package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSigningKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "tunnel-signing-key.pem")
	k1, err := loadOrCreateSigningKey(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v, %v: want mode 0600", fi, err)
	}
	k2, err := loadOrCreateSigningKey(path, true)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("reloaded key differs (%v)", err)
	}
	if _, err := loadOrCreateSigningKey(filepath.Join(dir, "missing.pem"), false); err == nil {
		t.Fatal("a configured key file that does not exist was accepted")
	}
	bad := filepath.Join(dir, "bad.pem")
	_ = os.WriteFile(bad, []byte("not pem"), 0o600)
	if _, err := loadOrCreateSigningKey(bad, false); err == nil || !strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Fatalf("garbage key file: %v", err)
	}
}
