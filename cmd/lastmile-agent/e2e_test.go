package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/internal/netem"
)

// baseConfig is an agent configuration for device id at addr, with its
// secret in dir.
func baseConfig(t *testing.T, dir, id, secret, addr, protocol string) string {
	t.Helper()
	pw := filepath.Join(dir, "secret")
	if err := os.WriteFile(pw, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`device_id: %s
server:
  address: "%s"
  protocol: "%s"
  keepalive: 2s
  connect_timeout: 3s
credentials:
  password_file: %s
reconnect:
  min_delay: 100ms
  max_delay: 1s
buffer:
  dir: %s
log:
  level: debug
`, id, addr, protocol, pw, filepath.Join(dir, "buffer"))
}

// startSNMPD runs a real snmpd on a free UDP port of 127.0.0.1.
func startSNMPD(t *testing.T) string {
	t.Helper()
	bin := "/usr/sbin/snmpd"
	if p, err := exec.LookPath("snmpd"); err == nil {
		bin = p
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skip("snmpd not installed (make test-deps)")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "snmpd.conf")
	if err := os.WriteFile(conf, []byte("rocommunity public 127.0.0.1\nsysLocation lab-rack-7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	_ = pc.Close()
	cmd := exec.Command(bin, "-f", "-Lo", "-C", "-c", conf, "-M", "/dev/null", "-p", filepath.Join(dir, "pid"), "udp:"+addr)
	cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+dir, "MIBS=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return addr
}

// TestTelemetryEndToEnd: the agent binary connects to the real platform
// with a device created through the API, over MQTT 5 and 3.1.1, and its
// collectors' telemetry (file, program, SNMP from a real snmpd, its own
// status) reaches an application subscribed on the platform.
func TestTelemetryEndToEnd(t *testing.T) {
	t.Parallel()
	pl := startPlatform(t)
	tm := pl.subscribe(t, "oss", "tele/+/#")
	snmpd := startSNMPD(t)
	for _, proto := range []string{"5", "3.1.1"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			id := "gw-v" + strings.ReplaceAll(proto, ".", "")
			dir := t.TempDir()
			secret := pl.createDevice(t, id)
			file := filepath.Join(dir, "fw")
			if err := os.WriteFile(file, []byte("fw-1.2.3\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := baseConfig(t, dir, id, secret, pl.addr("mqtt"), proto) + fmt.Sprintf(`
collectors:
  - {stream: sys/fw, interval: 1s, file: {path: %s}}
  - {stream: sys/echo, interval: 1s, command: {argv: [echo, from-%s]}}
  - stream: snmp/self
    interval: 1s
    snmp: {target: "%s", community: public, oids: [1.3.6.1.2.1.1.6.0, 1.3.6.1.2.1.1.3.0], timeout: 2s}
status: {interval: 1s}
`, file, id, snmpd)
			a := startAgent(t, agentConfig(t, dir, cfg))
			want := map[string]bool{"tele/" + id + "/sys/fw": false, "tele/" + id + "/sys/echo": false, "tele/" + id + "/snmp/self": false, "tele/" + id + "/agent/status": false}
			waitFor(t, 30*time.Second, "telemetry of every collector", func() bool {
				for _, m := range tm.list() {
					if _, ok := want[m.Topic]; ok && m.Error == "" {
						want[m.Topic] = true
					}
				}
				for _, ok := range want {
					if !ok {
						return false
					}
				}
				return true
			})
			var last uint64
			for _, m := range tm.list() {
				if !strings.HasPrefix(m.Topic, "tele/"+id+"/") {
					continue
				}
				if m.Seq <= last {
					t.Errorf("seq %d after %d: out of order", m.Seq, last)
				}
				last = m.Seq
				if _, err := time.Parse(time.RFC3339Nano, m.TS); err != nil {
					t.Errorf("ts %q: %v", m.TS, err)
				}
				switch m.Topic {
				case "tele/" + id + "/sys/fw":
					if string(m.Data) != `"fw-1.2.3\n"` {
						t.Errorf("file data %s", m.Data)
					}
				case "tele/" + id + "/sys/echo":
					if string(m.Data) != `"from-`+id+`\n"` {
						t.Errorf("command data %s", m.Data)
					}
				case "tele/" + id + "/snmp/self":
					var r struct {
						Vars []struct {
							OID   string `json:"oid"`
							Value any    `json:"value"`
						} `json:"vars"`
					}
					if err := json.Unmarshal(m.Data, &r); err != nil || len(r.Vars) != 2 || r.Vars[0].Value != "lab-rack-7" {
						t.Errorf("snmp data %s (%v)", m.Data, err)
					}
				case "tele/" + id + "/agent/status":
					var s struct {
						Protocol string `json:"protocol"`
					}
					_ = json.Unmarshal(m.Data, &s)
					if s.Protocol != "" && s.Protocol != proto {
						t.Errorf("status protocol %q, want %q", s.Protocol, proto)
					}
				}
			}
			a.stop(t)
		})
	}
}

// TestWrongSecretBacksOff: a refused device keeps retrying with growing
// delays and never crashes.
func TestWrongSecretBacksOff(t *testing.T) {
	t.Parallel()
	pl := startPlatform(t)
	pl.createDevice(t, "gw-bad")
	dir := t.TempDir()
	a := startAgent(t, agentConfig(t, dir, baseConfig(t, dir, "gw-bad", "not-the-secret", pl.addr("mqtt"), "auto")))
	waitFor(t, 30*time.Second, "three refused attempts", func() bool {
		return strings.Count(a.logText(), "connect failed") >= 3
	})
	if !strings.Contains(a.logText(), "0x86") {
		t.Errorf("the refusal does not show the reason code:\n%s", a.logText())
	}
	if strings.Contains(a.logText(), "not-the-secret") {
		t.Error("the agent logged the secret")
	}
	a.stop(t)
}

// TestBadConfigNamesTheKey: the binary refuses a bad file with the key.
func TestBadConfigNamesTheKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := agentConfig(t, dir, "device_id: d\nserver:\n  address: x:1\n  keepalve: 5s\ncredentials: {password: p}\n")
	out, err := exec.Command(agentBin, "--config", p).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(out), "keepalve") || !strings.Contains(string(out), "line 4") {
		t.Fatalf("%v: %s", err, out)
	}
	out, err = exec.Command(agentBin, "check-config", "--config", "../../deployments/lastmile-agent.example.yaml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("check-config of the example: %v %s", err, out)
	}
}

// checkOrder verifies a stream of sequence numbers from first: each record
// arrives, in order; a repeat of an earlier number is a duplicate (QoS 1
// redelivery), counted; a gap is a loss.
func checkOrder(msgs []received, upTo uint64) (dups int, err error) {
	next := uint64(1)
	for _, m := range msgs {
		switch {
		case m.Seq == next:
			next++
		case m.Seq < next:
			dups++
		default:
			return dups, fmt.Errorf("lost records %d..%d (got %d next)", next, m.Seq-1, m.Seq)
		}
	}
	if next <= upTo {
		return dups, fmt.Errorf("received up to seq %d, want at least %d", next-1, upTo)
	}
	return dups, nil
}

func TestCheckOrder(t *testing.T) {
	t.Parallel()
	seqs := func(s ...uint64) []received {
		var out []received
		for _, n := range s {
			out = append(out, received{Seq: n})
		}
		return out
	}
	for _, c := range []struct {
		in   []received
		upTo uint64
		dups int
		ok   bool
	}{
		{seqs(1, 2, 3), 3, 0, true},
		{seqs(1, 2, 2, 3, 1), 3, 2, true}, // redeliveries
		{seqs(1, 3), 3, 0, false},         // a loss
		{seqs(2, 3), 3, 0, false},         // the first is lost
		{seqs(1, 2), 3, 0, false},         // the tail is lost
	} {
		dups, err := checkOrder(c.in, c.upTo)
		if (err == nil) != c.ok || (c.ok && dups != c.dups) {
			t.Errorf("checkOrder(%v, %d) = %d, %v", c.in, c.upTo, dups, err)
		}
	}
}

// outage returns the length of the weak-network test's outage: 8s in
// `make test`, WEAKNET_OUTAGE=60s for the run the issue asks for.
func outage(t *testing.T) time.Duration {
	if v := os.Getenv("WEAKNET_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("WEAKNET_OUTAGE: %v", err)
		}
		return d
	}
	return 8 * time.Second
}

// TestWeakNetwork: between agent and platform a userspace proxy adds
// latency, then blackholes the link (the agent must notice by itself),
// then cuts it; the agent keeps producing telemetry and is restarted in
// the middle of the outage: by systemd (SIGTERM), or after a crash
// (SIGKILL), the latter over MQTT 3.1.1. After the link returns every
// message arrives, in order; duplicates only as QoS 1 allows, counted.
func TestWeakNetwork(t *testing.T) {
	t.Parallel()
	t.Run("restart", func(t *testing.T) {
		t.Parallel()
		testWeakNetwork(t, "auto", func(p *process) { p.stop(t) })
	})
	t.Run("crash", func(t *testing.T) {
		t.Parallel()
		testWeakNetwork(t, "3.1.1", func(p *process) {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.exited
		})
	})
}

func testWeakNetwork(t *testing.T, protocol string, restart func(*process)) {
	out := outage(t)
	pl := startPlatform(t)
	tm := pl.subscribe(t, "oss", "tele/gw-weak/#")
	proxy, err := netem.New(pl.addr("mqtt"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	proxy.SetLatency(20 * time.Millisecond)

	dir := t.TempDir()
	secret := pl.createDevice(t, "gw-weak")
	cfg := baseConfig(t, dir, "gw-weak", secret, proxy.Addr(), protocol) + `
collectors:
  - {stream: a, interval: 1s, command: {argv: [date, +%s%N]}}
  - {stream: b, interval: 1s, command: {argv: [date, +%s%N]}}
  - {stream: c, interval: 1s, command: {argv: [date, +%s%N]}}
status: {interval: 1s}
`
	cfgPath := agentConfig(t, dir, cfg)
	a := startAgent(t, cfgPath)
	waitFor(t, 30*time.Second, "telemetry before the outage", func() bool { return len(tm.list()) >= 8 })

	// Outage: first half blackhole (nothing is refused, bytes vanish), the
	// agent restarted in the middle, second half cut.
	t.Logf("outage of %s", out)
	proxy.SetMode(netem.Blackhole)
	before := len(tm.list())
	time.Sleep(out / 2) // the outage itself is the scenario, not a wait for a condition
	proxy.SetMode(netem.Cut)
	restart(a)
	a = startAgent(t, cfgPath)
	time.Sleep(out / 2)
	if n := len(tm.list()); n > before+2 {
		t.Fatalf("%d messages arrived during the outage: the link was not down", n-before)
	}
	restored := time.Now()
	proxy.SetMode(netem.Up)

	// Wait for messages produced after the link returned: by then the
	// buffer has drained (it drains in order).
	waitFor(t, 2*out+60*time.Second, "telemetry produced after the link returned", func() bool {
		for _, m := range tm.list() {
			ts, _ := time.Parse(time.RFC3339Nano, m.TS)
			if ts.After(restored.Add(time.Second)) {
				return true
			}
		}
		return false
	})
	a.stop(t)
	msgs := tm.list()
	var produced int
	for _, m := range msgs {
		ts, _ := time.Parse(time.RFC3339Nano, m.TS)
		if ts.Before(restored) && ts.After(restored.Add(-out)) {
			produced++
		}
	}
	if produced < int(out/time.Second) {
		t.Fatalf("only %d messages produced during a %s outage arrived", produced, out)
	}
	last := msgs[len(msgs)-1].Seq
	dups, err := checkOrder(msgs, last)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages, seq 1..%d, %d produced during the outage, %d duplicates (QoS 1 redelivery)", len(msgs), last, produced, dups)
	if !strings.Contains(a.logText(), "offline buffer recovered") {
		t.Error("the restarted agent did not recover a non-empty buffer")
	}
}

// TestFullBufferLossIsReported: offline with a small buffer, drop_oldest
// discards the oldest telemetry; after the link returns the gap in seq and
// the status stream's dropped count report the loss, and what is left
// arrives in order.
func TestFullBufferLossIsReported(t *testing.T) {
	t.Parallel()
	pl := startPlatform(t)
	tm := pl.subscribe(t, "oss", "tele/gw-full/#")
	proxy, err := netem.New(pl.addr("mqtt"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	proxy.SetMode(netem.Cut)
	dir := t.TempDir()
	secret := pl.createDevice(t, "gw-full")
	cfg := baseConfig(t, dir, "gw-full", secret, proxy.Addr(), "auto") + `
collectors:
  - {stream: big, interval: 1s, command: {argv: [seq, "1", "150"]}}
  - {stream: big2, interval: 1s, command: {argv: [seq, "1", "150"]}}
status: {interval: 1s}
`
	cfg = strings.Replace(cfg, "buffer:\n", "buffer:\n  max_bytes: 4096\n  segment_bytes: 1024\n  when_full: drop_oldest\n", 1)
	a := startAgent(t, agentConfig(t, dir, cfg))
	waitFor(t, 30*time.Second, "the buffer to overflow", func() bool { return overflowed(dir) >= 3 })
	proxy.SetMode(netem.Up)
	var dropped float64
	waitFor(t, 30*time.Second, "a status message reporting the loss", func() bool {
		for _, m := range tm.list() {
			if m.Topic != "tele/gw-full/agent/status" {
				continue
			}
			var s struct {
				Buffer struct {
					Dropped float64 `json:"dropped"`
				} `json:"buffer"`
			}
			_ = json.Unmarshal(m.Data, &s)
			dropped = max(dropped, s.Buffer.Dropped)
		}
		return dropped > 0
	})
	a.stop(t)
	msgs := tm.list()
	if _, err := checkOrder(msgs, 1); err == nil {
		t.Fatal("no gap in seq although the buffer dropped records")
	}
	var last uint64
	for _, m := range msgs {
		if m.Seq <= last {
			t.Fatalf("out of order: %d after %d", m.Seq, last)
		}
		last = m.Seq
	}
	missing := last - uint64(len(msgs))
	t.Logf("%d received, seq up to %d, %d missing, status reports %v dropped", len(msgs), last, missing, dropped)
	// A status message counts the drops up to when it was taken; every drop
	// is a missing seq.
	if dropped > float64(missing) {
		t.Fatalf("%d missing records, but %v reported dropped", missing, dropped)
	}
}

// overflowed returns the drop count in the agent's buffer state file
// (head 8 bytes, dropped 8 bytes, CRC; big endian).
func overflowed(dir string) uint64 {
	b, err := os.ReadFile(filepath.Join(dir, "buffer", "state"))
	if err != nil || len(b) != 20 {
		return 0
	}
	var dropped uint64
	for _, c := range b[8:16] {
		dropped = dropped<<8 | uint64(c)
	}
	return dropped
}
