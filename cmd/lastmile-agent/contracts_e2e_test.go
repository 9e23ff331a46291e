package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lookupPath reads a dotted path in a decoded JSON object.
func lookupPath(m map[string]any, path string) any {
	var v any = m
	for _, p := range strings.Split(path, ".") {
		o, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = o[p]
	}
	return v
}

// TestShadowDeltaReachesHandler: a desired change made through REST
// reaches the agent's handlers (a program for wifi.*, the built-in
// agent.log_level) and shows in reported; a key no handler takes shows
// under reported.agent_apply_errors, and is cleared once it applies.
func TestShadowDeltaReachesHandler(t *testing.T) {
	t.Parallel()
	pl := startPlatform(t)
	const id = "gw-shadow"
	dir := t.TempDir()
	secret := pl.createDevice(t, id)
	a := startAgent(t, agentConfig(t, dir, baseConfig(t, dir, id, secret, pl.addr("mqtt"), "5")+fmt.Sprintf(`
state:
  handlers:
    - {prefix: "wifi.", argv: [sh, -c, 'cat > "%s/applied-$1"', sh]}
`, dir)))
	shadow := func() map[string]any {
		code, _ := pl.raw(t, "GET", "/v1/devices/"+id+"/shadow", "")
		if code != 200 {
			return map[string]any{}
		}
		return pl.api(t, "GET", "/v1/devices/"+id+"/shadow", "")
	}
	waitFor(t, 30*time.Second, "the agent's first report", func() bool {
		return lookupPath(shadow(), "reported.agent_version") != nil
	})
	pl.api(t, "PATCH", "/v1/devices/"+id+"/shadow", `{"desired": {"wifi": {"ssid": "lab"}, "agent": {"log_level": "warn"}, "ntp": {"server": "pool"}}}`)
	var sh map[string]any
	waitFor(t, 30*time.Second, "reported to show the applied keys and the error", func() bool {
		sh = shadow()
		return lookupPath(sh, "reported.wifi.ssid") == "lab" && lookupPath(sh, "reported.agent.log_level") == "warn" &&
			lookupPath(sh, "reported.agent_apply_errors.ntp.server") != nil
	})
	if b, err := os.ReadFile(filepath.Join(dir, "applied-wifi.ssid")); err != nil || strings.TrimSpace(string(b)) != `"lab"` {
		t.Errorf("the wifi handler got %q (%v)", b, err)
	}
	if reason, _ := lookupPath(sh, "reported.agent_apply_errors.ntp.server").(string); reason == "" {
		t.Errorf("apply error %v", lookupPath(sh, "reported.agent_apply_errors"))
	}
	if d := lookupPath(sh, "delta.ntp.server"); d != "pool" {
		t.Errorf("delta still holds ntp.server: %v", d)
	}
	// Drop the desired key no handler takes: nothing fails any more, and the
	// next apply clears the errors.
	pl.api(t, "PATCH", "/v1/devices/"+id+"/shadow", `{"desired": {"ntp": null, "wifi": {"ssid": "lab2"}}}`)
	waitFor(t, 30*time.Second, "the errors to clear", func() bool {
		sh = shadow()
		return lookupPath(sh, "reported.wifi.ssid") == "lab2" && lookupPath(sh, "reported.agent_apply_errors") == nil
	})
	a.stop(t)
}

// TestCommandsAnswered: a command invoked through the API is answered by
// the agent, over MQTT 5 (response topic) and 3.1.1 (topic suffix); an
// unknown command and an exec outside the allow-list get a clear error.
func TestCommandsAnswered(t *testing.T) {
	t.Parallel()
	pl := startPlatform(t)
	for _, proto := range []string{"5", "3.1.1"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			id := "gw-cmd-v" + strings.ReplaceAll(proto, ".", "")
			dir := t.TempDir()
			secret := pl.createDevice(t, id)
			a := startAgent(t, agentConfig(t, dir, baseConfig(t, dir, id, secret, pl.addr("mqtt"), proto)+`
commands:
  reboot: {disabled: true}
  exec:
    - {name: hello, argv: [echo, hello-from-agent]}
`))
			waitFor(t, 30*time.Second, "the agent to subscribe to commands", func() bool {
				code, body := pl.raw(t, "POST", "/v1/devices/"+id+"/commands/exec:invoke", `{"payload": {"name": "hello"}, "timeout": "5s"}`)
				if code != 200 {
					return false // not connected yet (UNAVAILABLE) or no answer
				}
				if !strings.Contains(body, `"status":200`) || !strings.Contains(body, "hello-from-agent") {
					t.Fatalf("exec hello: %s", body)
				}
				return true
			})
			out := pl.api(t, "POST", "/v1/devices/"+id+"/commands/nope:invoke", `{"timeout": "5s"}`)
			if out["status"] != float64(404) || lookupPath(out, "payload.code") != "unknown_command" {
				t.Errorf("unknown command: %v", out)
			}
			out = pl.api(t, "POST", "/v1/devices/"+id+"/commands/exec:invoke", `{"payload": {"name": "rm"}, "timeout": "5s"}`)
			if out["status"] != float64(403) || lookupPath(out, "payload.code") != "not_allowed" {
				t.Errorf("exec outside the allow-list: %v", out)
			}
			out = pl.api(t, "POST", "/v1/devices/"+id+"/commands/reboot:invoke", `{"timeout": "5s"}`)
			if out["status"] != float64(404) {
				t.Errorf("disabled reboot: %v", out)
			}
			a.stop(t)
		})
	}
}
