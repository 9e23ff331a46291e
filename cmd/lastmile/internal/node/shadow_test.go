package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/lastmile-dm/lastmile/cmd/lastmile/internal/config"
	"github.com/lastmile-dm/lastmile/dm/access"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/token"
	"github.com/lastmile-dm/lastmile/internal/redistest"
	shadowv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/shadow/v1"
)

// shadowNode is a running node with a device and an API token.
type shadowNode struct {
	n      *Node
	mqtt   string
	http   string
	bearer string
	api    shadowv1.ShadowServiceClient
}

var redisPrefixes atomic.Int64

func startShadowNode(t testing.TB, engine string, mutate func(*config.Config)) *shadowNode {
	t.Helper()
	cfg := config.Default()
	cfg.NodeName = "shadow-" + engine
	cfg.DataDir = t.TempDir()
	cfg.MQTT.TCPAddr, cfg.MQTT.WSAddr = "127.0.0.1:0", ""
	cfg.GRPC.Addr, cfg.HTTP.Addr = "127.0.0.1:0", "127.0.0.1:0"
	if engine == config.EngineRedis {
		cfg.Store.Engine = config.EngineRedis
		cfg.Store.Redis.Addr = redistest.Start(t)
		cfg.Store.Redis.KeyPrefix = fmt.Sprintf("sh%d:", redisPrefixes.Add(1))
	}
	if mutate != nil {
		mutate(&cfg)
	}
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
	case <-time.After(30 * time.Second):
		t.Fatal("node did not start")
	}
	_, bearer, err := n.tokens.Create(context.Background(), "test", []string{token.PermShadowsRead, token.PermShadowsWrite}, 0)
	if err != nil {
		t.Fatal(err)
	}
	addrs := n.Addrs()
	cc, err := grpc.NewClient(addrs["grpc"].String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return &shadowNode{n: n, mqtt: addrs["mqtt"].String(), http: addrs["http"].String(), bearer: bearer, api: shadowv1.NewShadowServiceClient(cc)}
}

func (s *shadowNode) ctx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+s.bearer)
}

func (s *shadowNode) device(t testing.TB, id string) string {
	t.Helper()
	_, secret, err := s.n.registry.Create(context.Background(), registry.Device{ID: id, Enabled: true, Labels: map[string]string{"region": "north"}}, registry.Secret{Generate: true})
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// msg is a message a test client received.
type msg struct {
	topic   string
	payload map[string]any
	raw     []byte
}

// inbox collects what a client receives; tests wait on it with a deadline.
type inbox struct {
	mu   sync.Mutex
	msgs []msg
	got  chan struct{}
}

func newInbox() *inbox { return &inbox{got: make(chan struct{}, 1)} }

func (b *inbox) add(topic string, payload []byte) {
	m := msg{topic: topic, raw: append([]byte(nil), payload...)}
	_ = json.Unmarshal(payload, &m.payload)
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
	select {
	case b.got <- struct{}{}:
	default:
	}
}

// take waits for the first message on topic that pred accepts (pred may be
// nil), removes it and returns it.
func (b *inbox) take(t testing.TB, topic string, pred func(msg) bool) msg {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		b.mu.Lock()
		for i, m := range b.msgs {
			if m.topic == topic && (pred == nil || pred(m)) {
				b.msgs = append(b.msgs[:i], b.msgs[i+1:]...)
				b.mu.Unlock()
				return m
			}
		}
		b.mu.Unlock()
		select {
		case <-b.got:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			b.mu.Lock()
			defer b.mu.Unlock()
			var seen []string
			for _, m := range b.msgs {
				seen = append(seen, m.topic+" "+string(m.raw))
			}
			t.Fatalf("no message on %s; received:\n%s", topic, strings.Join(seen, "\n"))
		}
	}
}

func (b *inbox) count(topic string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, m := range b.msgs {
		if m.topic == topic {
			n++
		}
	}
	return n
}

