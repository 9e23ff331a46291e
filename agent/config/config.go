// Package config is the agent's YAML configuration file: what it may
// contain, its defaults, and the checks that turn every mistake into an
// error naming the key (and its line, for keys the file does not know).
//
// The reference with every key is deployments/lastmile-agent.example.yaml.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lastmile-dm/lastmile/dm/topic"
)

// Config is the whole agent configuration.
type Config struct {
	// DeviceID is the device's ID on the platform: MQTT client ID and user
	// name, and the second level of its topics.
	DeviceID    string            `yaml:"device_id"`
	Server      ServerConfig      `yaml:"server"`
	Credentials CredentialsConfig `yaml:"credentials"`
	Reconnect   ReconnectConfig   `yaml:"reconnect"`
	Buffer      BufferConfig      `yaml:"buffer"`
	Collectors  []CollectorConfig `yaml:"collectors"`
	Status      StatusConfig      `yaml:"status"`
	Commands    CommandsConfig    `yaml:"commands"`
	State       StateConfig       `yaml:"state"`
	ConfigPush  ConfigPushConfig  `yaml:"config_push"`
	Tunnel      TunnelConfig      `yaml:"tunnel"`
	SNMPProxy   SNMPProxyConfig   `yaml:"snmp_proxy"`
	Log         LogConfig         `yaml:"log"`
}

