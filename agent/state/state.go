// Package state is what the agent reports about its device (the shadow's
// "reported" side: agent and firmware version, uptime, interfaces) and how
// it applies the platform's desired changes (the "delta"): each changed key
// goes to the handler registered for its longest matching prefix, a
// program (the key as argument, the JSON value on stdin) or a built-in.
//
//	delta {"wifi":{"ssid":"x"}} ──flatten──> "wifi.ssid"="x"
//	    ──longest prefix "wifi."──> handler ──ok──> reported "wifi.ssid"="x"
//	                                       └─err──> Result.Errors["wifi.ssid"]
//
// The package knows nothing of MQTT or the shadow topic contract; the
// agent's shadow capability binds it.
package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Reporter gathers the reported state.
type Reporter struct {
	AgentVersion string
	// FirmwareVersionFile holds the firmware version (first line).
	FirmwareVersionFile string
	// Extra adds keys (e.g. the agent's buffer status).
	Extra func() map[string]any
}

// Interface is one network interface.
type Interface struct {
	Name  string   `json:"name"`
	MAC   string   `json:"mac,omitempty"`
	MTU   int      `json:"mtu"`
	Up    bool     `json:"up"`
	Addrs []string `json:"addrs,omitempty"`
}

// Reported returns the device's current state as shadow keys.
func (r *Reporter) Reported() map[string]any {
	out := map[string]any{"agent_version": r.AgentVersion}
	if r.FirmwareVersionFile != "" {
		if b, err := os.ReadFile(r.FirmwareVersionFile); err == nil {
			line, _, _ := strings.Cut(string(b), "\n")
			out["firmware_version"] = strings.TrimSpace(line)
		}
	}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if s, err := strconv.ParseFloat(f[0], 64); err == nil {
				out["uptime_s"] = int64(s)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		out["kernel"] = strings.TrimSpace(string(b))
	}
	if h, err := os.Hostname(); err == nil {
		out["hostname"] = h
	}
	if ifs, err := net.Interfaces(); err == nil {
		var list []Interface
		for _, i := range ifs {
			it := Interface{Name: i.Name, MAC: i.HardwareAddr.String(), MTU: i.MTU, Up: i.Flags&net.FlagUp != 0}
			if addrs, err := i.Addrs(); err == nil {
				for _, a := range addrs {
					it.Addrs = append(it.Addrs, a.String())
				}
			}
			list = append(list, it)
		}
		out["interfaces"] = list
	}
	if r.Extra != nil {
		for k, v := range r.Extra() {
			out[k] = v
		}
	}
	return out
}

// Handler applies one key's desired value. It returns the value to report
// (usually the one it was given).
type Handler interface {
	Apply(ctx context.Context, key string, value any) (reported any, err error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, key string, value any) (any, error)

// Apply calls f.
func (f HandlerFunc) Apply(ctx context.Context, key string, value any) (any, error) {
	return f(ctx, key, value)
}

// Program applies a key by running Argv with the key appended as the last
// argument and the JSON value on stdin. Exit 0 means applied.
type Program struct {
	Argv    []string
	Timeout time.Duration
}

var _ Handler = (*Program)(nil)

// ErrApply wraps a handler's failure.
var ErrApply = errors.New("apply failed")

// Apply runs the program.
func (p *Program) Apply(ctx context.Context, key string, value any) (any, error) {
	in, err := json.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("%w: encode value: %w", ErrApply, err)
	}
	timeout := p.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	//nolint:gosec // G204: argv is the operator's configuration; the key is one argument, never shell-parsed
	cmd := exec.CommandContext(ctx, p.Argv[0], append(append([]string(nil), p.Argv[1:]...), key)...)
	cmd.Stdin = bytes.NewReader(in)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 512 {
			msg = msg[len(msg)-512:]
		}
		return nil, fmt.Errorf("%w: %s %s: %w: %s", ErrApply, p.Argv[0], key, err, msg)
	}
	return value, nil
}

// Applier routes delta keys to handlers by prefix. Register before use;
// Apply is then safe for concurrent use.
type Applier struct {
	prefixes []string // longest first
	handlers map[string]Handler
}

// Register adds a handler for keys starting with prefix ("wifi." or an
// exact key such as "agent.log_level").
func (a *Applier) Register(prefix string, h Handler) error {
	if prefix == "" || h == nil {
		return errors.New("state: empty prefix or nil handler")
	}
	if a.handlers == nil {
		a.handlers = map[string]Handler{}
	}
	if _, dup := a.handlers[prefix]; dup {
		return fmt.Errorf("state: prefix %q registered twice", prefix)
	}
	a.handlers[prefix] = h
	a.prefixes = append(a.prefixes, prefix)
	sort.Slice(a.prefixes, func(i, j int) bool { return len(a.prefixes[i]) > len(a.prefixes[j]) })
	return nil
}

// Result is the outcome of one delta.
type Result struct {
	// Reported are the keys applied, with the value to report.
	Reported map[string]any
	// Errors are the keys not applied, with the reason.
	Errors map[string]string
}

// ErrNoHandler is the reason for a key no handler covers.
var ErrNoHandler = errors.New("no handler for this key")

// Apply applies every leaf of delta, in key order, and reports each.
func (a *Applier) Apply(ctx context.Context, delta map[string]any) Result {
	res := Result{Reported: map[string]any{}, Errors: map[string]string{}}
	flat := map[string]any{}
	Flatten("", delta, flat, 0)
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		h := a.handlerFor(k)
		if h == nil {
			res.Errors[k] = ErrNoHandler.Error()
			continue
		}
		v, err := h.Apply(ctx, k, flat[k])
		if err != nil {
			res.Errors[k] = err.Error()
			continue
		}
		res.Reported[k] = v
	}
	return res
}

func (a *Applier) handlerFor(key string) Handler {
	for _, p := range a.prefixes {
		if strings.HasPrefix(key, p) {
			return a.handlers[p]
		}
	}
	return nil
}

// Flatten turns nested objects into dotted keys: {"a":{"b":1}} is "a.b"=1.
// Arrays and scalars are leaves. Depth is bounded.
func Flatten(prefix string, m map[string]any, out map[string]any, depth int) {
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok && depth < 16 && len(sub) > 0 {
			Flatten(key, sub, out, depth+1)
			continue
		}
		out[key] = v
	}
}

// Nest is the inverse of Flatten, for reporting.
func Nest(flat map[string]any) map[string]any {
	out := map[string]any{}
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts := strings.Split(k, ".")
		m := out
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = flat[k]
	}
	return out
}
