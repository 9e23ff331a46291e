package main

// End-to-end tests: the real binary, started as a user starts it, driven by
// net/http, mosquitto_pub/sub and paho.golang. The binary is built once in
// TestMain; every test starts its own server(s) on 127.0.0.1:0 and reads
// the bound addresses from the "listening" log line.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lastmile-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "lastmile")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build lastmile:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one running lastmile process.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	dataDir string

	mu     sync.Mutex
	log    bytes.Buffer
	out    serveout.Watch
	bearer string // the API token when not this start's bootstrap token (set before use)
	exited chan struct{}
	err    error // of Wait, after exited
}

// startServer runs "lastmile serve" with extra args on free ports and waits
// until it listens.
func startServer(t *testing.T, dataDir string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, dataDir: dataDir, exited: make(chan struct{})}
	s.cmd = exec.Command(binary, serveout.Args(dataDir, "e2e", extra...)...)
	s.cmd.Env = serveout.CleanEnv()
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go s.read(stderr)
	t.Cleanup(func() {
		if s.running() {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.logText())
		}
	})
	waitFor(t, 30*time.Second, "server to listen", func() bool {
		if !s.running() {
			t.Fatalf("server exited early: %v\n%s", s.err, s.logText())
		}
		return s.out.Listening()
	})
	return s
}

func (s *server) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		s.mu.Lock()
		s.log.WriteString(line + "\n")
		s.mu.Unlock()
		s.out.Line(line)
	}
	s.err = s.cmd.Wait()
	close(s.exited)
}

func (s *server) running() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func (s *server) addr(k string) string { return s.out.Addr(k) }

func (s *server) bootstrap() string { return s.out.Token() }

// signal sends sig and waits for the process to exit.
func (s *server) stop(sig syscall.Signal, within time.Duration) error {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-s.exited:
		return s.err
	case <-time.After(within):
		s.t.Fatalf("server did not exit within %s after %s\n%s", within, sig, s.logText())
		return nil
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, d, what, cond)
}

// api calls the REST API and decodes the JSON answer into a map.
func (s *server) api(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.addr("http")+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	tok := s.bearer
	if tok == "" {
		tok = s.bootstrap()
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: %d, not JSON: %s", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

// createDevice creates a device with a generated secret and returns it.
func (s *server) createDevice(t *testing.T, id string) string {
	t.Helper()
	code, out := s.api(t, "POST", "/v1/devices", `{"device": {"id": "`+id+`"}, "generate_secret": true}`)
	if code != http.StatusOK {
		t.Fatalf("create device %s: %d %v", id, code, out)
	}
	secret, _ := out["secret"].(string)
	if secret == "" {
		t.Fatalf("create device %s: no secret in %v", id, out)
	}
	return secret
}

// presence returns the presence object of GET /v1/devices/{id}.
func (s *server) presence(t *testing.T, id string) map[string]any {
	t.Helper()
	code, out := s.api(t, "GET", "/v1/devices/"+id, "")
	if code != http.StatusOK {
		t.Fatalf("get device %s: %d %v", id, code, out)
	}
	if d, ok := out["device"].(map[string]any); ok { // tolerate a wrapped answer
		out = d
	}
	p, _ := out["presence"].(map[string]any)
	return p
}

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// mosquitto runs mosquitto_pub or mosquitto_sub against the server.
func (s *server) mosquitto(t *testing.T, tool string, args ...string) (string, error) {
	t.Helper()
	h, p := hostPort(t, s.addr("mqtt"))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, append([]string{"-h", h, "-p", p}, args...)...).CombinedOutput()
	return string(out), err
}

// mqttConnect connects an MQTT 5 client with paho.golang.
type mqttOpts struct {
	clientID, username, password string
	cleanStart                   bool
	sessionExpiry                uint32
	onPublish                    func(paho.PublishReceived) (bool, error)
	onServerDisconnect           func(*paho.Disconnect)
	onClientError                func(error)
}

func mqttConnect(t *testing.T, addr string, o mqttOpts) (*paho.Client, *paho.Connack, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	cfg := paho.ClientConfig{Conn: conn, OnServerDisconnect: o.onServerDisconnect, OnClientError: o.onClientError}
	if o.onPublish != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){o.onPublish}
	}
	c := paho.NewClient(cfg)
	cp := &paho.Connect{ClientID: o.clientID, KeepAlive: 30, CleanStart: o.cleanStart}
	if o.username != "" {
		cp.Username, cp.UsernameFlag = o.username, true
		cp.Password, cp.PasswordFlag = []byte(o.password), true
	}
	if o.sessionExpiry > 0 {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &o.sessionExpiry}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		_ = conn.Close()
		return nil, ca, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ca, nil
}