// ServerConfig says where the platform is.
type ServerConfig struct {
	// Address is host:port of the platform's MQTT listener.
	Address string `yaml:"address"`
	// Protocol is auto (MQTT 5, falling back to 3.1.1), 5 or 3.1.1.
	Protocol       string        `yaml:"protocol"`
	Keepalive      time.Duration `yaml:"keepalive"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	TLS            TLSConfig     `yaml:"tls"`
}

// TLSConfig pins the platform's CA.
type TLSConfig struct {
	Enabled bool `yaml:"enabled"`
	// CAFile is the only CA the server certificate may chain to.
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
}

// CredentialsConfig is the device's password, or its client certificate
// (with TLS), or both.
type CredentialsConfig struct {
	Password string `yaml:"password"`
	// PasswordFile holds the password (preferred: keeps it out of a file
	// that is often world-readable).
	PasswordFile string `yaml:"password_file"`
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
}

// ReconnectConfig bounds the jittered exponential backoff.
type ReconnectConfig struct {
	MinDelay   time.Duration `yaml:"min_delay"`
	MaxDelay   time.Duration `yaml:"max_delay"`
	Multiplier float64       `yaml:"multiplier"`
	// Jitter is the random fraction of each delay, 0..1.
	Jitter *float64 `yaml:"jitter"`
}

// BufferConfig is the offline buffer on disk.
type BufferConfig struct {
	Dir          string `yaml:"dir"`
	MaxBytes     int64  `yaml:"max_bytes"`
	SegmentBytes int64  `yaml:"segment_bytes"`
	// WhenFull is drop_oldest or drop_newest.
	WhenFull string `yaml:"when_full"`
	// Fsync is always, interval or never.
	Fsync         string        `yaml:"fsync"`
	FsyncInterval time.Duration `yaml:"fsync_interval"`
}

// CollectorConfig is one periodic telemetry source; exactly one of File,
// Command and SNMP is set.
type CollectorConfig struct {
	// Stream is the telemetry stream: the message goes to
	// tele/{device_id}/{stream}.
	Stream   string        `yaml:"stream"`
	Interval time.Duration `yaml:"interval"`
	File     *FileSource   `yaml:"file"`
	Command  *CommandSrc   `yaml:"command"`
	SNMP     *SNMPSource   `yaml:"snmp"`
}

// FileSource reads a file.
type FileSource struct {
	Path     string `yaml:"path"`
	MaxBytes int    `yaml:"max_bytes"`
}

// CommandSrc runs a program (no shell) and takes its standard output.
type CommandSrc struct {
	Argv     []string      `yaml:"argv"`
	Timeout  time.Duration `yaml:"timeout"`
	MaxBytes int           `yaml:"max_bytes"`
}

// SNMPSource polls OIDs of an SNMP agent (the gateway's own snmpd or a LAN
// device).
type SNMPSource struct {
	// Target is host:port; port default 161.
	Target string `yaml:"target"`
	// Version is 1 or 2c.
	Version       string        `yaml:"version"`
	Community     string        `yaml:"community"`
	CommunityFile string        `yaml:"community_file"`
	OIDs          []string      `yaml:"oids"`
	Timeout       time.Duration `yaml:"timeout"`
	Retries       int           `yaml:"retries"`
}

// StatusConfig is the agent's own telemetry: buffer fill and loss, uptime.
type StatusConfig struct {
	// Stream default "agent/status"; Interval default 5m; 0 keeps default,
	// a negative interval switches it off.
	Stream   string        `yaml:"stream"`
	Interval time.Duration `yaml:"interval"`
}

// CommandsConfig configures the built-in commands.
type CommandsConfig struct {
	Reboot RebootConfig `yaml:"reboot"`
	Ping   PingConfig   `yaml:"ping"`
	// Exec lists the only programs the exec command may run.
	Exec []ExecConfig `yaml:"exec"`
}

// RebootConfig is how the device reboots.
type RebootConfig struct {
	// Argv default ["/sbin/reboot"]; empty list disables the command.
	Argv     []string `yaml:"argv"`
	Disabled bool     `yaml:"disabled"`
	// Delay lets the answer reach the platform before the reboot. Default 2s.
	Delay time.Duration `yaml:"delay"`
}

// PingConfig configures the ping command.
type PingConfig struct {
	// Program default "ping".
	Program  string `yaml:"program"`
	MaxCount int    `yaml:"max_count"`
	Disabled bool   `yaml:"disabled"`
}

// ExecConfig is one allow-listed program.
type ExecConfig struct {
	Name string   `yaml:"name"`
	Argv []string `yaml:"argv"`
	// AllowArgs lets a request append arguments to Argv.
	AllowArgs bool          `yaml:"allow_args"`
	Timeout   time.Duration `yaml:"timeout"`
	MaxBytes  int           `yaml:"max_bytes"`
}

// StateConfig says where the reported state comes from and how desired
// changes are applied.
type StateConfig struct {
	// FirmwareVersionFile holds the firmware version (first line).
	FirmwareVersionFile string `yaml:"firmware_version_file"`
	// Handlers apply desired keys: the longest matching prefix wins.
	Handlers []StateHandlerConfig `yaml:"handlers"`
}

// StateHandlerConfig runs a program for desired keys under a prefix: the
// key is its last argument, the JSON value its stdin, exit 0 means applied.
type StateHandlerConfig struct {
	Prefix  string        `yaml:"prefix"`
	Argv    []string      `yaml:"argv"`
	Timeout time.Duration `yaml:"timeout"`
}

// BuiltinLogLevel is the desired key the agent applies itself: its log
// level (debug, info, warn, error).
const BuiltinLogLevel = "agent.log_level"

// ConfigPushConfig configures the config-apply capability
// (docs/config-push.md): where it keeps documents and its pending state,
// how long it waits for the platform's confirmation before rolling back,
// and the program that applies documents.
type ConfigPushConfig struct {
	// Disabled turns config push off.
	Disabled bool `yaml:"disabled"`
	// Dir holds the current and pending documents and the state that
	// survives a restart; default "config" beside buffer.dir.
	Dir string `yaml:"dir"`
	// ConfirmTimeout is how long an applied document waits for the
	// platform's confirmation before it is rolled back.
	ConfirmTimeout time.Duration `yaml:"confirm_timeout"`
	// Handler applies a document: the document's file is its last
	// argument, LASTMILE_CONFIG_ACTION is apply or rollback.
	Handler ConfigHandlerConfig `yaml:"handler"`
}

// ConfigHandlerConfig is the program that applies config documents.
type ConfigHandlerConfig struct {
	Argv    []string      `yaml:"argv"`
	Timeout time.Duration `yaml:"timeout"`
}

// LogConfig configures logging.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// ErrUnknownKey is returned for a key the configuration does not have.
var ErrUnknownKey = errors.New("unknown configuration key")

// Load reads, parses, defaults and validates the file at path.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read configuration: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

var (
	fieldNotFound = regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`)
	lineRe        = regexp.MustCompile(`line (\d+): `)
)