// mqttClient is a device connection over MQTT 5 (paho.golang) or 3.1.1
// (paho.mqtt.golang).
type mqttClient interface {
	subscribe(t testing.TB, filters ...string)
	publish(t testing.TB, topic, payload string, qos byte)
	close()
	box() *inbox
}

type v5Client struct {
	c  *paho.Client
	in *inbox
}

func connectShadowV5(t testing.TB, addr, id, secret string, clean bool) *v5Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	in := newInbox()
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			in.add(pr.Packet.Topic, pr.Packet.Payload)
			return true, nil
		},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: id, Username: id, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true, CleanStart: clean, KeepAlive: 30}
	if !clean {
		exp := uint32(3600)
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &exp}
	}
	if ack, err := c.Connect(ctx, cp); err != nil {
		t.Fatalf("connect %s: %v %+v", id, err, ack)
	}
	cl := &v5Client{c: c, in: in}
	t.Cleanup(cl.close)
	return cl
}

func (c *v5Client) subscribe(t testing.TB, filters ...string) {
	t.Helper()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.c.Subscribe(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range ack.Reasons {
		if r >= 0x80 {
			t.Fatalf("subscribe %s refused: %#x", filters[i], r)
		}
	}
}

func (c *v5Client) publish(t testing.TB, topic, payload string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

func (c *v5Client) close()      { _ = c.c.Disconnect(&paho.Disconnect{}) }
func (c *v5Client) box() *inbox { return c.in }

type v3Client struct {
	c  paho3.Client
	in *inbox
}

func connectShadowV3(t testing.TB, addr, id, secret string, clean bool) *v3Client {
	t.Helper()
	in := newInbox()
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetUsername(id).SetPassword(secret).
		SetProtocolVersion(4).SetCleanSession(clean).SetAutoReconnect(false).SetOrderMatters(false).
		SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) { in.add(m.Topic(), m.Payload()) })
	c := paho3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	cl := &v3Client{c: c, in: in}
	t.Cleanup(cl.close)
	return cl
}

func (c *v3Client) subscribe(t testing.TB, filters ...string) {
	t.Helper()
	m := map[string]byte{}
	for _, f := range filters {
		m[f] = 1
	}
	tok := c.c.SubscribeMultiple(m, nil)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	for f, code := range tok.(*paho3.SubscribeToken).Result() {
		if code >= 0x80 {
			t.Fatalf("subscribe %s refused: %#x", f, code)
		}
	}
}

