package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/agent/backoff"
	"github.com/lastmile-dm/lastmile/agent/command"
	"github.com/lastmile-dm/lastmile/agent/config"
	"github.com/lastmile-dm/lastmile/agent/conn"
	"github.com/lastmile-dm/lastmile/agent/state"
	"github.com/lastmile-dm/lastmile/dm/topic"
	"github.com/lastmile-dm/lastmile/internal/mosquittotest"
	"github.com/lastmile-dm/lastmile/internal/netem"
	"github.com/lastmile-dm/lastmile/internal/poll"
)

// mosquitto starts a real broker on a free port.
func mosquitto(t *testing.T) string {
	t.Helper()
	return mosquittotest.Start(t)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	poll.Until(t, 20*time.Second, "the condition", cond)
}

// testContract is a command contract for these tests only: requests on
// $dm/{id}/cmd/{name} with the MQTT 5 response topic and correlation data;
// the platform's contract (dm/topic/command.go) replaces it in the binary.
type testContract struct{}

func (testContract) RequestFilter(id string) string { return topic.Platform(id, "cmd", "+") }

func (testContract) DecodeRequest(id string, m conn.Message) (command.Request, Reply, error) {
	reply := Reply{Topic: m.ResponseTopic, CorrelationData: m.CorrelationData}
	name := strings.TrimPrefix(m.Topic, topic.Platform(id, "cmd")+"/")
	if !json.Valid(m.Payload) && len(m.Payload) > 0 {
		return command.Request{}, reply, errors.New("payload is not JSON")
	}
	return command.Request{Name: name, Args: m.Payload}, reply, nil
}

func (testContract) EncodeResponse(_ string, r Reply, resp command.Response) (conn.Outgoing, error) {
	b, err := json.Marshal(resp)
	return conn.Outgoing{Topic: r.Topic, Payload: b, QoS: 1, CorrelationData: r.CorrelationData}, err
}

func newAgent(t *testing.T, addr string, caps ...Capability) (*Agent, context.CancelFunc, chan error) {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf("device_id: gw1\nserver: {address: %q, keepalive: 2s}\ncredentials: {password: x}\n"+
		"reconnect: {min_delay: 50ms, max_delay: 200ms}\nbuffer: {dir: %q}\nstatus: {interval: 1s}\n", addr, t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{File: cfg, Capabilities: caps})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return a, cancel, done
}

