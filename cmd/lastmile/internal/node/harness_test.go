package node

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/lastmile-dm/lastmile/cmd/lastmile/internal/config"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/internal/poll"
	"github.com/lastmile-dm/lastmile/internal/redistest"
)

// engines are the stores every end-to-end test of this file runs on.
var engines = []string{config.EngineEmbedded, config.EngineRedis}

// liveNode is a whole node on free loopback ports with a real store.
type liveNode struct {
	n       *Node
	mqtt    string
	httpURL string
	bearer  string
	conn    *grpc.ClientConn
	// stop stops the node and waits for Run to return.
	stop func()
}

func startNode(t testing.TB, engine string, tune func(*config.Config)) *liveNode {
	t.Helper()
	cfg := config.Default()
	cfg.NodeName = "t1"
	cfg.DataDir = t.TempDir()
	cfg.MQTT.TCPAddr, cfg.MQTT.WSAddr = "127.0.0.1:0", ""
	cfg.GRPC.Addr, cfg.HTTP.Addr = "127.0.0.1:0", "127.0.0.1:0"
	if engine == config.EngineRedis {
		cfg.Store.Engine = config.EngineRedis
		cfg.Store.Redis.Addr = redistest.Start(t)
	}
	if tune != nil {
		tune(&cfg)
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
	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("node did not stop")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-n.Started():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not started")
	}
	a := n.Addrs()
	ln := &liveNode{n: n, mqtt: a["mqtt"].String(), httpURL: "http://" + a["http"].String(), stop: stop}
	if _, ln.bearer, err = n.Tokens().Create(context.Background(), "test", nil, 0); err != nil {
		t.Fatal(err)
	}
	ln.conn, err = grpc.NewClient(a["grpc"].String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.conn.Close() })
	return ln
}

func (ln *liveNode) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+ln.bearer)
}

// device registers a device and returns its secret.
func (ln *liveNode) device(t testing.TB, id string, labels map[string]string) string {
	t.Helper()
	_, secret, err := ln.n.registry.Create(context.Background(), registry.Device{ID: id, Labels: labels, Enabled: true}, registry.Secret{Generate: true})
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// rest makes a JSON call and returns the status and the decoded body.
func (ln *liveNode) rest(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, ln.httpURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+ln.bearer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

// restStream opens a streaming REST call and returns its lines as they come.
func (ln *liveNode) restStream(t *testing.T, path string) <-chan map[string]any {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ln.httpURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+ln.bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	out := make(chan map[string]any, 1000)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"unparsable": sc.Text()}
			}
			out <- m
		}
	}()
	return out
}

// v5Device is an MQTT 5 device (paho.golang).
type v5Device struct {
	c   *paho.Client
	got chan *paho.Publish
}

func connectV5(t testing.TB, addr, id, secret string, onPublish func(c *paho.Client, p *paho.Publish)) *v5Device {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d := &v5Device{got: make(chan *paho.Publish, 100)}
	d.c = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			if onPublish != nil {
				// Reply from another goroutine: never block paho's.
				go onPublish(d.c, pr.Packet)
			}
			select {
			case d.got <- pr.Packet:
			default:
			}
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true,
		Username: id, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true}); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { _ = d.c.Disconnect(&paho.Disconnect{}) })
	return d
}

func (d *v5Device) subscribe(t testing.TB, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := d.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil || sa.Reasons[0] > 2 {
		t.Fatalf("subscribe %s: %v %v", filter, sa, err)
	}
}

func (d *v5Device) publish(t *testing.T, topic string, qos byte, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// connectV3 connects an MQTT 3.1.1 device (paho.mqtt.golang).
func connectV3(t *testing.T, addr, id, secret string) paho3.Client {
	t.Helper()
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetUsername(id).SetPassword(secret).
		SetProtocolVersion(4).SetAutoReconnect(false).SetCleanSession(true)
	c := paho3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// eventually polls cond until it holds or 20 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 20*time.Second, what, cond)
}