func (c *v3Client) publish(t testing.TB, topic, payload string, qos byte) {
	t.Helper()
	if tok := c.c.Publish(topic, qos, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func (c *v3Client) close()      { c.c.Disconnect(100) }
func (c *v3Client) box() *inbox { return c.in }

func connect(t testing.TB, proto, addr, id, secret string, clean bool) mqttClient {
	if proto == "v5" {
		return connectShadowV5(t, addr, id, secret, clean)
	}
	return connectShadowV3(t, addr, id, secret, clean)
}

// responses are the response topics of a device's classic shadow.
func responses(id string) []string {
	p := "$dm/" + id + "/shadow/"
	return []string{p + "+/accepted", p + "+/rejected", p + "update/delta", p + "update/documents"}
}

func num(v any) float64 { f, _ := v.(float64); return f }

func forEachSetup(t *testing.T, fn func(t *testing.T, engine, proto string)) {
	for _, engine := range []string{config.EngineEmbedded, config.EngineRedis} {
		for _, proto := range []string{"v5", "v311"} {
			t.Run(engine+"/"+proto, func(t *testing.T) {
				t.Parallel()
				fn(t, engine, proto)
			})
		}
	}
}

func TestShadowOverMQTT(t *testing.T) {
	t.Parallel()
	forEachSetup(t, func(t *testing.T, engine, proto string) {
		s := startShadowNode(t, engine, func(c *config.Config) { c.Shadow.MaxDocumentBytes = 2048; c.Shadow.MaxDepth = 3 })
		secret := s.device(t, "dev1")
		d := connect(t, proto, s.mqtt, "dev1", secret, true)
		d.subscribe(t, responses("dev1")...)
		in := d.box()
		p := "$dm/dev1/shadow/"

		// Nothing yet.
		d.publish(t, p+"get", `{"clientToken":"g0"}`, 1)
		if m := in.take(t, p+"get/rejected", nil); num(m.payload["code"]) != 404 || m.payload["clientToken"] != "g0" {
			t.Fatalf("get of a missing shadow: %s", m.raw)
		}

		// Report state: accepted and documents, no delta (nothing desired).
		d.publish(t, p+"update", `{"state":{"reported":{"firmware":{"version":"2.0.0"},"uptime":5}},"clientToken":"u1"}`, 1)
		acc := in.take(t, p+"update/accepted", nil)
		if num(acc.payload["version"]) != 1 || acc.payload["clientToken"] != "u1" {
			t.Fatalf("update/accepted: %s", acc.raw)
		}
		meta := acc.payload["metadata"].(map[string]any)["reported"].(map[string]any)
		if num(meta["uptime"].(map[string]any)["timestamp"]) == 0 {
			t.Fatalf("accepted without per-leaf metadata: %s", acc.raw)
		}
		docs := in.take(t, p+"update/documents", nil)
		if docs.payload["previous"] != nil || num(docs.payload["current"].(map[string]any)["version"]) != 1 {
			t.Fatalf("update/documents: %s", docs.raw)
		}

		// The API asks for a new firmware: the device gets a delta.
		doc, err := s.api.UpdateDesired(s.ctx(), &shadowv1.UpdateDesiredRequest{DeviceId: "dev1",
			Desired: mustStruct(t, map[string]any{"firmware": map[string]any{"version": "2.1.0"}, "uptime": nil})})
		if err != nil {
			t.Fatal(err)
		}
		if doc.GetVersion() != 2 || doc.GetDelta().AsMap()["firmware"] == nil {
			t.Fatalf("UpdateDesired: %v", doc)
		}
		delta := in.take(t, p+"update/delta", nil)
		want := `{"firmware":{"version":"2.1.0"}}`
		if got, _ := json.Marshal(delta.payload["state"]); string(got) != want || num(delta.payload["version"]) != 2 {
			t.Fatalf("delta after UpdateDesired: %s, want state %s", delta.raw, want)
		}

		// get returns the whole document with the delta, and republishes it.
		d.publish(t, p+"get", ``, 1)
		g := in.take(t, p+"get/accepted", nil)
		st := g.payload["state"].(map[string]any)
		if st["delta"] == nil || st["desired"] == nil || st["reported"] == nil || num(g.payload["version"]) != 2 {
			t.Fatalf("get/accepted: %s", g.raw)
		}
		in.take(t, p+"update/delta", nil)

		// A stale version is refused with 409 and changes nothing.
		d.publish(t, p+"update", `{"state":{"reported":{"firmware":{"version":"2.1.0"}}},"version":1,"clientToken":"stale"}`, 1)
		if m := in.take(t, p+"update/rejected", nil); num(m.payload["code"]) != 409 || m.payload["clientToken"] != "stale" {
			t.Fatalf("stale version: %s", m.raw)
		}
		// The right version applies and clears the delta.
		d.publish(t, p+"update", `{"state":{"reported":{"firmware":{"version":"2.1.0"}}},"version":2}`, 1)
		if m := in.take(t, p+"update/accepted", nil); num(m.payload["version"]) != 3 {
			t.Fatalf("update at the current version: %s", m.raw)
		}

		// Bad inputs, each with its code.
		for _, c := range []struct {
			payload string
			code    float64
		}{
			{`{"state":{"reported":{"a":1}}`, 400},                                    // bad JSON
			{`{"clientToken":"x"}`, 400},                                              // missing state
			{`{"state":{"reported":{"a":{"b":{"c":{"d":1}}}}}}`, 400},                 // too deep (limit 3)
			{`{"state":{"reported":{"a":"` + strings.Repeat("x", 3000) + `"}}}`, 413}, // too large (limit 2048)
		} {
			d.publish(t, p+"update", c.payload, 1)
			if m := in.take(t, p+"update/rejected", nil); num(m.payload["code"]) != c.code || m.payload["message"] == "" {
				t.Fatalf("update %.50s: %s, want code %v", c.payload, m.raw, c.code)
			}
		}

		// A bad shadow name is answered on its own rejected topic.
		d.subscribe(t, "$dm/dev1/shadow/name/bad.name/update/rejected")
		d.publish(t, "$dm/dev1/shadow/name/bad.name/update", `{"state":{"reported":{"a":1}}}`, 1)
		if m := in.take(t, "$dm/dev1/shadow/name/bad.name/update/rejected", nil); num(m.payload["code"]) != 400 {
			t.Fatalf("bad shadow name: %s", m.raw)
		}

		// Named shadows are separate, with their own topics.
		d.subscribe(t, "$dm/dev1/shadow/name/net/update/accepted")
		d.publish(t, "$dm/dev1/shadow/name/net/update", `{"state":{"reported":{"ip":"10.0.0.2"}}}`, 1)
		if m := in.take(t, "$dm/dev1/shadow/name/net/update/accepted", nil); num(m.payload["version"]) != 1 {
			t.Fatalf("named shadow update: %s", m.raw)
		}
		ls, err := s.api.ListNamedShadows(s.ctx(), &shadowv1.ListNamedShadowsRequest{DeviceId: "dev1"})
		if err != nil || !ls.GetClassic() || fmt.Sprint(ls.GetNames()) != "[net]" {
			t.Fatalf("ListNamedShadows: %v %v", ls, err)
		}

		// Delete, then get is 404 again.
		d.publish(t, p+"delete", `{"clientToken":"del"}`, 1)
		if m := in.take(t, p+"delete/accepted", nil); num(m.payload["version"]) != 3 || m.payload["clientToken"] != "del" {
			t.Fatalf("delete/accepted: %s", m.raw)
		}
		if _, err := s.api.GetShadow(s.ctx(), &shadowv1.GetShadowRequest{DeviceId: "dev1"}); status.Code(err) != codes.NotFound {
			t.Fatalf("GetShadow after delete: %v, want NotFound", err)
		}
	})
}

func mustStruct(t testing.TB, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestShadowDeltaOnReconnect: a device that was offline while the API
// changed desired gets the delta when it subscribes again.
func TestShadowDeltaOnReconnect(t *testing.T) {
	t.Parallel()
	forEachSetup(t, func(t *testing.T, engine, proto string) {
		s := startShadowNode(t, engine, nil)
		secret := s.device(t, "dev1")
		d := connect(t, proto, s.mqtt, "dev1", secret, true)
		d.subscribe(t, responses("dev1")...)
		d.publish(t, "$dm/dev1/shadow/update", `{"state":{"reported":{"interval":60}}}`, 1)
		d.box().take(t, "$dm/dev1/shadow/update/accepted", nil)
		d.close()

		// Offline: REST sets a new interval.
		body := `{"desired":{"interval":30}}`
		req, _ := http.NewRequest(http.MethodPatch, "http://"+s.http+"/v1/devices/dev1/shadow", bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer "+s.bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != 200 || out["version"] != "2" {
			t.Fatalf("REST UpdateDesired: %d %v", resp.StatusCode, out)
		}

		// A fresh connection subscribes to its delta topic and receives it.
		d = connect(t, proto, s.mqtt, "dev1", secret, true)
		d.subscribe(t, "$dm/dev1/shadow/+/delta")
		m := d.box().take(t, "$dm/dev1/shadow/update/delta", nil)
		if got, _ := json.Marshal(m.payload["state"]); string(got) != `{"interval":30}` || num(m.payload["version"]) != 2 {
			t.Fatalf("delta on subscribe: %s", m.raw)
		}
	})
}

// TestShadowInFlightLimit floods one connection with updates: some are
// refused with 429, and every request gets exactly one answer.
func TestShadowInFlightLimit(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{config.EngineEmbedded, config.EngineRedis} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			s := startShadowNode(t, engine, func(c *config.Config) { c.Shadow.MaxInFlight = 1 })
			secret := s.device(t, "dev1")
			d := connectShadowV5(t, s.mqtt, "dev1", secret, true)
			d.subscribe(t, "$dm/dev1/shadow/update/accepted", "$dm/dev1/shadow/update/rejected")
			const n = 300
			for i := range n {
				d.publish(t, "$dm/dev1/shadow/update", fmt.Sprintf(`{"state":{"reported":{"i":%d}}}`, i), 0)
			}
			in := d.box()
			deadline := time.Now().Add(20 * time.Second)
			for in.count("$dm/dev1/shadow/update/accepted")+in.count("$dm/dev1/shadow/update/rejected") < n {
				if time.Now().After(deadline) {
					t.Fatalf("%d answers to %d requests", in.count("$dm/dev1/shadow/update/accepted")+in.count("$dm/dev1/shadow/update/rejected"), n)
				}
				time.Sleep(20 * time.Millisecond)
			}
			rejected := in.count("$dm/dev1/shadow/update/rejected")
			if rejected == 0 {
				t.Fatalf("a flood of %d updates with max_in_flight 1 had no 429", n)
			}
			m := in.take(t, "$dm/dev1/shadow/update/rejected", nil)
			if num(m.payload["code"]) != 429 {
				t.Fatalf("flood rejection: %s", m.raw)
			}
			doc, err := s.api.GetShadow(s.ctx(), &shadowv1.GetShadowRequest{DeviceId: "dev1"})
			if err != nil || doc.GetVersion() != uint64(n-rejected) {
				t.Fatalf("version %d after %d accepted updates (%v)", doc.GetVersion(), n-rejected, err)
			}
		})
	}
}