// TestCommandsCapability: a requester on a real broker sends commands to
// the running agent and gets answers on its response topic, correlated.
func TestCommandsCapability(t *testing.T) {
	t.Parallel()
	addr := mosquitto(t)
	d := command.NewDispatcher()
	_ = d.Register("exec", &command.Exec{Allow: map[string]command.Allowed{"hi": {Argv: []string{"echo", "hi"}, Timeout: 5 * time.Second, MaxBytes: 100}}})
	newAgent(t, addr, &Commands{DeviceID: "gw1", Contract: testContract{}, Dispatcher: d})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	answers := map[string]command.Response{}
	req, err := conn.Connect(ctx, conn.Config{Address: addr, ClientID: "platform", Protocol: conn.MQTT5}, func(m conn.Message) {
		var r command.Response
		if err := json.Unmarshal(m.Payload, &r); err != nil {
			t.Errorf("answer is not JSON: %q", m.Payload)
		}
		mu.Lock()
		answers[string(m.CorrelationData)] = r
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer req.Close()
	if err := req.Subscribe(ctx, "replies/#"); err != nil {
		t.Fatal(err)
	}
	// The agent subscribes after connecting: resend until it answers.
	send := func(corr, name, args string) {
		p := &pubWithResponse{s: req}
		waitFor(t, func() bool {
			mu.Lock()
			_, ok := answers[corr]
			mu.Unlock()
			if !ok {
				_ = p.publish(ctx, topic.Platform("gw1", "cmd", name), "replies/"+corr, corr, args)
				time.Sleep(50 * time.Millisecond)
			}
			return ok
		})
	}
	send("c1", "exec", `{"name":"hi"}`)
	send("c2", "exec", `{"name":"rm"}`)
	send("c3", "reboot", ``)
	send("c4", "exec", `{not json`)
	mu.Lock()
	defer mu.Unlock()
	if r := answers["c1"]; r.Status != command.StatusOK || !strings.Contains(fmt.Sprint(r.Result), "hi") {
		t.Errorf("c1: %+v", r)
	}
	if r := answers["c2"]; r.Code != command.CodeNotAllowed {
		t.Errorf("c2: %+v", r)
	}
	if r := answers["c3"]; r.Code != command.CodeUnknownCommand {
		t.Errorf("c3 (reboot not registered): %+v", r)
	}
	if r := answers["c4"]; r.Code != command.CodeBadRequest {
		t.Errorf("c4: %+v", r)
	}
}

// pubWithResponse publishes a request with MQTT 5 response properties.
type pubWithResponse struct{ s conn.Session }

func (p *pubWithResponse) publish(ctx context.Context, t, responseTopic, corr, payload string) error {
	return p.s.Publish(ctx, conn.Outgoing{Topic: t, Payload: []byte(payload), QoS: 1, CorrelationData: []byte(corr), ResponseTopic: responseTopic})
}

// TestReconnectFollowsTheClock: after a failed connect the agent waits for
// its backoff on the injected clock, and only then tries again.
func TestReconnectFollowsTheClock(t *testing.T) {
	t.Parallel()
	broker := mosquitto(t)
	proxy, err := netem.New(broker)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	proxy.SetMode(netem.Cut)

	clock := backoff.NewManualClock(time.Unix(0, 0))
	cfg, err := config.Parse([]byte(fmt.Sprintf("device_id: gw1\nserver: {address: %q, keepalive: 2s, connect_timeout: 2s}\ncredentials: {password: x}\n"+
		"reconnect: {min_delay: 10s, max_delay: 40s, jitter: 0}\nbuffer: {dir: %q}\nstatus: {interval: 1s}\n", proxy.Addr(), t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{File: cfg, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Two failures: waits of 10s and then 20s on the manual clock.
	for _, d := range []time.Duration{10 * time.Second, 20 * time.Second} {
		waitFor(t, func() bool { return clock.Waiters() == 1 })
		clock.Advance(d - time.Millisecond)
		if clock.Waiters() != 1 {
			t.Fatalf("the agent stopped waiting before %s", d)
		}
		clock.Advance(time.Millisecond)
	}
	// The link returns, but nothing happens until the 40s wait is over.
	waitFor(t, func() bool { return clock.Waiters() == 1 })
	proxy.SetMode(netem.Up)
	if a.connects.Load() != 0 {
		t.Fatal("connected while cut")
	}
	clock.Advance(40 * time.Second)
	waitFor(t, func() bool { return a.connects.Load() == 1 })
	// Telemetry collected while cut is drained.
	waitFor(t, func() bool { return a.Status().Buffer.Queued == 0 && a.published.Load() > 0 })
}

// testShadow is a shadow contract for these tests only: deltas on
// $dm/{id}/shadow/update/delta as {"state": {...}}, reports to
// $dm/{id}/shadow/update as {"state":{"reported":...},"errors":...}.
type testShadow struct{}

func (testShadow) DeltaFilters(id string) []string {
	return []string{topic.Platform(id, "shadow", "update", "delta"), topic.Platform(id, "shadow", "get", "accepted")}
}

// SyncRequest asks for the document; its answer carries the delta.
func (testShadow) SyncRequest(id string) (conn.Outgoing, bool) {
	return conn.Outgoing{Topic: topic.Platform(id, "shadow", "get"), Payload: []byte("{}"), QoS: 1}, true
}

func (testShadow) DecodeDelta(_ string, m conn.Message) (map[string]any, bool, error) {
	var d struct {
		State map[string]any `json:"state"`
	}
	if err := json.Unmarshal(m.Payload, &d); err != nil {
		return nil, false, err
	}
	return d.State, true, nil
}

func (testShadow) EncodeReport(id string, reported map[string]any, errs map[string]string) (conn.Outgoing, error) {
	b, err := json.Marshal(map[string]any{"state": map[string]any{"reported": reported}, "errors": errs})
	return conn.Outgoing{Topic: topic.Platform(id, "shadow", "update"), Payload: b, QoS: 1}, err
}

// wifiApplier applies the "wifi." keys with the shell script body.
func wifiApplier(t *testing.T, body string) *state.Applier {
	t.Helper()
	script := filepath.Join(t.TempDir(), "apply")
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	var ap state.Applier
	if err := ap.Register("wifi.", &state.Program{Argv: []string{script}}); err != nil {
		t.Fatal(err)
	}
	return &ap
}

// shadowReports plays the platform: a client on the broker at addr that
// receives gw1's shadow reports (decoded) on the returned channel, of
// capacity n.
func shadowReports(ctx context.Context, t *testing.T, addr string, n int) (conn.Session, <-chan map[string]any) {
	t.Helper()
	reports := make(chan map[string]any, n)
	plat, err := conn.Connect(ctx, conn.Config{Address: addr, ClientID: "platform"}, func(m conn.Message) {
		var r map[string]any
		_ = json.Unmarshal(m.Payload, &r)
		reports <- r
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plat.Close() })
	if err := plat.Subscribe(ctx, topic.Platform("gw1", "shadow", "update")); err != nil {
		t.Fatal(err)
	}
	return plat, reports
}

// TestShadowCapability: the agent reports its state on connect, applies a
// delta through a real program and reports the result and the failures.
func TestShadowCapability(t *testing.T) {
	t.Parallel()
	addr := mosquitto(t)
	ap := wifiApplier(t, "#!/bin/sh\n[ \"$1\" = wifi.bad ] && { echo nope >&2; exit 1; }\ncat > /dev/null\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	plat, reports := shadowReports(ctx, t, addr, 10)
	gets := make(chan struct{}, 10)
	getter, err := conn.Connect(ctx, conn.Config{Address: addr, ClientID: "platform-get"}, func(conn.Message) { gets <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer getter.Close()
	if err := getter.Subscribe(ctx, topic.Platform("gw1", "shadow", "get")); err != nil {
		t.Fatal(err)
	}
	newAgent(t, addr, &Shadow{DeviceID: "gw1", Contract: testShadow{}, Reporter: &state.Reporter{AgentVersion: "v9"}, Applier: ap})
	first := <-reports
	if rep := first["state"].(map[string]any)["reported"].(map[string]any); rep["agent_version"] != "v9" || rep["interfaces"] == nil {
		t.Fatalf("first report: %v", first)
	}
	select {
	case <-gets:
	case <-ctx.Done():
		t.Fatal("no sync request after the report")
	}
	if err := plat.Publish(ctx, conn.Outgoing{Topic: topic.Platform("gw1", "shadow", "update", "delta"), QoS: 1,
		Payload: []byte(`{"state":{"wifi":{"ssid":"lab","bad":1},"unknown":true}}`)}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-reports:
		rep := r["state"].(map[string]any)["reported"].(map[string]any)
		errs := r["errors"].(map[string]any)
		if rep["wifi"].(map[string]any)["ssid"] != "lab" || !strings.Contains(fmt.Sprint(errs["wifi.bad"]), "nope") || errs["unknown"] == nil {
			t.Fatalf("report after delta: %v", r)
		}
	case <-ctx.Done():
		t.Fatal("no report after the delta")
	}
}

// TestShadowDeltasInOrder: deltas that arrive back to back are applied
// one at a time in the order they came, and their reports go out in that
// order, so the last desired value is the one the device runs and the
// platform sees (a report overtaking a later one would leave a stale
// reported state, or stale apply errors, with no delta to correct them).
func TestShadowDeltasInOrder(t *testing.T) {
	t.Parallel()
	addr := mosquitto(t)
	applied := filepath.Join(t.TempDir(), "applied")
	ap := wifiApplier(t, "#!/bin/sh\ncat >> "+applied+"\necho >> "+applied+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	plat, reports := shadowReports(ctx, t, addr, 100)
	newAgent(t, addr, &Shadow{DeviceID: "gw1", Contract: testShadow{}, Reporter: &state.Reporter{AgentVersion: "v9"}, Applier: ap})
	<-reports // the full report on connecting
	const n = 30
	for i := 1; i <= n; i++ {
		if err := plat.Publish(ctx, conn.Outgoing{Topic: topic.Platform("gw1", "shadow", "update", "delta"), QoS: 1,
			Payload: fmt.Appendf(nil, `{"state":{"wifi":{"channel":%d}}}`, i)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []any
	for len(got) < n {
		select {
		case r := <-reports:
			if w, ok := r["state"].(map[string]any)["reported"].(map[string]any)["wifi"].(map[string]any); ok {
				got = append(got, w["channel"])
			}
		case <-ctx.Done():
			t.Fatalf("%d reports of %d: %v", len(got), n, got)
		}
	}
	b, err := os.ReadFile(applied)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 1; i <= n; i++ {
		want = append(want, fmt.Sprint(i))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("reports in the order %v", got)
	}
	if a := strings.Fields(string(b)); fmt.Sprint(a) != fmt.Sprint(want) {
		t.Errorf("applied in the order %v", a)
	}
}

// TestReconnectUsesNewServer: SetServer and Reconnect (what a config-apply
// capability does) move a disconnected agent to another server at once,
// without waiting out its backoff.
func TestReconnectUsesNewServer(t *testing.T) {
	t.Parallel()
	good := mosquitto(t)
	clock := backoff.NewManualClock(time.Unix(0, 0))
	cfg, err := config.Parse([]byte(fmt.Sprintf("device_id: gw1\nserver: {address: \"127.0.0.1:1\", connect_timeout: 2s}\ncredentials: {password: x}\n"+
		"reconnect: {min_delay: 1h, max_delay: 1h}\nbuffer: {dir: %q}\n", t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{File: cfg, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { return clock.Waiters() == 1 }) // waiting an hour
	s := cfg.Server
	s.Address = good
	a.SetServer(s)
	a.Reconnect()
	waitFor(t, func() bool { return a.connects.Load() == 1 })
}
