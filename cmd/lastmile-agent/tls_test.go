package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA issues certificates into dir.
type testCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{dir: dir, cert: cert, key: key, file: filepath.Join(dir, name+".crt")}
	writePEMFile(t, ca.file, "CERTIFICATE", der)
	return ca
}

func writePEMFile(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue writes a leaf certificate for cn and returns its files.
func (ca *testCA) issue(t *testing.T, cn string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(ca.dir, cn+".crt"), filepath.Join(ca.dir, cn+".key")
	writePEMFile(t, certFile, "CERTIFICATE", der)
	writePEMFile(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

// TestTLSClientCertificate: the agent connects to the platform's TLS
// listener with only a client certificate (CN = device ID), trusting only
// the pinned CA, and its telemetry arrives. Pinned to another CA, it
// refuses the platform and keeps retrying.
func TestTLSClientCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, dir, "lastmile-ca")
	srvCert, srvKey := ca.issue(t, "server", true)
	pl := startPlatformWith(t, fmt.Sprintf(`
mqtt:
  tls:
    cert_file: %s
    key_file: %s
    client_ca_file: %s
`, srvCert, srvKey, ca.file), "--mqtt-tls-addr", "127.0.0.1:0")
	if pl.addr("mqtt_tls") == "" {
		t.Fatalf("no TLS listener:\n%s", pl.logText())
	}
	tm := pl.subscribe(t, "oss", "tele/+/#")
	pl.api(t, "POST", "/v1/devices", `{"device": {"id": "gw-tls"}}`)
	cert, key := ca.issue(t, "gw-tls", false)

	cfg := func(caFile string) string {
		return fmt.Sprintf(`device_id: gw-tls
server:
  address: "%s"
  tls: {enabled: true, ca_file: %s}
credentials: {cert_file: %s, key_file: %s}
reconnect: {min_delay: 100ms, max_delay: 500ms}
buffer: {dir: %s}
status: {interval: 1s}
`, pl.addr("mqtt_tls"), caFile, cert, key, filepath.Join(t.TempDir(), "buffer"))
	}
	a := startAgent(t, agentConfig(t, t.TempDir(), cfg(ca.file)))
	waitFor(t, 30*time.Second, "telemetry over TLS", func() bool {
		for _, m := range tm.list() {
			if m.Topic == "tele/gw-tls/agent/status" {
				return true
			}
		}
		return false
	})
	if !strings.Contains(a.logText(), "tls=true") {
		t.Errorf("the agent does not say it uses TLS:\n%s", a.logText())
	}
	a.stop(t)

	other := newCA(t, t.TempDir(), "other-ca")
	b := startAgent(t, agentConfig(t, t.TempDir(), cfg(other.file)))
	waitFor(t, 30*time.Second, "refusals of an unpinned server", func() bool {
		return strings.Count(b.logText(), "certificate signed by unknown authority") >= 2
	})
	b.stop(t)
}