// TestShadowConcurrentWriters hammers one shadow from the device (MQTT),
// an application acting on the device's shadow (MQTT) and the API (gRPC)
// at once: no update is lost and every accepted update got its own
// version, one more than the one before.
func TestShadowConcurrentWriters(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{config.EngineEmbedded, config.EngineRedis} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			s := startShadowNode(t, engine, func(c *config.Config) { c.Shadow.MaxInFlight = 1000 })
			secret := s.device(t, "dev1")
			ctx := context.Background()
			if _, err := s.n.access.PutRole(ctx, access.Role{Name: "shadow-ops", Rules: []access.Rule{
				{Action: access.ActionAll, Effect: access.Allow, Filter: "$dm/+/shadow/#"}}}); err != nil {
				t.Fatal(err)
			}
			_, appSecret, err := s.n.access.CreateApplication(ctx, access.Application{Name: "ops", Role: "shadow-ops", Enabled: true})
			if err != nil {
				t.Fatal(err)
			}
			dev := connectShadowV5(t, s.mqtt, "dev1", secret, true)
			dev.subscribe(t, "$dm/dev1/shadow/update/documents")
			app := connectShadowV3(t, s.mqtt, "app:ops", appSecret, true)
			const each = 60
			var wg sync.WaitGroup
			wg.Add(3)
			go func() {
				defer wg.Done()
				for i := range each {
					dev.publish(t, "$dm/dev1/shadow/update", fmt.Sprintf(`{"state":{"reported":{"d%d":%d}}}`, i, i), 1)
				}
			}()
			go func() {
				defer wg.Done()
				for i := range each {
					app.publish(t, "$dm/dev1/shadow/update", fmt.Sprintf(`{"state":{"desired":{"a%d":%d}}}`, i, i), 1)
				}
			}()
			go func() {
				defer wg.Done()
				for i := range each {
					if _, err := s.api.UpdateDesired(s.ctx(), &shadowv1.UpdateDesiredRequest{DeviceId: "dev1",
						Desired: mustStruct(t, map[string]any{fmt.Sprintf("g%d", i): i})}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			wg.Wait()
			const total = 3 * each
			in := dev.box()
			deadline := time.Now().Add(30 * time.Second)
			for in.count("$dm/dev1/shadow/update/documents") < total {
				if time.Now().After(deadline) {
					t.Fatalf("%d update/documents for %d updates", in.count("$dm/dev1/shadow/update/documents"), total)
				}
				time.Sleep(20 * time.Millisecond)
			}
			seen := map[float64]bool{}
			for range total {
				m := in.take(t, "$dm/dev1/shadow/update/documents", nil)
				cur := num(m.payload["current"].(map[string]any)["version"])
				prev := 0.0
				if p, ok := m.payload["previous"].(map[string]any); ok {
					prev = num(p["version"])
				}
				if cur != prev+1 || seen[cur] {
					t.Fatalf("version %v after %v (seen before: %v)", cur, prev, seen[cur])
				}
				seen[cur] = true
			}
			doc, err := s.api.GetShadow(s.ctx(), &shadowv1.GetShadowRequest{DeviceId: "dev1"})
			if err != nil {
				t.Fatal(err)
			}
			if doc.GetVersion() != total {
				t.Fatalf("version %d, want %d", doc.GetVersion(), total)
			}
			desired, reported := doc.GetDesired().AsMap(), doc.GetReported().AsMap()
			for i := range each {
				if reported[fmt.Sprintf("d%d", i)] != float64(i) || desired[fmt.Sprintf("a%d", i)] != float64(i) || desired[fmt.Sprintf("g%d", i)] != float64(i) {
					t.Fatalf("update %d lost:\ndesired %v\nreported %v", i, desired, reported)
				}
			}
		})
	}
}

