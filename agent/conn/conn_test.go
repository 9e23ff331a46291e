package conn

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/internal/mosquittotest"
)

// mosquitto starts a real broker on a free port with extra configuration
// lines and returns its address.
func mosquitto(t *testing.T, conf ...string) string {
	t.Helper()
	return mosquittotest.Start(t, conf...)
}

// roundTrip subscribes on one session and publishes on another.
func roundTrip(t *testing.T, base Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Each caller has a topic of its own (TestMQTT5AndMQTT3 runs three on
	// one broker at once), and the handler never blocks: a handler stuck on
	// a full channel would hang the client's Close.
	topic := "tele/" + base.ClientID + "/x"
	got := make(chan Message, 16)
	subCfg := base
	subCfg.ClientID += "-sub"
	sub, err := Connect(ctx, subCfg, func(m Message) {
		select {
		case got <- m:
		default:
			t.Errorf("unexpected message %+v", m)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.Subscribe(ctx, topic); err != nil {
		t.Fatal(err)
	}
	pub, err := Connect(ctx, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if pub.Protocol() != sub.Protocol() {
		t.Fatalf("protocols differ: %s %s", pub.Protocol(), sub.Protocol())
	}
	if err := pub.Publish(ctx, Outgoing{Topic: topic, Payload: []byte("hello"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Topic != topic || string(m.Payload) != "hello" {
			t.Fatalf("got %+v", m)
		}
	case <-ctx.Done():
		t.Fatal("message not received")
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pub.Done():
	case <-ctx.Done():
		t.Fatal("Done not closed after Close")
	}
}

func TestMQTT5AndMQTT3(t *testing.T) {
	t.Parallel()
	addr := mosquitto(t)
	for _, p := range []Protocol{MQTT5, MQTT3, Auto} {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			roundTrip(t, Config{Address: addr, ClientID: "dev1-" + strings.ReplaceAll(string(p), ".", ""), Protocol: p, Keepalive: 5 * time.Second})
		})
	}
}

// v311Only stands in front of a broker like a 3.1.1-only server: a CONNECT
// with protocol level 5 gets CONNACK return code 1 (unacceptable protocol
// version) and the connection is closed; level 4 goes through.
func v311Only(t *testing.T, broker string) (string, *sync.Map) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	var seen sync.Map // protocol level -> true
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				// Fixed header, remaining length (<128 here), then the
				// variable header: protocol name (2+4) and level.
				head := make([]byte, 2+2+4+1)
				if _, err := io.ReadFull(r, head); err != nil {
					return
				}
				level := head[8]
				seen.Store(level, true)
				if level != 4 {
					_, _ = c.Write([]byte{0x20, 0x02, 0x00, 0x01})
					return
				}
				up, err := net.Dial("tcp", broker)
				if err != nil {
					return
				}
				defer up.Close()
				if _, err := up.Write(head); err != nil {
					return
				}
				go func() { _, _ = io.Copy(up, r) }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return l.Addr().String(), &seen
}

func TestFallbackTo311(t *testing.T) {
	t.Parallel()
	addr, seen := v311Only(t, mosquitto(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Connect(ctx, Config{Address: addr, ClientID: "dev1", Protocol: Auto}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Protocol() != MQTT3 {
		t.Fatalf("protocol %s, want 3.1.1", s.Protocol())
	}
	if _, ok := seen.Load(byte(5)); !ok {
		t.Fatal("MQTT 5 was not tried first")
	}
	if err := s.Publish(ctx, Outgoing{Topic: "tele/dev1/x", Payload: []byte("1"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	// Forced 5 does not fall back.
	if s, err := Connect(ctx, Config{Address: addr, ClientID: "dev1", Protocol: MQTT5}, nil); err == nil {
		t.Fatalf("forced MQTT 5 against a 3.1.1 server connected with %s", s.Protocol())
	}
}

func TestRefusedIsNotAFallback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mosquitto_passwd", "-b", pw, "dev1", "right").CombinedOutput(); err != nil {
		t.Skipf("mosquitto_passwd: %v %s", err, out)
	}
	addr := mosquitto(t, "password_file "+pw, "allow_anonymous false")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Connect(ctx, Config{Address: addr, ClientID: "dev1", Username: "dev1", Password: "wrong"}, nil)
	if !errors.Is(err, ErrRefused) || errors.Is(err, ErrProtocolVersion) {
		t.Fatalf("wrong password: %v, want a refusal (and no fallback)", err)
	}
	s, err := Connect(ctx, Config{Address: addr, ClientID: "dev1", Username: "dev1", Password: "right"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
}

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate with CN=dev1, all signed by the CA.
type pki struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(k)
		return write(name+".crt", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kder)
	}
	p := pki{ca: write("ca.crt", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("dev1", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func TestTLSPinnedCAAndClientCertificate(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	addr := mosquitto(t, "cafile "+p.ca, "certfile "+p.serverCert, "keyfile "+p.serverKey, "require_certificate true", "use_identity_as_username true")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	tlsCfg, err := LoadTLS(TLSFiles{CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey}, addr)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Connect(ctx, Config{Address: addr, ClientID: "dev1", TLS: tlsCfg}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, Outgoing{Topic: "tele/dev1/x", Payload: []byte("1"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()

	// Another CA pinned: the server is not trusted, and no fallback is tried.
	other := newPKI(t)
	bad, err := LoadTLS(TLSFiles{CAFile: other.ca, CertFile: p.clientCert, KeyFile: p.clientKey}, addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Connect(ctx, Config{Address: addr, ClientID: "dev1", TLS: bad}, nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("connect with another CA pinned: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{ClientID: "d"},
		{Address: "127.0.0.1:1"},
		{Address: "127.0.0.1:1", ClientID: "d", Protocol: "4"},
		{Address: "127.0.0.1:1", ClientID: "d", Keepalive: time.Millisecond},
	} {
		if _, err := Connect(context.Background(), c, nil); err == nil {
			t.Errorf("Connect(%+v) succeeded", c)
		}
	}
	if _, err := LoadTLS(TLSFiles{}, "h:1"); err == nil {
		t.Error("LoadTLS without a CA succeeded")
	}
}
