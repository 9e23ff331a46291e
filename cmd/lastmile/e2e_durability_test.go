package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/lastmile-dm/lastmile/internal/redistest"
)

// durabilityConfig gives the subscriber an application role that may read
// every device's telemetry.
const durabilityConfig = `
access:
  roles:
    - name: reader
      rules:
        - {action: subscribe, effect: allow, topics: ["tele/+/#"]}
`

// TestKill9Durability: every QoS 1 message the broker PUBACKed reaches a
// persistent subscriber, even when the server is killed with SIGKILL in the
// middle of the stream and restarted on the same store.
func TestKill9Durability(t *testing.T) {
	t.Parallel()
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		testKill9(t, func(t *testing.T) *server {
			return startServer(t, dir, "--config", writeConfig(t, durabilityConfig))
		})
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		addr := redistest.Start(t)
		dir := t.TempDir()
		testKill9(t, func(t *testing.T) *server {
			return startServer(t, dir, "--config", writeConfig(t, durabilityConfig), "--store", "redis", "--redis-addr", addr)
		})
	})
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "lastmile.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func testKill9(t *testing.T, start func(t *testing.T) *server) {
	const (
		n      = 200
		killAt = 80 // PUBACKs before the kill
	)
	s := start(t)
	token := s.bootstrap()
	pubSecret := s.createDevice(t, "pub1")
	code, out := s.api(t, "POST", "/v1/applications", `{"application": {"name": "oss", "role": "reader"}}`)
	if code != http.StatusOK {
		t.Fatalf("create application: %d %v", code, out)
	}
	appSecret, _ := out["secret"].(string)

	// The persistent subscriber subscribes, then goes away.
	sub := func(onPublish func(paho.PublishReceived) (bool, error), srv *server) *paho.Client {
		c, ca, err := mqttConnect(t, srv.addr("mqtt"), mqttOpts{clientID: "app:oss", username: "app:oss", password: appSecret,
			cleanStart: false, sessionExpiry: 3600, onPublish: onPublish})
		if err != nil {
			t.Fatalf("subscriber connect: %v (%+v)", err, ca)
		}
		return c
	}
	c := sub(nil, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "tele/pub1/#", QoS: 1}}})
	if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 1 {
		t.Fatalf("subscribe: %+v %v", sa, err)
	}
	if err := c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}

	// The publisher streams QoS 1; the server is killed after killAt acks.
	p, _, err := mqttConnect(t, s.addr("mqtt"), mqttOpts{clientID: "pub1", username: "pub1", password: pubSecret, cleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	var acked []int
	for i := range n {
		if i == killAt {
			go func() { _ = s.cmd.Process.Signal(syscall.SIGKILL) }()
		}
		pctx, pcancel := context.WithTimeout(context.Background(), 3*time.Second)
		pr, err := p.Publish(pctx, &paho.Publish{Topic: "tele/pub1/seq", QoS: 1, Payload: []byte(strconv.Itoa(i))})
		pcancel()
		if err != nil || pr == nil || pr.ReasonCode >= 0x80 {
			break
		}
		acked = append(acked, i)
	}
	<-s.exited
	if len(acked) < killAt {
		t.Fatalf("only %d messages acknowledged before the kill", len(acked))
	}
	t.Logf("%d of %d messages acknowledged before SIGKILL", len(acked), n)

	// Restart on the same store; the subscriber resumes its session.
	s2 := start(t)
	if s2.bootstrap() != "" || token == "" {
		t.Error("restart printed a new bootstrap token")
	}
	var (
		mu  sync.Mutex
		got = map[int]bool{}
	)
	sub(func(pr paho.PublishReceived) (bool, error) {
		if strings.HasPrefix(pr.Packet.Topic, "tele/pub1/") {
			i, err := strconv.Atoi(string(pr.Packet.Payload))
			if err == nil {
				mu.Lock()
				got[i] = true
				mu.Unlock()
			}
		}
		return true, nil
	}, s2)
	missing := func() []int {
		mu.Lock()
		defer mu.Unlock()
		var m []int
		for _, i := range acked {
			if !got[i] {
				m = append(m, i)
			}
		}
		return m
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(missing()) > 0 {
		if time.Now().After(deadline) {
			m := missing()
			t.Fatalf("%d acknowledged messages never arrived after restart, e.g. %v", len(m), m[:min(len(m), 10)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	t.Logf("received %d distinct messages after restart", len(got))
	mu.Unlock()
}
