package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/internal/serveout"
)

var (
	lmctlOnce sync.Once
	lmctlBin  string
	lmctlErr  error
)

// lmctl builds cmd/lmctl once per test binary.
func lmctl(t *testing.T) string {
	t.Helper()
	lmctlOnce.Do(func() {
		lmctlBin = filepath.Join(filepath.Dir(binary), "lmctl")
		out, err := exec.Command("go", "build", "-o", lmctlBin, "../lmctl").CombinedOutput()
		if err != nil {
			lmctlErr = fmt.Errorf("build lmctl: %w\n%s", err, out)
		}
	})
	if lmctlErr != nil {
		t.Fatal(lmctlErr)
	}
	return lmctlBin
}

// lines starts a long-running command and returns its stdout lines and
// stderr lines as they come; it is killed when the test ends.
func lines(t *testing.T, name string, args ...string) (stdout, stderr <-chan string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = serveout.CleanEnv()
	outR, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scan := func(r io.Reader) <-chan string {
		ch := make(chan string, 100)
		go func() {
			defer close(ch)
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				ch <- sc.Text()
			}
		}()
		return ch
	}
	stdout, stderr = scan(outR), scan(errR)
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	return stdout, stderr
}

func expectLine(t *testing.T, ch <-chan string, what string, match func(string) bool) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("output ended before %s", what)
			}
			if match(l) {
				return l
			}
		case <-timeout:
			t.Fatalf("no %s within 20 s", what)
		}
	}
}

// TestCommandsAndEventsAsAUser follows docs/mqtt-topics.md: a device made of
// mosquitto_sub and mosquitto_pub (MQTT 3.1.1) answers a command sent with
// lmctl, while lmctl events watch -o json prints one JSON object per line.
func TestCommandsAndEventsAsAUser(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"mosquitto_sub", "mosquitto_pub", "stdbuf"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	s := startServer(t, t.TempDir())
	secret := s.createDevice(t, "cpe-1")
	ctl := lmctl(t)
	global := []string{"--server", s.addr("grpc"), "--token", s.bootstrap()}

	watch, watchErr := lines(t, ctl, append(global, "-o", "json", "events", "watch", "--device", "cpe-1",
		"--type", "presence", "--type", "command.result")...)
	expectLine(t, watchErr, "the watch", func(l string) bool { return strings.Contains(l, "watching events") })

	// Offline first: 503/UNAVAILABLE at once.
	out, err := exec.Command(ctl, append(global, "cmd", "invoke", "cpe-1", "reboot")...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Unavailable") {
		t.Fatalf("offline device: %v %s", err, out)
	}

	h, p := hostPort(t, s.addr("mqtt"))
	// stdbuf: mosquitto_sub's debug lines ("received SUBACK") are buffered
	// on a pipe otherwise.
	dev, _ := lines(t, "stdbuf", "-oL", "mosquitto_sub", "-h", h, "-p", p, "-V", "mqttv311", "-i", "cpe-1", "-u", "cpe-1", "-P", secret,
		"-t", "$dm/cpe-1/cmd/#", "-v", "-d", "-C", "1")
	expectLine(t, dev, "SUBACK", func(l string) bool { return strings.Contains(l, "SUBACK") })
	ev := expectLine(t, watch, "presence event", func(l string) bool { return strings.Contains(l, "EVENT_TYPE_PRESENCE") })
	var obj map[string]any
	if err := json.Unmarshal([]byte(ev), &obj); err != nil || obj["device_id"] != "cpe-1" {
		t.Fatalf("watch line %q is not a JSON event: %v", ev, err)
	}

	type result struct {
		out []byte
		err error
	}
	invoked := make(chan result, 1)
	go func() {
		out, err := exec.Command(ctl, append(global, "-o", "json", "cmd", "invoke", "cpe-1", "reboot", "--payload", `{"delay":5}`, "--timeout", "10s")...).CombinedOutput()
		invoked <- result{out, err}
	}()
	req := expectLine(t, dev, "the request", func(l string) bool { return strings.HasPrefix(l, "$dm/cpe-1/cmd/reboot/") })
	topic, payload, _ := strings.Cut(req, " ")
	if payload != `{"delay":5}` {
		t.Fatalf("request payload %q", payload)
	}
	reply := strings.Replace(topic, "/cmd/", "/cmdreply/", 1)
	if out, err := s.mosquitto(t, "mosquitto_pub", "-V", "mqttv311", "-i", "cpe-1", "-u", "cpe-1", "-P", secret,
		"-t", reply, "-m", `{"status":200,"payload":{"rebooting_in":5}}`); err != nil {
		t.Fatalf("reply: %v %s", err, out)
	}
	r := <-invoked
	var res map[string]any
	if r.err != nil || json.Unmarshal(r.out, &res) != nil || res["status"] != 200.0 || res["payload"].(map[string]any)["rebooting_in"] != 5.0 {
		t.Fatalf("lmctl cmd invoke: %v %s", r.err, r.out)
	}
	expectLine(t, watch, "the command result", func(l string) bool {
		return strings.Contains(l, "EVENT_TYPE_COMMAND_RESULT") && strings.Contains(l, `"outcome":"replied"`)
	})

	// A timeout the server refuses.
	out, err = exec.Command(ctl, append(global, "cmd", "invoke", "cpe-1", "reboot", "--timeout", "500ms")...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "InvalidArgument") {
		t.Fatalf("bad timeout: %v %s", err, out)
	}
}
