package agent

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/agent/backoff"
	"github.com/lastmile-dm/lastmile/agent/config"
	"github.com/lastmile-dm/lastmile/agent/conn"
	"github.com/lastmile-dm/lastmile/dm/topic"
	"github.com/lastmile-dm/lastmile/internal/poll"
)

// control stands in for the Agent's connection settings.
type control struct {
	mu         sync.Mutex
	srv        config.ServerConfig
	reconnects int
}

func (c *control) Server() config.ServerConfig { c.mu.Lock(); defer c.mu.Unlock(); return c.srv }
func (c *control) SetServer(s config.ServerConfig) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.srv = s
}
func (c *control) Reconnect() { c.mu.Lock(); defer c.mu.Unlock(); c.reconnects++ }
func (c *control) state() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srv.Address, c.reconnects
}

// wire records what the capability publishes.
type wire struct {
	mu   sync.Mutex
	msgs []conn.Outgoing
	down bool
}

func (w *wire) Publish(_ context.Context, m conn.Outgoing) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.down {
		return context.DeadlineExceeded
	}
	w.msgs = append(w.msgs, m)
	return nil
}

// states lists the config states published, in order ("get" for a get).
func (w *wire) states() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, m := range w.msgs {
		_, kind, _ := topic.ParseConfigTopic(m.Topic)
		if kind == topic.ConfigGet {
			out = append(out, "get")
			continue
		}
		s, _ := topic.ParseConfigStatus(m.Payload)
		out = append(out, s.State)
	}
	return out
}

func (w *wire) reset() { w.mu.Lock(); w.msgs = nil; w.mu.Unlock() }

func (w *wire) last(t *testing.T) topic.ConfigStatusPayload {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.msgs) - 1; i >= 0; i-- {
		if s, err := topic.ParseConfigStatus(w.msgs[i].Payload); err == nil {
			return s
		}
	}
	t.Fatal("no status published")
	return topic.ConfigStatusPayload{}
}

func docMsg(t *testing.T, rollout, format, content string) conn.Message {
	t.Helper()
	b, err := json.Marshal(topic.ConfigDocumentPayload{ConfigRef: topic.ConfigRef{Rollout: rollout, Profile: "p", Version: 1,
		Hash: topic.ConfigHash([]byte(content))}, Format: format, Content: content})
	if err != nil {
		t.Fatal(err)
	}
	return conn.Message{Topic: topic.ConfigTopic("d1", topic.ConfigDocument), Payload: b}
}

func confirmMsg(content string) conn.Message {
	b, _ := json.Marshal(topic.ConfigConfirmPayload{ConfigRef: topic.ConfigRef{Rollout: "r1", Profile: "p", Version: 1, Hash: topic.ConfigHash([]byte(content))}})
	return conn.Message{Topic: topic.ConfigTopic("d1", topic.ConfigConfirm), Payload: b}
}

func newPush(t *testing.T, dir string, clock *backoff.ManualClock, ctl *control) *ConfigPush {
	t.Helper()
	c := &ConfigPush{DeviceID: "d1", Dir: dir, ConfirmTimeout: time.Minute, Control: ctl, Clock: clock}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

func serverDoc(addr string) string {
	return "lastmile_agent:\n  server:\n    address: \"" + addr + "\"\n"
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 10*time.Second, what, cond)
}

func TestConfigPushConfirmed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := backoff.NewManualClock(time.Unix(1e9, 0))
	ctl := &control{srv: config.ServerConfig{Address: "old:1883", Keepalive: time.Minute}}
	c, w := newPush(t, t.TempDir(), clock, ctl), &wire{}
	c.Connected(ctx, w, conn.MQTT5)
	doc := serverDoc("new:1883")
	c.Handle(ctx, docMsg(t, "r1", "yaml", doc), w)
	if addr, n := ctl.state(); addr != "new:1883" || n != 1 {
		t.Fatalf("after apply: server %s, %d reconnects", addr, n)
	}
	if ctl.Server().Keepalive != time.Minute {
		t.Error("the built-in handler lost a setting the document does not name")
	}
	// A confirmation on the connection that predates the apply proves
	// nothing about the new settings: ignored.
	c.Handle(ctx, confirmMsg(doc), w)
	c.Handle(ctx, docMsg(t, "r1", "yaml", doc), w)
	c.Connected(ctx, w, conn.MQTT5) // the new connection
	c.Handle(ctx, confirmMsg("other"), w)
	c.Handle(ctx, confirmMsg(doc), w)
	if got := strings.Join(w.states(), ","); got != "get,received,awaiting_confirm,applied,get" {
		t.Fatalf("published %s", got)
	}
	// The confirmation disarmed the timer: time passing changes nothing.
	clock.Advance(time.Hour)
	if addr, _ := ctl.state(); addr != "new:1883" {
		t.Fatalf("rolled back after the confirmation: %s", addr)
	}
	// The same document again (a new rollout of the same version) is
	// reported applied without applying it again.
	w.reset()
	c.Handle(ctx, docMsg(t, "r2", "yaml", doc), w)
	if s := w.last(t); s.State != topic.ConfigApplied || s.Rollout != "r2" {
		t.Errorf("same document again: %+v", s)
	}
	if _, n := ctl.state(); n != 1 {
		t.Errorf("%d reconnects: the document was applied twice", n)
	}
}

func TestConfigPushRollsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := backoff.NewManualClock(time.Unix(1e9, 0))
	ctl := &control{srv: config.ServerConfig{Address: "good:1883"}}
	c, w := newPush(t, t.TempDir(), clock, ctl), &wire{}
	doc := serverDoc("127.0.0.1:1")
	c.Handle(ctx, docMsg(t, "r1", "yaml", doc), w)
	w.mu.Lock()
	w.down = true // the new server does not answer
	w.mu.Unlock()
	waitUntil(t, "the confirmation timer", func() bool { return clock.Waiters() == 2 })
	clock.Advance(59 * time.Second)
	if addr, _ := ctl.state(); addr != "127.0.0.1:1" {
		t.Fatal("rolled back before the window ended")
	}
	clock.Advance(time.Second)
	waitUntil(t, "the rollback", func() bool { addr, n := ctl.state(); return addr == "good:1883" && n == 2 })
	w.mu.Lock()
	w.down = false
	w.mu.Unlock()
	w.reset()
	c.Connected(ctx, w, conn.MQTT5)
	if got := strings.Join(w.states(), ","); got != "rolled_back,get" {
		t.Fatalf("on reconnecting: %s", got)
	}
	if s := w.last(t); !strings.Contains(s.Reason, "no confirmation") {
		t.Errorf("reason %q", s.Reason)
	}
	// Offered again, the document is not retried: the outcome is repeated.
	w.reset()
	c.Handle(ctx, docMsg(t, "r1", "yaml", doc), w)
	if got := strings.Join(w.states(), ","); got != "rolled_back" {
		t.Errorf("offered again: %s", got)
	}
	if _, n := ctl.state(); n != 2 {
		t.Errorf("%d reconnects: the refused document was applied again", n)
	}
}

// TestConfigPushSurvivesRestart: an agent stopped while it waits resumes
// the wait with the time left, on the document's server settings, and
// rolls back when the window ends.
func TestConfigPushSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	clock := backoff.NewManualClock(time.Unix(1e9, 0))
	ctl := &control{srv: config.ServerConfig{Address: "good:1883"}}
	c := newPush(t, dir, clock, ctl)
	c.Handle(ctx, docMsg(t, "r1", "yaml", serverDoc("bad:1")), &wire{})
	clock.Advance(40 * time.Second)
	c.stopTimer() // the process dies

	ctl2 := &control{srv: config.ServerConfig{Address: "good:1883"}}
	c2, w := newPush(t, dir, clock, ctl2), &wire{}
	if addr, _ := ctl2.state(); addr != "bad:1" {
		t.Fatalf("restarted on %s, want the pending document's server", addr)
	}
	c2.Connected(ctx, w, conn.MQTT5)
	if got := strings.Join(w.states(), ","); got != "awaiting_confirm" {
		t.Errorf("restarted and connected: %s", got)
	}
	clock.Advance(19 * time.Second)
	// Halfway through the 20 s left it has connected, unconfirmed:
	// it reconnects once to ask again.
	waitUntil(t, "the reconnect to ask again", func() bool { _, n := ctl2.state(); return n == 1 })
	if addr, _ := ctl2.state(); addr != "bad:1" {
		t.Fatal("rolled back early after the restart")
	}
	clock.Advance(time.Second)
	waitUntil(t, "the rollback after the restart", func() bool { addr, n := ctl2.state(); return addr == "good:1883" && n == 2 })

	// And a restart after the rollback stays on the good server.
	ctl3 := &control{srv: config.ServerConfig{Address: "good:1883"}}
	newPush(t, dir, clock, ctl3)
	if addr, _ := ctl3.state(); addr != "good:1883" {
		t.Errorf("after the rollback and a restart: %s", addr)
	}
}

func TestConfigPushRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := backoff.NewManualClock(time.Unix(1e9, 0))
	ctl := &control{srv: config.ServerConfig{Address: "good:1883"}}
	c, w := newPush(t, t.TempDir(), clock, ctl), &wire{}
	cases := []struct {
		msg    conn.Message
		reason string
	}{
		{docMsg(t, "r1", "text", "ntp server a"), "no handler"},
		{docMsg(t, "r2", "yaml", serverDoc("no-port")), "not host:port"},
		{docMsg(t, "r3", "yaml", "lastmile_agent: {server: {keepalive: forever}}"), "keepalive"},
		{docMsg(t, "r4", "json", "{not json"), "not json"},
	}
	for _, tc := range cases {
		c.Handle(ctx, tc.msg, w)
		if s := w.last(t); s.State != topic.ConfigFailed || !strings.Contains(s.Reason, tc.reason) {
			t.Errorf("%s: %+v, want failed with %q", tc.msg.Payload, s, tc.reason)
		}
	}
	// A document whose content does not match its hash.
	m := docMsg(t, "r5", "yaml", serverDoc("x:1"))
	m.Payload = []byte(strings.Replace(string(m.Payload), "x:1", "y:1", 1))
	c.Handle(ctx, m, w)
	if s := w.last(t); s.State != topic.ConfigFailed || !strings.Contains(s.Reason, "hash") {
		t.Errorf("bad hash: %+v", s)
	}
	// Unreadable messages are ignored.
	n := len(w.states())
	c.Handle(ctx, conn.Message{Topic: topic.ConfigTopic("d1", topic.ConfigDocument), Payload: []byte("{")}, w)
	c.Handle(ctx, conn.Message{Topic: topic.ConfigTopic("d1", topic.ConfigConfirm), Payload: []byte("[]")}, w)
	if len(w.states()) != n {
		t.Error("an unreadable message was answered")
	}
	if addr, r := ctl.state(); addr != "good:1883" || r != 0 {
		t.Errorf("a refused document changed the connection: %s, %d reconnects", addr, r)
	}
}

