// Package serveout reads what `lastmile serve --log-format json` writes to
// stderr: the bootstrap token (printed once, on the first start of an empty
// store) and the "listening" record with the addresses it bound. The
// end-to-end tests and the load harness start the real binary on free ports
// and find it through this package.
package serveout

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"sync"
)

// Args returns serve's flags for a throwaway instance: data in dataDir,
// MQTT, gRPC and HTTP on free loopback ports, no WebSocket listener, JSON
// logs; extra flags follow and win.
func Args(dataDir, nodeName string, extra ...string) []string {
	return append([]string{"serve", "--data-dir", dataDir, "--node-name", nodeName,
		"--mqtt-addr", "127.0.0.1:0", "--ws-addr", "", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--log-format", "json"}, extra...)
}

// CleanEnv is this process's environment without LASTMILE_* variables, so
// that a developer's shell does not change what a test starts.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LASTMILE_") {
			env = append(env, kv)
		}
	}
	return env
}

// Listeners names the addresses the "listening" record may carry.
var Listeners = []string{"mqtt", "mqtt_tls", "ws", "grpc", "http", "snmp", "pprof"}

var bootstrapRe = regexp.MustCompile(`export LASTMILE_TOKEN=(lmt_[a-z0-9]+_[A-Za-z0-9_-]+)`)

// Watch collects the bootstrap token and the bound addresses from serve's
// stderr, fed one line at a time. It is safe for concurrent use.
type Watch struct {
	mu    sync.Mutex
	token string
	addrs map[string]string
}

// Line reads one line of serve's stderr.
func (w *Watch) Line(line string) {
	if m := bootstrapRe.FindStringSubmatch(line); m != nil {
		w.mu.Lock()
		w.token = m[1]
		w.mu.Unlock()
		return
	}
	if !strings.HasPrefix(line, "{") {
		return
	}
	var rec map[string]any
	if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "listening" {
		return
	}
	addrs := map[string]string{}
	for _, k := range Listeners {
		if s, ok := rec[k].(string); ok {
			addrs[k] = s
		}
	}
	w.mu.Lock()
	w.addrs = addrs
	w.mu.Unlock()
}

// Listening reports whether the "listening" record has been read.
func (w *Watch) Listening() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.addrs != nil
}

// Reset forgets the addresses (not the token) before a restart.
func (w *Watch) Reset() {
	w.mu.Lock()
	w.addrs = nil
	w.mu.Unlock()
}

// Addr returns a bound address by listener name (one of Listeners), or ""
// if serve did not report it.
func (w *Watch) Addr(name string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.addrs[name]
}

// Token returns the bootstrap token, or "" if none was printed.
func (w *Watch) Token() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.token
}
