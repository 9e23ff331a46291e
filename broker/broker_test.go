package broker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	paho3packets "github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/broker"
	"github.com/lastmile-dm/lastmile/internal/poll"
	"github.com/lastmile-dm/lastmile/internal/store/embedded"
)

// users is a small Authenticator for the broker's own tests: devices own
// tele/{id}/# and $dm/{id}/#; "app:reader" may subscribe to tele/+/#.
type users struct {
	mu       sync.Mutex
	password map[string]string
	disabled map[string]bool
	banned   map[string]bool
}

func newUsers(ids ...string) *users {
	u := &users{password: map[string]string{}, disabled: map[string]bool{}, banned: map[string]bool{}}
	for _, id := range ids {
		u.password[id] = "pw-" + id
	}
	return u
}

func (u *users) edit(fn func(*users)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fn(u)
}

func within(id, t string) bool {
	return strings.HasPrefix(t, "tele/"+id+"/") || strings.HasPrefix(t, "$dm/"+id+"/")
}

func (u *users) Authenticate(_ context.Context, r broker.ConnectRequest) (*broker.Principal, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	pw, ok := u.password[r.Username]
	switch {
	case !ok || pw != string(r.Password):
		return nil, broker.ErrBadCredentials
	case u.banned[r.Username]:
		return nil, broker.ErrBanned
	case u.disabled[r.Username]:
		return nil, broker.ErrNotAuthorized
	}
	if r.Username == "app:reader" {
		return &broker.Principal{ID: "app:reader", Kind: broker.KindApplication,
			CanPublish:   func(string) bool { return false },
			CanSubscribe: func(f string) bool { return strings.HasPrefix(f, "tele/") },
		}, nil
	}
	if r.ClientID != r.Username {
		return nil, broker.ErrClientIDInvalid
	}
	id := r.Username
	return &broker.Principal{ID: id, Kind: broker.KindDevice,
		CanPublish:   func(t string) bool { return within(id, t) },
		CanSubscribe: func(f string) bool { return within(id, f) },
	}, nil
}

// presence records what the broker reports, like the registry does:
// the newest connection wins, stale disconnects are ignored.
type presence struct {
	mu     sync.Mutex
	online map[string]uint64 // principal -> current conn ID
	events []string
}

func (p *presence) Connected(s broker.Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.online[s.Principal.ID] = s.ConnID
	p.events = append(p.events, fmt.Sprintf("connected %s %d", s.Principal.ID, s.ConnID))
}

func (p *presence) Disconnected(_, principal string, connID uint64, _ time.Time, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, fmt.Sprintf("disconnected %s %d %s", principal, connID, reason))
	if p.online[principal] == connID {
		delete(p.online, principal)
	}
}

func (p *presence) current(id string) (uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.online[id]
	return c, ok
}

type harness struct {
	srv      *broker.Server
	addr     string
	users    *users
	presence *presence
	dir      string
	store    *embedded.Store
}

