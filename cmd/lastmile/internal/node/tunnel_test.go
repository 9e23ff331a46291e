package node

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lastmile-dm/lastmile/cmd/lastmile/internal/config"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/token"
	"github.com/lastmile-dm/lastmile/internal/tunneltest"
	tunnelv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/tunnel/v1"
	"github.com/lastmile-dm/lastmile/tunnel/endpoint"
)

func TestTunnelFramesFitThePacketLimit(t *testing.T) {
	t.Parallel()
	for limit, want := range map[uint32]int{0: 192 << 10, 256 << 10: 192 << 10, 128 << 10: 127 << 10, 16 << 10: 15 << 10, 1024: 1, 1 << 20: 192 << 10} {
		if got := tunnelMaxData(limit); got != want {
			t.Errorf("tunnelMaxData(%d) = %d, want %d", limit, got, want)
		}
	}
}

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

// TestTunnelThroughNode: a whole node (broker, relay, gRPC API) and an
// agent endpoint on a real MQTT client with the device's credentials; the
// agent trusts the key the API hands out, and bytes cross the tunnel.
func TestTunnelThroughNode(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.NodeName = "t1"
	cfg.DataDir = t.TempDir()
	cfg.MQTT.TCPAddr, cfg.MQTT.TLSAddr, cfg.MQTT.WSAddr = "127.0.0.1:0", "", ""
	cfg.GRPC.Addr, cfg.HTTP.Addr = "127.0.0.1:0", "127.0.0.1:0"
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
		t.Fatalf("Run: %v", err)
	}
	if _, _, err := n.registry.Create(ctx, registry.Device{ID: "cpe1", Enabled: true}, registry.Secret{Password: "correct horse"}); err != nil {
		t.Fatal(err)
	}
	_, bearer, err := n.Tokens().Create(ctx, "ops", []string{token.PermTunnel}, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(n.Addrs()["grpc"].String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := tunnelv1.NewTunnelServiceClient(conn)
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+bearer)
	k, err := api.GetTunnelKey(actx, &tunnelv1.GetTunnelKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := base64.StdEncoding.DecodeString(k.GetPublicKey())
	if err != nil {
		t.Fatal(err)
	}

	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	go func() {
		c, err := target.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	dev := tunneltest.Dial(t, n.Addrs()["mqtt"].String(), "cpe1", "correct horse")
	ep, err := endpoint.New(endpoint.Config{DeviceID: "cpe1", PubSub: dev, AllowList: []string{target.Addr().String()},
		TrustedKeys: []ed25519.PublicKey{pub}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := ep.Start(); err != nil {
		t.Fatal(err)
	}
	defer ep.Close()

	tun, err := api.OpenTunnel(actx, &tunnelv1.OpenTunnelRequest{DeviceId: "cpe1", Target: target.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := api.Connect(actx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&tunnelv1.ConnectRequest{TunnelId: tun.GetId(), Data: []byte("ping through the NAT"), CloseWrite: true}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.GetData()...)
	}
	if string(got) != "ping through the NAT" {
		t.Fatalf("echo came back as %q", got)
	}
	if _, err := api.CloseTunnel(actx, &tunnelv1.CloseTunnelRequest{TunnelId: tun.GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.CloseTunnel(actx, &tunnelv1.CloseTunnelRequest{TunnelId: tun.GetId()}); status.Code(err) != codes.NotFound {
		t.Fatalf("closing a closed tunnel: %v", err)
	}

	// REST: the same key, and a clear 4xx for a bad request.
	rest := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+n.Addrs()["http"].String()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := rest("GET", "/v1/tunnel-key", ""); code != http.StatusOK || !strings.Contains(body, k.GetPublicKey()) {
		t.Fatalf("GET /v1/tunnel-key: %d %s", code, body)
	}
	if code, body := rest("POST", "/v1/devices/cpe1/tunnels", `{"target":"no-port"}`); code != http.StatusBadRequest || !strings.Contains(body, "not host:port") {
		t.Fatalf("POST a bad target: %d %s", code, body)
	}
	if code, body := rest("GET", "/v1/tunnels", ""); code != http.StatusOK || strings.Contains(body, tun.GetId()) {
		t.Fatalf("GET /v1/tunnels after close: %d %s", code, body)
	}
}