func TestConfigPushProgramHandler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	script := filepath.Join(dir, "apply")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$LASTMILE_CONFIG_ACTION $(cat \"$1\" 2>/dev/null)\" >> "+log+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	clock := backoff.NewManualClock(time.Unix(1e9, 0))
	ctl := &control{srv: config.ServerConfig{Address: "good:1883"}}
	c := &ConfigPush{DeviceID: "d1", Dir: filepath.Join(dir, "state"), ConfirmTimeout: time.Minute, Control: ctl, Clock: clock, Program: []string{script}}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	w := &wire{}
	c.Handle(ctx, docMsg(t, "r1", "text", "one"), w)
	c.Connected(ctx, w, conn.MQTT5)
	c.Handle(ctx, confirmMsg("one"), w)
	c.Handle(ctx, docMsg(t, "r2", "text", "two"), w)
	waitUntil(t, "the confirmation timer", func() bool { return clock.Waiters() == 2 })
	clock.Advance(time.Minute)
	waitUntil(t, "the rollback", func() bool { _, n := ctl.state(); return n == 3 })
	b, _ := os.ReadFile(log)
	if got := string(b); got != "apply one\napply two\nrollback one\n" {
		t.Errorf("program calls:\n%s", got)
	}
}

func TestConfigPushTornState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(`{"pending": {"ref": `), 0o600); err != nil {
		t.Fatal(err)
	}
	ctl := &control{srv: config.ServerConfig{Address: "good:1883"}}
	newPush(t, dir, backoff.NewManualClock(time.Unix(1e9, 0)), ctl)
	if addr, _ := ctl.state(); addr != "good:1883" {
		t.Errorf("a torn state file moved the agent to %q", addr)
	}
}

// FuzzBuiltinServer: no document crashes the built-in handler, and what it
// accepts is a host:port with a keepalive in range.
func FuzzBuiltinServer(f *testing.F) {
	for _, s := range []string{serverDoc("a:1"), "lastmile_agent: {server: {keepalive: 30s}}", `{"lastmile_agent":{"server":{"address":"[::1]:1883"}}}`,
		"lastmile_agent: 3", "lastmile_agent: {server: [1]}", "- x", ""} {
		f.Add(s)
	}
	cur := config.ServerConfig{Address: "cur:1883", Keepalive: time.Minute}
	f.Fuzz(func(t *testing.T, doc string) {
		for _, format := range []string{"json", "yaml", "text"} {
			s, ok, err := builtinServer(format, doc, cur)
			if err != nil || !ok {
				continue
			}
			if _, port, err := net.SplitHostPort(s.Address); err != nil || port == "" {
				t.Fatalf("accepted address %q", s.Address)
			}
			if s.Keepalive < time.Second || s.Keepalive > 65535*time.Second {
				t.Fatalf("accepted keepalive %s", s.Keepalive)
			}
		}
	})
}

// TestConfigPushAsksAgain: connected with the new settings but not
// confirmed by halfway through the window, the agent reconnects once to
// ask again, and a confirmation then still commits.
func TestConfigPushAsksAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := backoff.NewManualClock(time.Unix(1e9, 0))
	ctl := &control{srv: config.ServerConfig{Address: "old:1883"}}
	c, w := newPush(t, t.TempDir(), clock, ctl), &wire{}
	doc := serverDoc("new:1883")
	c.Handle(ctx, docMsg(t, "r1", "yaml", doc), w)
	c.Connected(ctx, w, conn.MQTT5) // the confirmation it asks for gets lost
	waitUntil(t, "the confirmation timers", func() bool { return clock.Waiters() == 2 })
	clock.Advance(30 * time.Second)
	waitUntil(t, "the second reconnect", func() bool { _, n := ctl.state(); return n == 2 })
	c.Connected(ctx, w, conn.MQTT5)
	c.Handle(ctx, confirmMsg(doc), w)
	if s := w.last(t); s.State != topic.ConfigApplied {
		t.Fatalf("after asking again: %+v", s)
	}
	clock.Advance(time.Hour)
	if addr, n := ctl.state(); addr != "new:1883" || n != 2 {
		t.Errorf("after the confirmation: %s, %d reconnects", addr, n)
	}
}