// TestREADMEFlow follows the README quickstart: bootstrap token, a device
// over REST, telemetry inside and outside its namespace, a wrong password,
// and presence.
func TestREADMEFlow(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	if s.bootstrap() == "" {
		t.Fatalf("no bootstrap token printed:\n%s", s.logText())
	}
	if strings.Count(s.logText(), s.bootstrap()) != 2 { // the token line and the export line, nothing else
		t.Errorf("bootstrap token printed %d times, want exactly in the box", strings.Count(s.logText(), s.bootstrap()))
	}
	if code, _ := s.api(t, "GET", "/v1/devices", ""); code != http.StatusOK {
		t.Fatalf("list devices with the bootstrap token: %d", code)
	}
	secret := s.createDevice(t, "dev1")
	if strings.Contains(s.logText(), secret) {
		t.Error("the device secret appears in the server log")
	}

	// In its namespace: accepted.
	if out, err := s.mosquitto(t, "mosquitto_pub", "-V", "mqttv5", "-i", "dev1", "-u", "dev1", "-P", secret, "-t", "tele/dev1/x", "-m", "21.5", "-q", "1"); err != nil {
		t.Fatalf("publish to own namespace: %v: %s", err, out)
	}

	// Outside: PUBACK 0x87, connection stays up.
	c, _, err := mqttConnect(t, s.addr("mqtt"), mqttOpts{clientID: "dev1", username: "dev1", password: secret, cleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: "tele/dev2/x", QoS: 1, Payload: []byte("1")})
	if pr == nil || pr.ReasonCode != 0x87 {
		t.Fatalf("publish to tele/dev2/x: response %+v, err %v; want reason 0x87", pr, err)
	}
	if pr, err := c.Publish(ctx, &paho.Publish{Topic: "tele/dev1/y", QoS: 1, Payload: []byte("1")}); err != nil || pr.ReasonCode != 0 {
		t.Fatalf("after a refused publish the connection should stay usable: %+v %v", pr, err)
	}

	// Online, on this connection.
	waitFor(t, 10*time.Second, "dev1 online", func() bool {
		p := s.presence(t, "dev1")
		return p["online"] == true
	})

	// Wrong password: 0x86 for MQTT 5, return code 4 for 3.1.1.
	_, ca, err := mqttConnect(t, s.addr("mqtt"), mqttOpts{clientID: "dev1", username: "dev1", password: "wrong", cleanStart: true})
	if err == nil || ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("wrong password: connack %+v, err %v; want 0x86", ca, err)
	}
	out, err := s.mosquitto(t, "mosquitto_sub", "-V", "mqttv5", "-i", "dev1", "-u", "dev1", "-P", "wrong", "-t", "$dm/dev1/#", "-C", "1", "-W", "5")
	if err == nil || !strings.Contains(strings.ToLower(out), "bad user name or password") {
		t.Errorf("mosquitto_sub v5 with a wrong password: %v: %q", err, out)
	}
	out, err = s.mosquitto(t, "mosquitto_pub", "-V", "mqttv311", "-i", "dev1", "-u", "dev1", "-P", "wrong", "-t", "tele/dev1/x", "-m", "1")
	if err == nil || !strings.Contains(strings.ToLower(out), "bad user name or password") {
		t.Errorf("mosquitto_pub 3.1.1 with a wrong password: %v: %q", err, out)
	}
	// The refused attempts did not take dev1's connection over.
	if p := s.presence(t, "dev1"); p["online"] != true {
		t.Errorf("dev1 offline after refused connects: %v", p)
	}
}