// Parse decodes YAML strictly, fills defaults and validates.
func Parse(data []byte) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, errors.New("the configuration is empty: device_id and server.address are required")
		}
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return Config{}, fmt.Errorf("parse configuration: %w", err)
		}
		paths := keyLines(data)
		var msgs []string
		unknown := false
		for _, m := range te.Errors {
			if sm := fieldNotFound.FindStringSubmatch(m); sm != nil {
				unknown = true
				m = fmt.Sprintf("line %s: unknown key %q", sm[1], sm[2])
			}
			if sm := lineRe.FindStringSubmatch(m); sm != nil {
				if n, err := strconv.Atoi(sm[1]); err == nil && paths[n] != "" {
					m += " (key " + paths[n] + ")"
				}
			}
			msgs = append(msgs, m)
		}
		if unknown {
			return Config{}, fmt.Errorf("%w: %s", ErrUnknownKey, strings.Join(msgs, "; "))
		}
		return Config{}, fmt.Errorf("parse configuration: %s", strings.Join(msgs, "; "))
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("parse configuration: more than one YAML document")
	}
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// keyLines maps a line to the dotted key path written on it.
func keyLines(data []byte) map[int]string {
	out := map[int]string{}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return out
	}
	var walk func(n *yaml.Node, path string, depth int)
	walk = func(n *yaml.Node, path string, depth int) {
		if depth > 32 {
			return
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path, depth+1)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i), depth+1)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if _, taken := out[k.Line]; !taken {
					out[k.Line] = p
				}
				if v.Kind == yaml.ScalarNode && v.Line != k.Line {
					out[v.Line] = p
				}
				walk(v, p, depth+1)
			}
		}
	}
	walk(&root, "", 0)
	return out
}

// keyError names the key a value is wrong for.
func keyError(key, format string, args ...any) error {
	return fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...))
}

