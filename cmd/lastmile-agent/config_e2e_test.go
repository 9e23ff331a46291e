package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/internal/serveout"
)

// deadAddr returns a 127.0.0.1 port where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// deviceState returns the device's state and reason in a rollout.
func (pl *platform) deviceState(t *testing.T, rollout, id string) (state, reason string) {
	t.Helper()
	out := pl.api(t, "GET", "/v1/config/rollouts/"+rollout, "")
	devs, _ := out["devices"].([]any)
	for _, d := range devs {
		m, _ := d.(map[string]any)
		if m["device_id"] == id {
			s, _ := m["state"].(string)
			r, _ := m["reason"].(string)
			return s, r
		}
	}
	t.Fatalf("device %s not in rollout %s: %v", id, rollout, out)
	return "", ""
}

// pushVersion creates a version of profile and assigns it to one device;
// it returns the rollout ID.
func (pl *platform) pushVersion(t *testing.T, profile, id, content string) string {
	t.Helper()
	v := pl.api(t, "POST", "/v1/config/profiles/"+profile+"/versions", fmt.Sprintf(`{"content": %q}`, content))
	ver, _ := v["version"].(map[string]any)
	n, _ := ver["version"].(string) // int64 is a JSON string
	if n == "" {
		t.Fatalf("no version in %v", v)
	}
	r := pl.api(t, "POST", "/v1/config/rollouts", fmt.Sprintf(`{"profile": %q, "version": %s, "target": {"device_id": %q}}`, profile, n, id))
	rid, _ := r["id"].(string)
	if rid == "" {
		t.Fatalf("no rollout in %v", r)
	}
	return rid
}

func waitState(t *testing.T, pl *platform, rollout, id, want string, d time.Duration) string {
	t.Helper()
	var state, reason string
	waitFor(t, d, "device "+id+" to reach "+want+" in rollout "+rollout, func() bool {
		state, reason = pl.deviceState(t, rollout, id)
		if want != "rolled_back" && state == "rolled_back" || want != "failed" && state == "failed" {
			t.Fatalf("device %s ended %s (%s), want %s", id, state, reason, want)
		}
		return state == want
	})
	return reason
}

// TestConfigPushCommitConfirmed: a config that points the agent at a port
// where nothing answers is rolled back by the agent on its own (with the
// agent killed and restarted while it waits) and reported rolled_back; a
// good config ends applied and moves the connection.
func TestConfigPushCommitConfirmed(t *testing.T) {
	t.Parallel()
	pl := startPlatform(t)
	const id = "gw-cfg"
	dir := t.TempDir()
	secret := pl.createDevice(t, id)
	cfgPath := agentConfig(t, dir, baseConfig(t, dir, id, secret, pl.addr("mqtt"), "5")+`
config_push:
  confirm_timeout: 3s
`)
	a := startAgent(t, cfgPath)
	pl.api(t, "POST", "/v1/config/profiles", `{"profile": {"name": "agent", "format": "yaml",
		"schema": {"lastmile_agent.server.address": "string"}}}`)

	// A version that breaks the schema never becomes one.
	if code, body := pl.raw(t, "POST", "/v1/config/profiles/agent/versions", `{"content": "lastmile_agent: {server: {port: 1}}"}`); code != 400 || !strings.Contains(body, "lastmile_agent.server.address is missing") {
		t.Fatalf("schema violation: %d %s", code, body)
	}

	bad := pl.pushVersion(t, "agent", id, "lastmile_agent:\n  server:\n    address: \""+deadAddr(t)+"\"\n")
	// Kill the agent once it has applied the bad config and waits for the
	// confirmation that cannot come; the restarted agent resumes the wait.
	waitFor(t, 30*time.Second, "the agent to apply the bad config", func() bool {
		return strings.Contains(a.logText(), "config applied; reconnecting")
	})
	_ = a.cmd.Process.Kill()
	<-a.exited
	a = startAgent(t, cfgPath)
	reason := waitState(t, pl, bad, id, "rolled_back", 60*time.Second)
	t.Logf("rolled back: %s", reason)
	if !strings.Contains(reason, "no confirmation") {
		t.Errorf("rolled_back reason %q", reason)
	}
	if !strings.Contains(a.logText(), "config awaiting confirmation after a restart") {
		t.Errorf("the restarted agent did not resume the pending confirmation:\n%s", a.logText())
	}

	// A good config: same server, another keepalive.
	good := pl.pushVersion(t, "agent", id, "lastmile_agent:\n  server:\n    address: \""+pl.addr("mqtt")+"\"\n    keepalive: 3s\n")
	waitState(t, pl, good, id, "applied", 60*time.Second)
	st := pl.api(t, "GET", "/v1/config/rollouts/"+good, "")
	if tot, _ := st["totals"].(map[string]any); tot["applied"] != float64(1) || tot["pending"] != float64(0) {
		t.Errorf("totals %v", st["totals"])
	}
	// The bad rollout stays rolled_back; the agent remembers it.
	if s, _ := pl.deviceState(t, bad, id); s != "rolled_back" {
		t.Errorf("bad rollout now %s", s)
	}
	// The good config survives a restart: no second apply.
	a.stop(t)
	a = startAgent(t, cfgPath)
	waitFor(t, 30*time.Second, "the agent to reconnect", func() bool { return strings.Contains(a.logText(), "connected") })
	if s, _ := pl.deviceState(t, good, id); s != "applied" {
		t.Errorf("good rollout after restart: %s", s)
	}
	state, err := os.ReadFile(filepath.Join(dir, "config", "state.json"))
	if err != nil || !strings.Contains(string(state), `"committed"`) {
		t.Errorf("state.json: %s %v", state, err)
	}
	a.stop(t)
}

