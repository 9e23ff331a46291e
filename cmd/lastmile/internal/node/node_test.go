package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/broker"
	"github.com/lastmile-dm/lastmile/cmd/lastmile/internal/config"
	"github.com/lastmile-dm/lastmile/dm/access"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/internal/store/embedded"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fixture is the domain services on a real embedded store.
type fixture struct {
	store    *embedded.Store
	registry *registry.Service
	access   *access.Service
}

func newFixture(t *testing.T, anonRole string) *fixture {
	t.Helper()
	st, err := embedded.Open(embedded.Config{Dir: t.TempDir(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	reg, err := registry.New(registry.Config{Store: st, Presence: st, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	roles := []access.Role{{Name: "reader", Rules: []access.Rule{{Action: access.ActionSubscribe, Effect: access.Allow, Filter: "tele/+/#"}}}}
	acc, err := access.New(access.Config{Store: st, Roles: roles, AnonymousRole: anonRole, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{store: st, registry: reg, access: acc}
}

func TestAuthenticator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, "reader")
	_, secret, err := f.registry.Create(ctx, registry.Device{ID: "dev1", Enabled: true}, registry.Secret{Generate: true})
	if err != nil {
		t.Fatal(err)
	}
	_, offSecret, err := f.registry.Create(ctx, registry.Device{ID: "off", Enabled: false}, registry.Secret{Generate: true})
	if err != nil {
		t.Fatal(err)
	}
	_, banSecret, err := f.registry.Create(ctx, registry.Device{ID: "ban", Enabled: true, Banned: true}, registry.Secret{Generate: true})
	if err != nil {
		t.Fatal(err)
	}
	_, appSecret, err := f.access.CreateApplication(ctx, access.Application{Name: "oss", Role: "reader", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}

	closed := &authenticator{registry: f.registry, access: f.access, devices: f.store, anonymous: false}
	open := &authenticator{registry: f.registry, access: f.access, devices: f.store, anonymous: true}
	tests := []struct {
		name    string
		a       *authenticator
		r       broker.ConnectRequest
		wantErr error
		kind    broker.PrincipalKind
		id      string
	}{
		{"device", closed, broker.ConnectRequest{ClientID: "dev1", Username: "dev1", Password: []byte(secret)}, nil, broker.KindDevice, "dev1"},
		{"device wrong password", closed, broker.ConnectRequest{ClientID: "dev1", Username: "dev1", Password: []byte("x")}, broker.ErrBadCredentials, "", ""},
		{"unknown device", closed, broker.ConnectRequest{ClientID: "nope", Username: "nope", Password: []byte("x")}, broker.ErrBadCredentials, "", ""},
		{"client id mismatch", closed, broker.ConnectRequest{ClientID: "other", Username: "dev1", Password: []byte(secret)}, broker.ErrClientIDInvalid, "", ""},
		{"disabled", closed, broker.ConnectRequest{ClientID: "off", Username: "off", Password: []byte(offSecret)}, broker.ErrNotAuthorized, "", ""},
		{"banned", closed, broker.ConnectRequest{ClientID: "ban", Username: "ban", Password: []byte(banSecret)}, broker.ErrBanned, "", ""},
		{"application", closed, broker.ConnectRequest{ClientID: "app:oss", Username: "app:oss", Password: []byte(appSecret)}, nil, broker.KindApplication, "app:oss"},
		{"application suffix", closed, broker.ConnectRequest{ClientID: "app:oss:2", Username: "app:oss", Password: []byte(appSecret)}, nil, broker.KindApplication, "app:oss"},
		{"application wrong secret", closed, broker.ConnectRequest{ClientID: "app:oss", Username: "app:oss", Password: []byte("x")}, broker.ErrBadCredentials, "", ""},
		{"application wrong client id", closed, broker.ConnectRequest{ClientID: "dev1", Username: "app:oss", Password: []byte(appSecret)}, broker.ErrClientIDInvalid, "", ""},
		{"anonymous off", closed, broker.ConnectRequest{ClientID: "lab-1"}, broker.ErrBadCredentials, "", ""},
		{"anonymous on", open, broker.ConnectRequest{ClientID: "lab-1"}, nil, broker.KindAnonymous, "anon:lab-1"},
		{"anonymous as a device", open, broker.ConnectRequest{ClientID: "dev1"}, broker.ErrClientIDInvalid, "", ""},
		{"anonymous as an application", open, broker.ConnectRequest{ClientID: "app:oss"}, broker.ErrClientIDInvalid, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := tt.a.Authenticate(ctx, tt.r)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), appSecret) {
					t.Fatal("error reveals a secret")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Kind != tt.kind || p.ID != tt.id {
				t.Fatalf("principal %s/%s, want %s/%s", p.Kind, p.ID, tt.kind, tt.id)
			}
		})
	}

	// ACLs of each kind of principal.
	dev, _ := closed.Authenticate(ctx, broker.ConnectRequest{ClientID: "dev1", Username: "dev1", Password: []byte(secret)})
	if !dev.CanPublish("tele/dev1/x") || dev.CanPublish("tele/dev2/x") || !dev.CanSubscribe("$dm/dev1/#") || dev.CanSubscribe("#") {
		t.Error("device ACL wrong")
	}
	app, _ := closed.Authenticate(ctx, broker.ConnectRequest{ClientID: "app:oss", Username: "app:oss", Password: []byte(appSecret)})
	if !app.CanSubscribe("tele/+/#") || app.CanSubscribe("$dm/+/#") || app.CanPublish("tele/dev1/x") {
		t.Error("application ACL wrong")
	}
}

func TestPresenceSink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, "")
	if _, _, err := f.registry.Create(ctx, registry.Device{ID: "dev1", Enabled: true}, registry.Secret{}); err != nil {
		t.Fatal(err)
	}
	sink := &presenceSink{registry: f.registry, node: "n1", bootID: "b1"}
	dev := &broker.Principal{ID: "dev1", Kind: broker.KindDevice}
	now := time.Now()
	sink.Connected(broker.Session{ClientID: "dev1", Principal: dev, ConnID: 1, ConnectedAt: now})
	sink.Connected(broker.Session{ClientID: "dev1", Principal: dev, ConnID: 2, ConnectedAt: now}) // takeover
	sink.Disconnected("dev1", "dev1", 1, now, "taken over")                                       // stale
	_, p, err := f.registry.Get(ctx, "dev1")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Online || p.Conn != "n1/b1/2" || p.Node != "n1" {
		t.Fatalf("after takeover: %+v", p)
	}
	// Applications have no presence; their disconnects change nothing.
	sink.Connected(broker.Session{ClientID: "app:oss", Principal: &broker.Principal{ID: "app:oss", Kind: broker.KindApplication}, ConnID: 3})
	sink.Disconnected("app:oss", "app:oss", 3, now, "bye")
	sink.Disconnected("dev1", "dev1", 2, now, "bye")
	if _, p, _ = f.registry.Get(ctx, "dev1"); p.Online || p.DisconnectReason != "bye" {
		t.Fatalf("after disconnect: %+v", p)
	}
}

// TestRunAndShutdown starts a whole node on free ports, checks readiness
// over HTTP and that cancelling the context stops it and closes the store.
func TestRunAndShutdown(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.NodeName = "t1"
	cfg.DataDir = t.TempDir()
	cfg.MQTT.TCPAddr, cfg.MQTT.WSAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.GRPC.Addr, cfg.HTTP.Addr = "", "127.0.0.1:0" // gRPC internal only
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
	select {
	case <-n.Started():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not started")
	}
	addrs := n.Addrs()
	if addrs["mqtt"] == nil || addrs["ws"] == nil || addrs["http"] == nil || addrs["grpc"] != nil {
		t.Fatalf("addrs: %v", addrs)
	}
	if err := n.Ready(); err != nil {
		t.Fatalf("not ready: %v", err)
	}
	resp, err := http.Get("http://" + addrs["http"].String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// The store is closed: it can be opened again.
	st, err := OpenStore(context.Background(), cfg, quietLogger(), nil)
	if err != nil {
		t.Fatalf("reopen store: %v", err)
	}
	_ = st.Close()
}

func TestOpenStoreLocked(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	st, err := OpenStore(context.Background(), cfg, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := OpenStore(context.Background(), cfg, quietLogger(), nil); !errors.Is(err, ErrStoreLocked) {
		t.Fatalf("second open: %v, want ErrStoreLocked", err)
	}
}
