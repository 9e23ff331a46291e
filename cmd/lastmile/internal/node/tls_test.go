package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/lastmile-dm/lastmile/cmd/lastmile/internal/config"
	"github.com/lastmile-dm/lastmile/dm/registry"
)

// pki is a throwaway CA with helpers to issue certificates.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &pki{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (p *pki) issue(t *testing.T, cn string, server bool) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, dir, name string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	kb, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestX509DeviceAuthentication runs a node with MQTT over TLS and a client
// CA: a device authenticates with a certificate whose CN is its ID.
func TestX509DeviceAuthentication(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newPKI(t, "lastmile test CA")
	certFile, keyFile := writePEM(t, dir, "server", ca.issue(t, "server", true))
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.NodeName, cfg.DataDir = "tls", t.TempDir()
	cfg.MQTT.TCPAddr, cfg.MQTT.TLSAddr, cfg.MQTT.WSAddr = "", "127.0.0.1:0", ""
	cfg.MQTT.TLS = config.MQTTTLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile}
	cfg.GRPC.Addr, cfg.HTTP.Addr = "", ""
	if err := cfg.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-n.Started():
	case err := <-done:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("not started")
	}
	addr := n.Addrs()["mqtt_tls"].String()
	if _, _, err := n.registry.Create(ctx, registry.Device{ID: "dev1", Enabled: true}, registry.Secret{}); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)

	connect := func(cert *tls.Certificate, id string) (*paho.Connack, error) {
		tc := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		conn, err := tls.Dial("tcp", addr, tc)
		if err != nil {
			return nil, err
		}
		c := paho.NewClient(paho.ClientConfig{Conn: conn})
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		ca, err := c.Connect(cctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true})
		if err == nil {
			_ = c.Disconnect(&paho.Disconnect{})
		}
		return ca, err
	}

	good := ca.issue(t, "dev1", false)
	if ack, err := connect(&good, "dev1"); err != nil {
		t.Fatalf("device with a certificate for its ID: %v %+v", err, ack)
	}
	// Presence is recorded just after the CONNACK is sent: wait for it.
	eventually(t, "presence after a TLS connect", func() bool {
		ps, _ := n.store.GetPresence(ctx, []string{"dev1"})
		return ps["dev1"].Listener == "tls"
	})
	ghost := ca.issue(t, "ghost", false)
	if ack, err := connect(&ghost, "ghost"); err == nil || ack == nil || ack.ReasonCode != 0x86 {
		t.Fatalf("certificate for an unknown device: %+v %v, want 0x86", ack, err)
	}
	if ack, err := connect(&good, "dev2"); err == nil || ack == nil || ack.ReasonCode != 0x85 {
		t.Fatalf("certificate of dev1 with client ID dev2: %+v %v, want 0x85", ack, err)
	}
	if ack, err := connect(nil, "dev1"); err == nil || ack == nil || ack.ReasonCode != 0x86 {
		t.Fatalf("no certificate and no password: %+v %v, want 0x86", ack, err)
	}
	other := newPKI(t, "someone else's CA").issue(t, "dev1", false)
	if _, err := connect(&other, "dev1"); err == nil {
		t.Fatal("a certificate from an untrusted CA was accepted")
	}
}