// CheckAndSetDefaults fills defaults and validates; every error names its key.
func (c *Config) CheckAndSetDefaults() error {
	if c.DeviceID == "" {
		return keyError("device_id", "required")
	}
	if !topic.ValidDeviceID(c.DeviceID) {
		return keyError("device_id", "%q is not a device ID (1-128 of A-Z a-z 0-9 . _ -)", c.DeviceID)
	}
	if err := c.Server.check(); err != nil {
		return err
	}
	if err := c.checkCredentials(); err != nil {
		return err
	}
	if err := c.Reconnect.check(); err != nil {
		return err
	}
	if err := c.Buffer.check(); err != nil {
		return err
	}
	streams := map[string]bool{}
	for i := range c.Collectors {
		if err := c.Collectors[i].check(fmt.Sprintf("collectors[%d]", i)); err != nil {
			return err
		}
		if streams[c.Collectors[i].Stream] {
			return keyError(fmt.Sprintf("collectors[%d].stream", i), "stream %q is used twice", c.Collectors[i].Stream)
		}
		streams[c.Collectors[i].Stream] = true
	}
	if c.Status.Stream == "" {
		c.Status.Stream = "agent/status"
	}
	if !validStream(c.Status.Stream) {
		return keyError("status.stream", "%q is not a topic suffix", c.Status.Stream)
	}
	if streams[c.Status.Stream] {
		return keyError("status.stream", "%q is also a collector's stream", c.Status.Stream)
	}
	if c.Status.Interval == 0 {
		c.Status.Interval = 5 * time.Minute
	}
	if err := c.Commands.check(); err != nil {
		return err
	}
	prefixes := map[string]bool{BuiltinLogLevel: true}
	for i := range c.State.Handlers {
		h := &c.State.Handlers[i]
		key := fmt.Sprintf("state.handlers[%d]", i)
		if h.Prefix == "" {
			return keyError(key+".prefix", "required (e.g. \"wifi.\")")
		}
		if prefixes[h.Prefix] {
			return keyError(key+".prefix", "%q is taken (listed twice, or built in)", h.Prefix)
		}
		prefixes[h.Prefix] = true
		if len(h.Argv) == 0 || h.Argv[0] == "" {
			return keyError(key+".argv", "required")
		}
		if h.Timeout == 0 {
			h.Timeout = time.Minute
		}
		if h.Timeout < 0 {
			return keyError(key+".timeout", "negative")
		}
	}
	if err := c.Tunnel.check(); err != nil {
		return err
	}
	if err := c.SNMPProxy.check(); err != nil {
		return err
	}
	if err := c.ConfigPush.check(c.Buffer.Dir); err != nil {
		return err
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return keyError("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return keyError("log.format", "%q is not text or json", c.Log.Format)
	}
	return nil
}

func (c *ConfigPushConfig) check(bufferDir string) error {
	if c.Dir == "" {
		// Beside the buffer: /var/lib/lastmile-agent/config by default.
		c.Dir = filepath.Join(filepath.Dir(filepath.Clean(bufferDir)), "config")
	}
	if c.ConfirmTimeout == 0 {
		c.ConfirmTimeout = 120 * time.Second
	}
	if c.ConfirmTimeout < time.Second {
		return keyError("config_push.confirm_timeout", "%s is shorter than 1s", c.ConfirmTimeout)
	}
	if len(c.Handler.Argv) > 0 && c.Handler.Argv[0] == "" {
		return keyError("config_push.handler.argv", "the program is empty")
	}
	if c.Handler.Timeout == 0 {
		c.Handler.Timeout = time.Minute
	}
	if c.Handler.Timeout < 0 {
		return keyError("config_push.handler.timeout", "negative")
	}
	return nil
}

func (s *ServerConfig) check() error {
	if s.Address == "" {
		return keyError("server.address", "required (host:port of the platform's MQTT listener)")
	}
	if _, port, err := net.SplitHostPort(s.Address); err != nil || port == "" {
		return keyError("server.address", "%q is not host:port", s.Address)
	}
	switch s.Protocol {
	case "":
		s.Protocol = "auto"
	case "auto", "5", "3.1.1":
	default:
		return keyError("server.protocol", "%q is not auto, 5 or 3.1.1", s.Protocol)
	}
	if s.Keepalive == 0 {
		s.Keepalive = 60 * time.Second
	}
	if s.Keepalive < time.Second || s.Keepalive > 65535*time.Second {
		return keyError("server.keepalive", "%s is outside 1s..18h12m15s", s.Keepalive)
	}
	if s.ConnectTimeout == 0 {
		s.ConnectTimeout = 15 * time.Second
	}
	if s.ConnectTimeout < 0 {
		return keyError("server.connect_timeout", "negative")
	}
	if s.TLS.Enabled && s.TLS.CAFile == "" {
		return keyError("server.tls.ca_file", "required with TLS: the agent trusts only a pinned CA")
	}
	if !s.TLS.Enabled && (s.TLS.CAFile != "" || s.TLS.ServerName != "") {
		return keyError("server.tls.enabled", "false, but server.tls has settings: set enabled: true")
	}
	return nil
}

func (c *Config) checkCredentials() error {
	cr := &c.Credentials
	if cr.Password != "" && cr.PasswordFile != "" {
		return keyError("credentials.password_file", "set either password or password_file, not both")
	}
	if (cr.CertFile == "") != (cr.KeyFile == "") {
		return keyError("credentials.key_file", "cert_file and key_file go together")
	}
	if cr.CertFile != "" && !c.Server.TLS.Enabled {
		return keyError("credentials.cert_file", "a client certificate needs server.tls.enabled: true")
	}
	if cr.Password == "" && cr.PasswordFile == "" && cr.CertFile == "" {
		return keyError("credentials", "set password_file (or password) or cert_file and key_file")
	}
	return nil
}

func (r *ReconnectConfig) check() error {
	if r.MinDelay == 0 {
		r.MinDelay = time.Second
	}
	if r.MaxDelay == 0 {
		r.MaxDelay = 2 * time.Minute
	}
	if r.Multiplier == 0 {
		r.Multiplier = 2
	}
	if r.Jitter == nil {
		j := 0.5
		r.Jitter = &j
	}
	switch {
	case r.MinDelay < 0:
		return keyError("reconnect.min_delay", "negative")
	case r.MaxDelay < r.MinDelay:
		return keyError("reconnect.max_delay", "%s is below min_delay %s", r.MaxDelay, r.MinDelay)
	case r.Multiplier < 1:
		return keyError("reconnect.multiplier", "%v is below 1", r.Multiplier)
	case *r.Jitter < 0 || *r.Jitter > 1:
		return keyError("reconnect.jitter", "%v is outside 0..1", *r.Jitter)
	}
	return nil
}

func (b *BufferConfig) check() error {
	if b.Dir == "" {
		b.Dir = "/var/lib/lastmile-agent/buffer"
	}
	if b.MaxBytes == 0 {
		b.MaxBytes = 16 << 20
	}
	if b.MaxBytes < 4096 {
		return keyError("buffer.max_bytes", "%d is below 4096", b.MaxBytes)
	}
	if b.SegmentBytes < 0 || (b.SegmentBytes > 0 && b.SegmentBytes < 1024) {
		return keyError("buffer.segment_bytes", "%d is below 1024", b.SegmentBytes)
	}
	switch b.WhenFull {
	case "":
		b.WhenFull = "drop_oldest"
	case "drop_oldest", "drop_newest":
	default:
		return keyError("buffer.when_full", "%q is not drop_oldest or drop_newest", b.WhenFull)
	}
	switch b.Fsync {
	case "":
		b.Fsync = "always"
	case "always", "interval", "never":
	default:
		return keyError("buffer.fsync", "%q is not always, interval or never", b.Fsync)
	}
	if b.FsyncInterval < 0 {
		return keyError("buffer.fsync_interval", "negative")
	}
	return nil
}

// validStream reports whether s can follow tele/{id}/.
func validStream(s string) bool {
	return s != "" && topic.ValidTopic(s) && !strings.HasPrefix(s, "/") && !strings.HasSuffix(s, "/")
}

func (c *CollectorConfig) check(key string) error {
	if !validStream(c.Stream) {
		return keyError(key+".stream", "%q is not a telemetry stream (levels separated by /, no + or #)", c.Stream)
	}
	if c.Interval == 0 {
		return keyError(key+".interval", "required")
	}
	if c.Interval < time.Second {
		return keyError(key+".interval", "%s is below 1s", c.Interval)
	}
	n := 0
	if c.File != nil {
		n++
		if c.File.Path == "" {
			return keyError(key+".file.path", "required")
		}
		if c.File.MaxBytes == 0 {
			c.File.MaxBytes = 64 << 10
		}
		if c.File.MaxBytes < 0 {
			return keyError(key+".file.max_bytes", "negative")
		}
	}
	if c.Command != nil {
		n++
		if len(c.Command.Argv) == 0 || c.Command.Argv[0] == "" {
			return keyError(key+".command.argv", "required: the program and its arguments")
		}
		if c.Command.Timeout == 0 {
			c.Command.Timeout = min(c.Interval, 30*time.Second)
		}
		if c.Command.Timeout < 0 {
			return keyError(key+".command.timeout", "negative")
		}
		if c.Command.MaxBytes == 0 {
			c.Command.MaxBytes = 64 << 10
		}
	}
	if c.SNMP != nil {
		n++
		if err := c.SNMP.check(key + ".snmp"); err != nil {
			return err
		}
	}
	if n != 1 {
		return keyError(key, "set exactly one of file, command or snmp (found %d)", n)
	}
	return nil
}

func (s *SNMPSource) check(key string) error {
	if s.Target == "" {
		return keyError(key+".target", "required")
	}
	if _, _, err := net.SplitHostPort(s.Target); err != nil {
		s.Target += ":161"
	}
	switch s.Version {
	case "":
		s.Version = "2c"
	case "1", "2c":
	default:
		return keyError(key+".version", "%q is not 1 or 2c", s.Version)
	}
	if s.Community != "" && s.CommunityFile != "" {
		return keyError(key+".community_file", "set either community or community_file, not both")
	}
	if s.Community == "" && s.CommunityFile == "" {
		return keyError(key+".community", "required (or community_file)")
	}
	if len(s.OIDs) == 0 {
		return keyError(key+".oids", "required: numeric OIDs such as 1.3.6.1.2.1.1.3.0")
	}
	for i, o := range s.OIDs {
		if !validOID(o) {
			return keyError(fmt.Sprintf("%s.oids[%d]", key, i), "%q is not a numeric OID", o)
		}
	}
	if s.Timeout == 0 {
		s.Timeout = 5 * time.Second
	}
	if s.Timeout < 0 || s.Retries < 0 {
		return keyError(key+".timeout", "negative timeout or retries")
	}
	return nil
}

// validOID accepts dotted decimal, with or without a leading dot.
func validOID(s string) bool {
	s = strings.TrimPrefix(s, ".")
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 128 {
		return false
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 32); err != nil {
			return false
		}
	}
	return true
}