// TestTakeover: a second connection with the same client ID closes the
// first, and presence shows the new one, online.
func TestTakeover(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	secret := s.createDevice(t, "dev1")

	firstGone := make(chan struct{})
	var once sync.Once
	gone := func() { once.Do(func() { close(firstGone) }) }
	_, _, err := mqttConnect(t, s.addr("mqtt"), mqttOpts{clientID: "dev1", username: "dev1", password: secret, cleanStart: true,
		onServerDisconnect: func(*paho.Disconnect) { gone() }, onClientError: func(error) { gone() }})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "first connection online", func() bool { return s.presence(t, "dev1")["online"] == true })
	first := s.presence(t, "dev1")

	c2, _, err := mqttConnect(t, s.addr("mqtt"), mqttOpts{clientID: "dev1", username: "dev1", password: secret, cleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-firstGone:
	case <-time.After(10 * time.Second):
		t.Fatal("first connection was not closed by the takeover")
	}
	// Presence ends online with the second connection, whatever order the
	// disconnect of the first and the connect of the second were recorded.
	waitFor(t, 10*time.Second, "presence of the second connection", func() bool {
		p := s.presence(t, "dev1")
		return p["online"] == true && fmt.Sprint(p["remoteAddr"], p["remote_addr"]) != fmt.Sprint(first["remoteAddr"], first["remote_addr"])
	})
	// And stays so: the late disconnect of the first must not win.
	time.Sleep(200 * time.Millisecond) // give a wrong late write the chance to land
	if p := s.presence(t, "dev1"); p["online"] != true {
		t.Fatalf("presence after takeover: %v", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c2.Publish(ctx, &paho.Publish{Topic: "tele/dev1/x", QoS: 1, Payload: []byte("x")}); err != nil {
		t.Fatalf("second connection unusable: %v", err)
	}
}

// TestSIGTERM: a signal stops the server cleanly, exit code 0, quickly.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	secret := s.createDevice(t, "dev1")
	if _, _, err := mqttConnect(t, s.addr("mqtt"), mqttOpts{clientID: "dev1", username: "dev1", password: secret, cleanStart: true}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.stop(syscall.SIGTERM, 8*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, s.logText())
	}
	t.Logf("stopped in %s", time.Since(start))
	// The store was closed cleanly: a second start on it works and needs
	// no bootstrap token.
	s2 := startServer(t, s.dataDir)
	if s2.bootstrap() != "" {
		t.Error("a bootstrap token was printed on the second start")
	}
	if err := s2.stop(syscall.SIGINT, 8*time.Second); err != nil {
		t.Fatalf("exit after SIGINT: %v", err)
	}
}

// TestBadConfig: an unknown key stops the start with an error naming it.
func TestBadConfig(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "lastmile.yaml")
	if err := os.WriteFile(path, []byte("mqtt:\n  tcp_addr: \":0\"\n  max_conections: 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--config", path, "--data-dir", t.TempDir())
	cmd.Env = serveout.CleanEnv()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("want a non-zero exit, got %v: %s", err, out)
	}
	if !strings.Contains(string(out), "max_conections") || !strings.Contains(string(out), "line 3") {
		t.Fatalf("error does not name the key and line: %s", out)
	}

	cmd = exec.Command(binary, "serve", "--data-dir", t.TempDir())
	cmd.Env = append(serveout.CleanEnv(), "LASTMILE_MQTT_TCP_ADRR=:0")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "LASTMILE_MQTT_TCP_ADRR") {
		t.Fatalf("unknown environment variable: %v: %s", err, out)
	}
}
