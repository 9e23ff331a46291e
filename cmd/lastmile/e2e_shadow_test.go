package main

import (
	"context"
	"encoding/json"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/internal/serveout"
)

// lmctl runs the real CLI (built once) against the server.
func (s *server) lmctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := lmctl(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--server", s.addr("grpc"), "--token", s.bootstrap()}, args...)...)
	cmd.Env = serveout.CleanEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestShadowAsANewUser follows docs/shadows.md: a device reports with
// mosquitto_pub, the operator sets desired state with lmctl, the device
// subscribes with mosquitto_sub and gets the delta, the fleet query finds
// it, and curl-style REST reads the shadow.
func TestShadowAsANewUser(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	secret := s.createDevice(t, "cpe-1")
	dev := []string{"-i", "cpe-1", "-u", "cpe-1", "-P", secret}

	if out, err := s.mosquitto(t, "mosquitto_pub", append(dev, "-V", "mqttv311", "-q", "1",
		"-t", "$dm/cpe-1/shadow/update", "-m", `{"state":{"reported":{"firmware":{"version":"2.0.0"}}}}`)...); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	waitFor(t, 15*time.Second, "the reported state to land", func() bool {
		code, out := s.api(t, "GET", "/v1/devices/cpe-1/shadow", "")
		return code == 200 && out["version"] == "1"
	})

	out, err := s.lmctl(t, "shadow", "update", "cpe-1", "--desired", `{"firmware":{"version":"2.1.0"}}`, "-o", "json")
	if err != nil {
		t.Fatalf("lmctl shadow update: %v %s", err, out)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc["version"] != "2" {
		t.Fatalf("lmctl shadow update -o json: %s", out)
	}

	// The device comes back and subscribes to its delta topic.
	out, err = s.mosquitto(t, "mosquitto_sub", append(dev, "-V", "mqttv5", "-t", "$dm/cpe-1/shadow/update/delta", "-C", "1", "-W", "10")...)
	if err != nil {
		t.Fatalf("mosquitto_sub for the delta: %v %q", err, out)
	}
	var delta map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &delta); err != nil {
		t.Fatalf("delta is not JSON: %q", out)
	}
	if b, _ := json.Marshal(delta["state"]); string(b) != `{"firmware":{"version":"2.1.0"}}` {
		t.Fatalf("delta: %s", out)
	}

	out, err = s.lmctl(t, "shadow", "query", `reported.firmware.version != "2.1.0"`)
	if err != nil || !strings.Contains(out, "cpe-1") || !strings.Contains(out, "DEVICE") {
		t.Fatalf("lmctl shadow query: %v\n%s", err, out)
	}
	code, q := s.api(t, "GET", "/v1/shadows:queryDevices?filter="+url.QueryEscape(`reported.firmware.version != "2.1.0" AND delta.firmware.version = "2.1.0"`), "")
	if devs, _ := q["devices"].([]any); code != 200 || len(devs) != 1 || devs[0].(map[string]any)["device_id"] != "cpe-1" {
		t.Fatalf("REST fleet query: %d %v", code, q)
	}
	if code, q := s.api(t, "GET", "/v1/shadows:queryDevices?filter="+url.QueryEscape(`reported.x ~ 1`), ""); code != 400 {
		t.Fatalf("REST fleet query with a bad filter: %d %v, want 400", code, q)
	}
	out, err = s.lmctl(t, "shadow", "query", `reported.firmware.version = "2.1.0"`, "-o", "json")
	if err != nil || strings.Contains(out, "cpe-1") {
		t.Fatalf("lmctl shadow query for updated devices: %v\n%s", err, out)
	}
	out, err = s.lmctl(t, "shadow", "query", `reported.firmware.version = 2.1.0`)
	if err == nil || !strings.Contains(out, "InvalidArgument") && !strings.Contains(out, "JSON literal") {
		t.Fatalf("a bad filter: %v\n%s", err, out)
	}
	out, err = s.lmctl(t, "shadow", "get", "cpe-1")
	if err != nil || !strings.Contains(out, `{"firmware":{"version":"2.1.0"}}`) {
		t.Fatalf("lmctl shadow get: %v\n%s", err, out)
	}
	out, err = s.lmctl(t, "shadow", "update", "cpe-1", "--desired", `{"x":1}`, "--version", "1")
	if err == nil || !strings.Contains(out, "version") {
		t.Fatalf("update at a stale version: %v\n%s", err, out)
	}
	if code, out := s.api(t, "PATCH", "/v1/devices/cpe-1/shadow", `{"desired":{"x":1},"expected_version":"1"}`); code != 409 {
		t.Fatalf("REST update at a stale version: %d %v, want 409", code, out)
	}
	if code, out := s.api(t, "PATCH", "/v1/devices/ghost/shadow", `{"desired":{"x":1}}`); code != 404 {
		t.Fatalf("REST update of an unknown device: %d %v, want 404", code, out)
	}
	if out, err := s.lmctl(t, "shadow", "delete", "cpe-1"); err != nil {
		t.Fatalf("lmctl shadow delete: %v %s", err, out)
	}
	if code, _ := s.api(t, "GET", "/v1/devices/cpe-1/shadow", ""); code != 404 {
		t.Fatalf("GET after delete: %d, want 404", code)
	}
}