// TestConfigPushHandlerFailure: a handler program that refuses a document
// ends failed with its output, and nothing is left pending.
func TestConfigPushHandlerFailure(t *testing.T) {
	t.Parallel()
	pl := startPlatform(t)
	const id = "gw-cfg-fail"
	dir := t.TempDir()
	secret := pl.createDevice(t, id)
	log := filepath.Join(dir, "handler.log")
	script := filepath.Join(dir, "apply.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$LASTMILE_CONFIG_ACTION $LASTMILE_CONFIG_VERSION $(cat \"$1\" 2>/dev/null)\" >> "+log+
		"\ngrep -q bad \"$1\" && { echo 'bad value for ntp' >&2; exit 3; }\nexit 0\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, agentConfig(t, dir, baseConfig(t, dir, id, secret, pl.addr("mqtt"), "3.1.1")+`
config_push:
  confirm_timeout: 5s
  handler: {argv: [`+script+`]}
`))
	pl.api(t, "POST", "/v1/config/profiles", `{"profile": {"name": "ntp", "format": "text"}}`)
	ok := pl.pushVersion(t, "ntp", id, "server ntp1\n")
	waitState(t, pl, ok, id, "applied", 60*time.Second)
	bad := pl.pushVersion(t, "ntp", id, "server bad\n")
	reason := waitState(t, pl, bad, id, "failed", 60*time.Second)
	if !strings.Contains(reason, "bad value for ntp") {
		t.Errorf("failed reason %q", reason)
	}
	b, _ := os.ReadFile(log)
	// apply 1, apply 2 (refused), rollback to version 1's file.
	if got := string(b); !strings.Contains(got, "apply 1 server ntp1") || !strings.Contains(got, "apply 2 server bad") || !strings.Contains(got, "rollback 2 server ntp1") {
		t.Errorf("handler calls:\n%s", got)
	}
	a.stop(t)
}

// TestConfigPushWithLmctl is the README's "Connect a gateway" walk: a
// profile and a version made with lmctl, assigned to the device, followed
// through lmctl config status and lmctl events watch.
func TestConfigPushWithLmctl(t *testing.T) {
	t.Parallel()
	pl := startPlatform(t)
	const id = "gw-readme"
	dir := t.TempDir()
	secret := pl.createDevice(t, id)
	a := startAgent(t, agentConfig(t, dir, baseConfig(t, dir, id, secret, pl.addr("mqtt"), "5")+`
config_push:
  confirm_timeout: 5s
`))
	events := pl.watchEvents(t, "--device", id, "--type", "job.progress")
	doc := filepath.Join(dir, "agent-v1.yaml")
	if err := os.WriteFile(doc, []byte("lastmile_agent:\n  server:\n    address: \""+pl.addr("mqtt")+"\"\n    keepalive: 4s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pl.lmctl(t, "config", "create", "agent", "--format", "yaml", "--require", "lastmile_agent.server.address:string")
	if out := pl.lmctl(t, "config", "create", "agent", "--file", doc, "--comment", "keepalive 4s"); !strings.Contains(out, "agent") || !strings.Contains(out, "yes") {
		t.Fatalf("create version:\n%s", out)
	}
	if out := pl.lmctl(t, "config", "versions", "agent"); !strings.Contains(out, "keepalive 4s") {
		t.Fatalf("versions:\n%s", out)
	}
	out := pl.lmctl(t, "-o", "json", "config", "assign", "agent", "1", "--device", id)
	var r struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.ID == "" {
		t.Fatalf("assign: %v\n%s", err, out)
	}
	waitFor(t, 60*time.Second, "lmctl config status to show the device applied", func() bool {
		return strings.Contains(pl.lmctl(t, "config", "status", r.ID), "applied=1")
	})
	if out := pl.lmctl(t, "config", "status"); !strings.Contains(out, r.ID) {
		t.Errorf("rollout list:\n%s", out)
	}
	// The stream showed the device's way through the rollout.
	waitFor(t, 30*time.Second, "job.progress events up to applied", func() bool {
		return strings.Contains(events.String(), "config "+r.ID+" agent v1: applied")
	})
	if ev := events.String(); !strings.Contains(ev, "agent v1: delivered") {
		t.Errorf("events:\n%s", ev)
	}
	a.stop(t)
}

// lockedBuffer is a strings.Builder safe for a writer and a poller.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// watchEvents runs lmctl events watch until the test ends and collects
// what it prints; it returns once the watch is registered.
func (pl *platform) watchEvents(t *testing.T, args ...string) *lockedBuffer {
	t.Helper()
	tok := pl.out.Token()
	out := &lockedBuffer{}
	cmd := exec.Command(lmctlBin, append([]string{"--server", pl.addr("grpc"), "--token", tok, "events", "watch"}, args...)...)
	cmd.Env = serveout.CleanEnv()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("lmctl events watch:\n%s", out.String())
		}
	})
	// The platform counts watchers in its metrics; poll for ours.
	waitFor(t, 20*time.Second, "the event watch to be registered", func() bool {
		code, body := pl.raw(t, "GET", "/metrics", "")
		return code == 200 && watchers(body) > 0
	})
	return out
}

// watchers reads the number of event watchers from the metrics text.
func watchers(metrics string) int {
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "lastmile_events_watchers ") {
			n, _ := strconv.ParseFloat(strings.TrimPrefix(line, "lastmile_events_watchers "), 64)
			return int(n)
		}
	}
	return 0
}