// TestShadowRequestsInOrder: requests of one shadow are served in the
// order the device sent them, even with many in flight, while two shadows
// of the device and another device's shadow are busy at the same time.
func TestShadowRequestsInOrder(t *testing.T) {
	t.Parallel()
	s := startShadowNode(t, config.EngineEmbedded, func(c *config.Config) { c.Shadow.MaxInFlight = 1000 })
	const n = 150
	var wg sync.WaitGroup
	for _, id := range []string{"ord1", "ord2"} {
		secret := s.device(t, id)
		d := connectShadowV5(t, s.mqtt, id, secret, true)
		d.subscribe(t, "$dm/"+id+"/shadow/update/accepted", "$dm/"+id+"/shadow/name/net/update/accepted")
		wg.Go(func() {
			for i := range n {
				d.publish(t, "$dm/"+id+"/shadow/update", fmt.Sprintf(`{"state":{"reported":{"i":%d}},"clientToken":"c%d"}`, i, i), 1)
				d.publish(t, "$dm/"+id+"/shadow/name/net/update", fmt.Sprintf(`{"state":{"reported":{"i":%d}},"clientToken":"n%d"}`, i, i), 1)
			}
		})
		t.Cleanup(func() {
			in := d.box()
			for _, sh := range []struct{ topic, prefix string }{{"$dm/" + id + "/shadow/update/accepted", "c"}, {"$dm/" + id + "/shadow/name/net/update/accepted", "n"}} {
				for i := range n {
					tok := fmt.Sprintf("%s%d", sh.prefix, i)
					m := in.take(t, sh.topic, func(m msg) bool { return m.payload["clientToken"] == tok })
					if v := num(m.payload["version"]); v != float64(i+1) {
						t.Errorf("%s: request %s got version %v, want %d: served out of order", sh.topic, tok, v, i+1)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
