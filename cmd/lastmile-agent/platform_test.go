package main

// Test harness: the real lastmile platform binary and the real agent
// binary, built once in TestMain, each test starting its own processes on
// free ports.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/lastmile-dm/lastmile/internal/poll"
	"github.com/lastmile-dm/lastmile/internal/serveout"
)

var platformBin, agentBin, lmctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lastmile-agent-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	platformBin, agentBin, lmctlBin = filepath.Join(dir, "lastmile"), filepath.Join(dir, "lastmile-agent"), filepath.Join(dir, "lmctl")
	for bin, pkg := range map[string]string{platformBin: "../lastmile", agentBin: ".", lmctlBin: "../lmctl"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", pkg, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running binary whose stderr is kept.
type process struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	log    bytes.Buffer
	onLine func(string)
	exited chan struct{}
	err    error
}

func start(t *testing.T, name string, onLine func(string), bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), onLine: onLine, exited: make(chan struct{})}
	p.cmd.Env = serveout.CleanEnv()
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if p.onLine != nil {
				p.onLine(sc.Text())
			}
		}
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if p.running() {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.logText())
		}
	})
	return p
}

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *process) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", p.err, p.logText())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit within 20s of SIGTERM\n%s", p.logText())
	}
}

// platform is a running lastmile server.
type platform struct {
	*process
	out serveout.Watch
}

// readerRole lets an application read every device's telemetry.
const readerRole = `
access:
  roles:
    - name: reader
      rules:
        - {action: subscribe, effect: allow, topics: ["tele/+/#"]}
`

func startPlatform(t *testing.T, extra ...string) *platform {
	t.Helper()
	return startPlatformWith(t, "", extra...)
}

// startPlatformWith adds YAML to the configuration file and flags.
func startPlatformWith(t *testing.T, yaml string, extra ...string) *platform {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "lastmile.yaml")
	if err := os.WriteFile(cfg, []byte(readerRole+yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	pl := &platform{}
	pl.process = start(t, "lastmile", pl.out.Line, platformBin,
		serveout.Args(t.TempDir(), "e2e", append([]string{"--config", cfg}, extra...)...)...)
	waitFor(t, 30*time.Second, "the platform to listen", func() bool {
		if !pl.running() {
			t.Fatalf("platform exited: %v\n%s", pl.err, pl.logText())
		}
		return pl.out.Listening() && pl.out.Token() != ""
	})
	return pl
}

func (pl *platform) addr(k string) string { return pl.out.Addr(k) }

// api calls the REST API with the bootstrap token.
func (pl *platform) api(t *testing.T, method, path, body string) map[string]any {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+pl.addr("http")+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+pl.out.Token())
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return out
}

// raw calls the REST API and returns the status and body, whatever they are.
func (pl *platform) raw(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+pl.addr("http")+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+pl.out.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// createDevice creates a device through the API and returns its secret.
func (pl *platform) createDevice(t *testing.T, id string) string {
	t.Helper()
	out := pl.api(t, "POST", "/v1/devices", `{"device": {"id": "`+id+`"}, "generate_secret": true}`)
	secret, _ := out["secret"].(string)
	if secret == "" {
		t.Fatalf("no secret in %v", out)
	}
	return secret
}

// telemetry is what a subscribed application received.
type telemetry struct {
	mu   sync.Mutex
	msgs []received
}

type received struct {
	Topic string
	Seq   uint64          `json:"seq"`
	TS    string          `json:"ts"`
	Data  json.RawMessage `json:"data"`
	Error string          `json:"error"`
}

func (tm *telemetry) list() []received {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return append([]received(nil), tm.msgs...)
}

// subscribe connects an application (role reader) with a persistent
// session and collects every message on filter.
func (pl *platform) subscribe(t *testing.T, app, filter string) *telemetry {
	t.Helper()
	out := pl.api(t, "POST", "/v1/applications", `{"application": {"name": "`+app+`", "role": "reader"}}`)
	secret, _ := out["secret"].(string)
	tm := &telemetry{}
	nc, err := net.DialTimeout("tcp", pl.addr("mqtt"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			r := received{Topic: pr.Packet.Topic}
			if err := json.Unmarshal(pr.Packet.Payload, &r); err != nil {
				t.Errorf("telemetry on %s is not JSON: %q", pr.Packet.Topic, pr.Packet.Payload)
			}
			r.Topic = pr.Packet.Topic
			tm.mu.Lock()
			tm.msgs = append(tm.msgs, r)
			tm.mu.Unlock()
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	expiry := uint32(3600)
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "app:" + app, KeepAlive: 30, Username: "app:" + app, UsernameFlag: true,
		Password: []byte(secret), PasswordFlag: true, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	if sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil || sa.Reasons[0] != 1 {
		t.Fatalf("subscribe %s: %v %v", filter, sa, err)
	}
	return tm
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, d, what, cond)
}

// agentConfig writes an agent configuration file.
func agentConfig(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func startAgent(t *testing.T, cfgPath string) *process {
	t.Helper()
	return start(t, "agent", nil, agentBin, "--config", cfgPath)
}