func (c *CommandsConfig) check() error {
	if c.Reboot.Argv == nil {
		c.Reboot.Argv = []string{"/sbin/reboot"}
	}
	if !c.Reboot.Disabled && (len(c.Reboot.Argv) == 0 || c.Reboot.Argv[0] == "") {
		return keyError("commands.reboot.argv", "empty: set disabled: true to switch reboot off")
	}
	if c.Reboot.Delay == 0 {
		c.Reboot.Delay = 2 * time.Second
	}
	if c.Ping.Program == "" {
		c.Ping.Program = "ping"
	}
	if c.Ping.MaxCount == 0 {
		c.Ping.MaxCount = 10
	}
	if c.Ping.MaxCount < 0 {
		return keyError("commands.ping.max_count", "negative")
	}
	names := map[string]bool{}
	for i := range c.Exec {
		e := &c.Exec[i]
		key := fmt.Sprintf("commands.exec[%d]", i)
		if e.Name == "" {
			return keyError(key+".name", "required")
		}
		if names[e.Name] {
			return keyError(key+".name", "%q is listed twice", e.Name)
		}
		names[e.Name] = true
		if len(e.Argv) == 0 || e.Argv[0] == "" {
			return keyError(key+".argv", "required")
		}
		if e.Timeout == 0 {
			e.Timeout = 30 * time.Second
		}
		if e.Timeout < 0 {
			return keyError(key+".timeout", "negative")
		}
		if e.MaxBytes == 0 {
			e.MaxBytes = 64 << 10
		}
	}
	return nil
}

// Password returns the configured password, reading password_file.
func (c *Config) Password() (string, error) {
	if c.Credentials.PasswordFile == "" {
		return c.Credentials.Password, nil
	}
	b, err := os.ReadFile(c.Credentials.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("credentials.password_file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n") // the first line: editors add a newline
	return strings.TrimRight(line, "\r"), nil
}