func start(t *testing.T, dir string, mod func(*broker.Config)) *harness {
	t.Helper()
	h := &harness{users: newUsers("dev1", "dev2", "app:reader"), presence: &presence{online: map[string]uint64{}}, dir: dir}
	cfg := broker.Config{NodeName: "test", TCPAddr: "127.0.0.1:0", Authenticator: h.users, Presence: h.presence, Registerer: prometheus.NewRegistry()}
	if dir != "" {
		st, err := embedded.Open(embedded.Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		cfg.Sessions = st
		h.store = st
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	h.srv, h.addr = srv, srv.Addrs()["tcp"].String()
	return h
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 5*time.Second, what, cond)
}

// client5 is an MQTT 5 client that collects what it receives.
type client5 struct {
	*paho.Client
	mu   sync.Mutex
	got  []string
	gone chan *paho.Disconnect
}

func (c *client5) received() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

func dial5(t *testing.T, addr string, cp *paho.Connect) (*client5, *paho.Connack, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &client5{gone: make(chan *paho.Disconnect, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.mu.Lock()
			c.got = append(c.got, pr.Packet.Topic+"="+string(pr.Packet.Payload))
			c.mu.Unlock()
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { c.gone <- d },
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	cp.UsernameFlag, cp.PasswordFlag = cp.Username != "", len(cp.Password) > 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err == nil {
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	}
	return c, ca, err
}

func device5(t *testing.T, addr, id string) *client5 {
	t.Helper()
	c, _, err := dial5(t, addr, &paho.Connect{ClientID: id, Username: id, Password: []byte("pw-" + id), CleanStart: true})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return c
}

func TestConnackReasonCodesV5(t *testing.T) {
	t.Parallel()
	h := start(t, "", nil)
	h.users.edit(func(u *users) {
		u.disabled["dev2"] = true
		u.password["bad"] = "pw-bad"
		u.banned["bad"] = true
	})
	cases := []struct {
		name string
		cp   paho.Connect
		want byte
	}{
		{"wrong password", paho.Connect{ClientID: "dev1", Username: "dev1", Password: []byte("nope")}, 0x86},
		{"unknown device", paho.Connect{ClientID: "ghost", Username: "ghost", Password: []byte("x")}, 0x86},
		{"no credentials", paho.Connect{ClientID: "anon"}, 0x86},
		{"disabled", paho.Connect{ClientID: "dev2", Username: "dev2", Password: []byte("pw-dev2")}, 0x87},
		{"banned", paho.Connect{ClientID: "bad", Username: "bad", Password: []byte("pw-bad")}, 0x8A},
		{"client ID of another device", paho.Connect{ClientID: "dev2", Username: "dev1", Password: []byte("pw-dev1")}, 0x85},
		{"will on a foreign topic", paho.Connect{ClientID: "dev1", Username: "dev1", Password: []byte("pw-dev1"),
			WillMessage: &paho.WillMessage{Topic: "tele/dev2/status", Payload: []byte("x")}}, 0x87},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cp := tc.cp
			_, ca, err := dial5(t, h.addr, &cp)
			if err == nil || ca == nil || ca.ReasonCode != tc.want {
				t.Fatalf("CONNACK %+v, err %v; want reason 0x%02X", ca, err, tc.want)
			}
		})
	}
	if _, ok := h.presence.current("dev1"); ok {
		t.Fatal("a refused connection was reported online")
	}
}

func TestConnackReturnCodesV311(t *testing.T) {
	t.Parallel()
	h := start(t, "", nil)
	h.users.edit(func(u *users) { u.disabled["dev2"] = true })
	cases := []struct {
		name, id, user, pass string
		want                 error
	}{
		{"wrong password", "dev1", "dev1", "nope", paho3packets.ErrorRefusedBadUsernameOrPassword},
		{"disabled", "dev2", "dev2", "pw-dev2", paho3packets.ErrorRefusedNotAuthorised},
		{"client ID of another device", "dev2", "dev1", "pw-dev1", paho3packets.ErrorRefusedIDRejected},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := paho3.NewClientOptions().AddBroker("tcp://" + h.addr).SetClientID(tc.id).SetUsername(tc.user).SetPassword(tc.pass).
				SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
			c := paho3.NewClient(o)
			tok := c.Connect()
			tok.WaitTimeout(5 * time.Second)
			if !errors.Is(tok.Error(), tc.want) {
				t.Fatalf("connect error %v, want %v", tok.Error(), tc.want)
			}
		})
	}
}

