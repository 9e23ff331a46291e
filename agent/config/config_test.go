package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

const minimal = `
device_id: cpe-1
server: {address: "127.0.0.1:1883"}
credentials: {password: s3cret}
`

func TestExampleIsValid(t *testing.T) {
	t.Parallel()
	cfg, err := Load("../../deployments/lastmile-agent.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DeviceID != "cpe-0001" || len(cfg.Collectors) != 3 || cfg.Collectors[2].SNMP == nil || len(cfg.Commands.Exec) != 2 {
		t.Fatalf("example parsed to %+v", cfg)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Keepalive != time.Minute || cfg.Server.Protocol != "auto" || cfg.Reconnect.MinDelay != time.Second ||
		*cfg.Reconnect.Jitter != 0.5 || cfg.Buffer.WhenFull != "drop_oldest" || cfg.Buffer.Fsync != "always" ||
		cfg.Status.Stream != "agent/status" || cfg.Commands.Reboot.Argv[0] != "/sbin/reboot" {
		t.Fatalf("defaults: %+v", cfg)
	}
	// An explicit jitter of 0 is kept, not replaced by the default.
	cfg, err = Parse([]byte(minimal + "reconnect: {jitter: 0}\n"))
	if err != nil || *cfg.Reconnect.Jitter != 0 {
		t.Fatalf("jitter 0: %v %v", cfg.Reconnect.Jitter, err)
	}
}

// badConfigs: each must fail with an error naming the key.
var badConfigs = []struct{ yaml, key string }{
	{"", "device_id"},
	{"server: {address: x:1}\ncredentials: {password: p}\n", "device_id"},
	{"device_id: a/b\nserver: {address: x:1}\ncredentials: {password: p}\n", "device_id"},
	{"device_id: d\ncredentials: {password: p}\n", "server.address"},
	{"device_id: d\nserver: {address: nohost}\ncredentials: {password: p}\n", "server.address"},
	{"device_id: d\nserver: {address: x:1}\ncredentials:\n  password: p\n  extra_key: 1\n", "credentials.extra_key"},
	{minimal + "reconect: {}\n", "reconect"},
	{minimal + "reconnect: {min_delay: 1m, max_delay: 1s}\n", "reconnect.max_delay"},
	{minimal + "reconnect: {jitter: 2}\n", "reconnect.jitter"},
	{minimal + "reconnect:\n  min_delay: soon\n", "reconnect.min_delay"},
	{"device_id: d\nserver: {address: x:1}\n", "credentials"},
	{"device_id: d\nserver: {address: x:1, tls: {enabled: true}}\ncredentials: {password: p}\n", "server.tls.ca_file"},
	{"device_id: d\nserver: {address: x:1}\ncredentials: {cert_file: c, key_file: k}\n", "credentials.cert_file"},
	{"device_id: d\nserver: {address: x:1, protocol: 4}\ncredentials: {password: p}\n", "server.protocol"},
	{minimal + "buffer: {when_full: drop_random}\n", "buffer.when_full"},
	{minimal + "buffer: {max_bytes: 10}\n", "buffer.max_bytes"},
	{minimal + "buffer: {fsync: sometimes}\n", "buffer.fsync"},
	{minimal + "collectors:\n  - {stream: a, interval: 1m}\n", "collectors[0]"},
	{minimal + "collectors:\n  - {stream: a/#, interval: 1m, file: {path: /x}}\n", "collectors[0].stream"},
	{minimal + "collectors:\n  - {stream: a, file: {path: /x}}\n", "collectors[0].interval"},
	{minimal + "collectors:\n  - {stream: a, interval: 1m, file: {path: /x}}\n  - {stream: a, interval: 1m, file: {path: /y}}\n", "collectors[1].stream"},
	{minimal + "collectors:\n  - {stream: a, interval: 1m, file: {path: /x}, command: {argv: [x]}}\n", "collectors[0]"},
	{minimal + "collectors:\n  - {stream: a, interval: 1m, command: {argv: []}}\n", "collectors[0].command.argv"},
	{minimal + "collectors:\n  - {stream: a, interval: 1m, snmp: {target: h, community: c, oids: [sysUpTime.0]}}\n", "collectors[0].snmp.oids[0]"},
	{minimal + "collectors:\n  - {stream: a, interval: 1m, snmp: {target: h, oids: [1.3.6]}}\n", "collectors[0].snmp.community"},
	{minimal + "collectors:\n  - {stream: a, interval: 1m, snmp: {target: h, community: c, version: 3, oids: [1.3.6]}}\n", "collectors[0].snmp.version"},
	{minimal + "collectors:\n  - stream: a\n    interval: 1m\n    file:\n      pth: /x\n", "collectors[0].file.pth"},
	{minimal + "commands: {exec: [{name: a, argv: [x]}, {name: a, argv: [y]}]}\n", "commands.exec[1].name"},
	{minimal + "commands: {exec: [{name: a}]}\n", "commands.exec[0].argv"},
	{minimal + "commands: {reboot: {argv: []}}\n", "commands.reboot.argv"},
	{minimal + "log: {level: loud}\n", "log.level"},
	{minimal + "state: {handlers: [{prefix: wifi., argv: [a]}, {prefix: wifi., argv: [b]}]}\n", "state.handlers[1].prefix"},
	{minimal + "state: {handlers: [{prefix: agent.log_level, argv: [a]}]}\n", "state.handlers[0].prefix"},
	{minimal + "state: {handlers: [{prefix: wifi.}]}\n", "state.handlers[0].argv"},
	{minimal + "---\nx: 1\n", "more than one"},
	{minimal + "tunnel: {allow: [\"127.0.0.1:22\"]}\n", "tunnel.trusted_keys"},
	{minimal + "tunnel: {trusted_keys: [nope]}\n", "tunnel.trusted_keys[0]"},
	{minimal + "tunnel: {trusted_keys: [\"2w5rvhg83ZO46tTIEjJSAxPl/DA+89nCPN4yJZQdsBg=\"], allow: [localhost]}\n", "tunnel.allow[0]"},
	{minimal + "snmp_proxy: {target: 127.0.0.1}\n", "snmp_proxy.community"},
	{minimal + "snmp_proxy: {target: h, community: c, community_file: f}\n", "snmp_proxy.community_file"},
	{minimal + "snmp_proxy: {trap_listen: 162}\n", "snmp_proxy.trap_listen"},
	{minimal + "snmp_proxy: {retries: -1}\n", "snmp_proxy.retries"},
}

func TestBadConfigsNameTheKey(t *testing.T) {
	t.Parallel()
	for _, c := range badConfigs {
		_, err := Parse([]byte(c.yaml))
		if err == nil {
			t.Errorf("accepted:\n%s", c.yaml)
			continue
		}
		if !strings.Contains(err.Error(), c.key) {
			t.Errorf("error %q does not name %q for:\n%s", err, c.key, c.yaml)
		}
	}
	_, err := Parse([]byte(minimal + "reconect: {}\n"))
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "line 5") {
		t.Errorf("unknown key: %v, want ErrUnknownKey with its line", err)
	}
}

func TestPasswordFile(t *testing.T) {
	t.Parallel()
	p := t.TempDir() + "/secret"
	if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte("device_id: d\nserver: {address: x:1}\ncredentials: {password_file: " + p + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if pw, err := cfg.Password(); err != nil || pw != "s3cret" {
		t.Fatalf("password %q %v", pw, err)
	}
}

// FuzzParse: no input makes the parser panic or accept a configuration
// that fails its own checks.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	for _, c := range badConfigs {
		f.Add([]byte(c.yaml))
	}
	if b, err := os.ReadFile("../../deployments/lastmile-agent.example.yaml"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := Parse(b)
		if err != nil {
			return
		}
		if err := cfg.CheckAndSetDefaults(); err != nil {
			t.Fatalf("accepted configuration fails a second check: %v", err)
		}
	})
}