func TestDeviceStaysInItsNamespace(t *testing.T) {
	t.Parallel()
	h := start(t, "", nil)
	dev1 := device5(t, h.addr, "dev1")
	dev2 := device5(t, h.addr, "dev2")
	ctx := context.Background()

	// paho reports an error when any filter is refused; the SUBACK says which.
	sa, _ := dev1.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "#", QoS: 1}, {Topic: "tele/dev1/#", QoS: 1}}})
	if sa == nil || sa.Reasons[0] != 0x87 || sa.Reasons[1] != 1 {
		t.Fatalf("SUBACK reasons %v, want [0x87 1]", sa.Reasons)
	}
	pr, err := dev1.Publish(ctx, &paho.Publish{Topic: "tele/dev2/x", QoS: 1, Payload: []byte("spoof")})
	if pr == nil || pr.ReasonCode != 0x87 {
		t.Fatalf("PUBACK to a foreign topic: %+v %v, want reason 0x87", pr, err)
	}
	if _, err := dev2.Publish(ctx, &paho.Publish{Topic: "tele/dev2/x", QoS: 1, Payload: []byte("mine")}); err != nil {
		t.Fatal(err)
	}
	if _, err := dev1.Publish(ctx, &paho.Publish{Topic: "tele/dev1/x", QoS: 1, Payload: []byte("own")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dev1's own message", func() bool { return len(dev1.received()) == 1 })
	if got := dev1.received(); got[0] != "tele/dev1/x=own" {
		t.Fatalf("dev1 received %v", got)
	}
	// A shared subscription is checked on the filter inside it.
	sa, _ = dev2.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/g/tele/dev1/#", QoS: 1}}})
	if sa == nil || sa.Reasons[0] != 0x87 {
		t.Fatalf("shared subscription to a foreign namespace: %v", sa)
	}
}

func TestV311PublishOutsideNamespaceDisconnects(t *testing.T) {
	t.Parallel()
	h := start(t, "", nil)
	lost := make(chan error, 1)
	o := paho3.NewClientOptions().AddBroker("tcp://" + h.addr).SetClientID("dev1").SetUsername("dev1").SetPassword("pw-dev1").
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectionLostHandler(func(_ paho3.Client, err error) { lost <- err })
	c := paho3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	c.Publish("tele/dev2/x", 1, false, "spoof")
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("an MQTT 3.1.1 client publishing QoS 1 outside its namespace was not disconnected")
	}
}

func TestTakeover(t *testing.T) {
	t.Parallel()
	h := start(t, "", nil)
	first := device5(t, h.addr, "dev1")
	waitFor(t, "first online", func() bool { _, ok := h.presence.current("dev1"); return ok })
	firstConn, _ := h.presence.current("dev1")

	second := device5(t, h.addr, "dev1")
	select {
	case d := <-first.gone:
		if d.ReasonCode != 0x8E {
			t.Fatalf("old connection got DISCONNECT 0x%02X, want 0x8E session taken over", d.ReasonCode)
		}
	case <-first.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("old connection still open after takeover")
	}
	waitFor(t, "new connection current", func() bool { c, ok := h.presence.current("dev1"); return ok && c != firstConn })
	// The old connection's disconnect has been processed; presence stays online.
	waitFor(t, "old disconnect processed", func() bool {
		h.presence.mu.Lock()
		defer h.presence.mu.Unlock()
		return strings.Contains(strings.Join(h.presence.events, "\n"), fmt.Sprintf("disconnected dev1 %d", firstConn))
	})
	if _, ok := h.presence.current("dev1"); !ok {
		t.Fatal("device offline after takeover")
	}
	if _, err := second.Publish(context.Background(), &paho.Publish{Topic: "tele/dev1/x", QoS: 1, Payload: []byte("ok")}); err != nil {
		t.Fatalf("new connection unusable: %v", err)
	}
}

func TestKickPrincipal(t *testing.T) {
	t.Parallel()
	h := start(t, "", nil)
	c := device5(t, h.addr, "dev1")
	if n := h.srv.KickPrincipal("dev1", "disabled by operator"); n != 1 {
		t.Fatalf("KickPrincipal = %d, want 1", n)
	}
	select {
	case d := <-c.gone:
		if d.ReasonCode != 0x98 {
			t.Fatalf("DISCONNECT 0x%02X, want 0x98", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("kicked client not disconnected")
	}
	waitFor(t, "offline", func() bool { _, ok := h.presence.current("dev1"); return !ok })
	if n := h.srv.KickPrincipal("dev1", "again"); n != 0 {
		t.Fatalf("second kick = %d, want 0", n)
	}
}

func TestConnectRateLimit(t *testing.T) {
	t.Parallel()
	h := start(t, "", func(c *broker.Config) { c.Limits.ConnectRatePerIP = 0.001; c.Limits.ConnectBurstPerIP = 2 })
	for i := range 2 {
		c, _, err := dial5(t, h.addr, &paho.Connect{ClientID: "dev1", Username: "dev1", Password: []byte("pw-dev1")})
		if err != nil {
			t.Fatalf("connect %d within burst: %v", i, err)
		}
		_ = c.Disconnect(&paho.Disconnect{})
	}
	_, ca, err := dial5(t, h.addr, &paho.Connect{ClientID: "dev1", Username: "dev1", Password: []byte("pw-dev1")})
	if err == nil || ca == nil || ca.ReasonCode != 0x9F {
		t.Fatalf("connect beyond the rate: %+v %v, want 0x9F", ca, err)
	}
}

func TestApplicationSharedSubscription(t *testing.T) {
	t.Parallel()
	h := start(t, "", nil)
	app, _, err := dial5(t, h.addr, &paho.Connect{ClientID: "app:reader", Username: "app:reader", Password: []byte("pw-app:reader"), CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := app.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/oss/tele/+/#", QoS: 1}, {Topic: "$dm/#", QoS: 1}}})
	if sa == nil || sa.Reasons[0] != 1 || sa.Reasons[1] != 0x87 {
		t.Fatalf("SUBACK %v, want [1 0x87]", sa)
	}
	dev := device5(t, h.addr, "dev2")
	if _, err := dev.Publish(context.Background(), &paho.Publish{Topic: "tele/dev2/temp", QoS: 1, Payload: []byte("21")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "telemetry at the application", func() bool { return len(app.received()) == 1 })
}

// TestSessionsSurviveRestart: a persistent subscriber goes offline, QoS 1
// messages are published, the broker restarts on the same store, and the
// subscriber gets every message when it comes back; retained messages too.
func TestSessionsSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := start(t, dir, nil)
	ctx := context.Background()
	expiry := uint32(3600)
	sub, _, err := dial5(t, h.addr, &paho.Connect{ClientID: "app:reader", Username: "app:reader", Password: []byte("pw-app:reader"),
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "tele/+/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	_ = sub.Disconnect(&paho.Disconnect{})
	pub := device5(t, h.addr, "dev1")
	for i := range 20 {
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: "tele/dev1/n", QoS: 1, Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pub.Publish(ctx, &paho.Publish{Topic: "tele/dev1/state", QoS: 1, Retain: true, Payload: []byte("up")}); err != nil {
		t.Fatal(err)
	}
	_ = pub.Disconnect(&paho.Disconnect{})
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}

	h2 := restart(t, h)
	sub2, ca, err := dial5(t, h2.addr, &paho.Connect{ClientID: "app:reader", Username: "app:reader", Password: []byte("pw-app:reader"),
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil {
		t.Fatal(err)
	}
	if !ca.SessionPresent {
		t.Fatal("session not present after restart")
	}
	waitFor(t, "21 queued messages", func() bool { return len(sub2.received()) == 21 })
	seen := map[string]bool{}
	for _, m := range sub2.received() {
		seen[m] = true
	}
	for i := range 20 {
		if !seen[fmt.Sprintf("tele/dev1/n=%d", i)] {
			t.Fatalf("message %d lost; got %v", i, sub2.received())
		}
	}
	// The retained message survived too.
	fresh := device5(t, h2.addr, "dev1")
	if _, err := fresh.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "tele/dev1/state", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retained message", func() bool { return len(fresh.received()) == 1 })
}

// restart closes h's store and starts a new broker on the same directory.
func restart(t *testing.T, h *harness) *harness {
	t.Helper()
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	return start(t, h.dir, nil)
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	h := start(t, "", func(c *broker.Config) { c.Limits.MaxConnections = 1 })
	device5(t, h.addr, "dev1")
	_, ca, err := dial5(t, h.addr, &paho.Connect{ClientID: "dev2", Username: "dev2", Password: []byte("pw-dev2")})
	if err == nil || ca == nil || ca.ReasonCode != 0x89 {
		t.Fatalf("connection beyond max_connections: %+v %v, want 0x89 server busy", ca, err)
	}
}
