package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lastmile-dm/lastmile/agent/backoff"
	"github.com/lastmile-dm/lastmile/agent/collect"
	"github.com/lastmile-dm/lastmile/agent/config"
	"github.com/lastmile-dm/lastmile/agent/conn"
	"github.com/lastmile-dm/lastmile/agent/snmp"
	"github.com/lastmile-dm/lastmile/agent/spool"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// Config configures an Agent.
type Config struct {
	// File is the parsed configuration file.
	File config.Config
	// Version is the agent's version, reported in its status.
	Version string
	// Capabilities are the device-management features (see Capability).
	Capabilities []Capability
	Logger       *slog.Logger
	// Clock drives the reconnect backoff; default the wall clock.
	Clock backoff.Clock
	// Dial replaces the TCP dialer (tests).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// BeforeClose runs when Run is done with the connection and before it
	// closes the offline buffer: what feeds the buffer (a trap listener)
	// stops there, so nothing is appended to a closed buffer.
	BeforeClose func()
}

// CheckAndSetDefaults validates c and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if err := c.File.CheckAndSetDefaults(); err != nil {
		return err
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = backoff.RealClock{}
	}
	return nil
}

// Agent is the running agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	spool   *spool.Spool
	backoff *backoff.Backoff
	jobs    []collect.Job
	started time.Time

	mu       sync.Mutex
	server   config.ServerConfig // may be replaced by SetServer
	protocol conn.Protocol       // learned: 3.1.1 after a fallback
	session  conn.Session
	kick     chan struct{} // Reconnect
	direct   subscriptions // PubSub

	connects  atomic.Int64
	refused   atomic.Int64 // records the broker refused (dropped)
	published atomic.Int64
}

// New opens the offline buffer and prepares the collectors.
func New(cfg Config) (*Agent, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	f := cfg.File
	log := cfg.Logger.With("component", "agent", "device", f.DeviceID)
	b, err := backoff.New(backoff.Config{Min: f.Reconnect.MinDelay, Max: f.Reconnect.MaxDelay,
		Multiplier: f.Reconnect.Multiplier, Jitter: *f.Reconnect.Jitter, Clock: cfg.Clock})
	if err != nil {
		return nil, fmt.Errorf("reconnect: %w", err)
	}
	sp, err := spool.Open(spool.Config{Dir: f.Buffer.Dir, MaxBytes: f.Buffer.MaxBytes, SegmentBytes: f.Buffer.SegmentBytes,
		Policy: spool.Policy(f.Buffer.WhenFull), Sync: spool.Sync(f.Buffer.Fsync), SyncInterval: f.Buffer.FsyncInterval,
		Logger: log.With("component", "buffer")})
	if err != nil {
		return nil, fmt.Errorf("offline buffer: %w", err)
	}
	a := &Agent{cfg: cfg, log: log, spool: sp, backoff: b, started: time.Now(), server: f.Server,
		protocol: conn.Protocol(f.Server.Protocol), kick: make(chan struct{}, 1)}
	if st := sp.Stats(); st.Queued > 0 || st.Dropped > 0 {
		log.Info("offline buffer recovered", "queued", st.Queued, "bytes", st.Bytes, "dropped", st.Dropped)
	}
	for _, c := range f.Collectors {
		j := collect.Job{Stream: c.Stream, Interval: c.Interval}
		switch {
		case c.File != nil:
			j.Collector = &collect.File{Path: c.File.Path, MaxBytes: c.File.MaxBytes}
		case c.Command != nil:
			j.Collector = &collect.Command{Argv: c.Command.Argv, Timeout: c.Command.Timeout, MaxBytes: c.Command.MaxBytes}
		case c.SNMP != nil:
			community, err := readSecret(c.SNMP.Community, c.SNMP.CommunityFile)
			if err != nil {
				_ = sp.Close()
				return nil, fmt.Errorf("collector %s: community_file: %w", c.Stream, err)
			}
			p, err := snmp.New(snmp.Config{Target: c.SNMP.Target, Version: c.SNMP.Version, Community: community,
				OIDs: c.SNMP.OIDs, Timeout: c.SNMP.Timeout, Retries: c.SNMP.Retries})
			if err != nil {
				_ = sp.Close()
				return nil, fmt.Errorf("collector %s: %w", c.Stream, err)
			}
			j.Collector = &collect.SNMP{Poller: p}
		}
		a.jobs = append(a.jobs, j)
	}
	if f.Status.Interval > 0 {
		a.jobs = append(a.jobs, collect.Job{Stream: f.Status.Stream, Interval: f.Status.Interval, Collector: statusCollector{a}})
	}
	return a, nil
}

// Run collects and publishes until ctx ends, then closes the buffer.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		collect.Run(ctx, a.jobs, a.enqueue, a.log)
	}()
	a.log.Info("agent started", "version", a.cfg.Version, "server", a.serverConfig().Address, "collectors", len(a.jobs))
	a.connectLoop(ctx)
	wg.Wait()
	if a.cfg.BeforeClose != nil {
		a.cfg.BeforeClose()
	}
	if err := a.spool.Close(); err != nil {
		return fmt.Errorf("close offline buffer: %w", err)
	}
	a.log.Info("agent stopped")
	return nil
}

// Enqueue adds a telemetry message for stream to the offline buffer, for
// code other than the collectors (e.g. a capability reporting results).
func (a *Agent) Enqueue(stream string, data any, ts time.Time) error {
	body, err := json.Marshal(struct {
		TS   string `json:"ts"`
		Data any    `json:"data"`
	}{ts.UTC().Format(time.RFC3339Nano), data})
	if err != nil {
		return fmt.Errorf("encode telemetry: %w", err)
	}
	_, err = a.spool.Append(topic.Telemetry(a.cfg.File.DeviceID, stream), body, ts)
	return err
}

// Buffer appends a JSON object body for topic (in the device's namespace)
// to the offline buffer, like telemetry: kept across outages and restarts,
// published in order at QoS 1 with its "seq". For events the device
// originates, such as SNMP traps.
func (a *Agent) Buffer(topic string, body []byte, ts time.Time) error {
	_, err := a.spool.Append(topic, body, ts)
	return err
}

// enqueue is the collectors' sink.
func (a *Agent) enqueue(stream string, s collect.Sample) {
	env := struct {
		TS        string `json:"ts"`
		Data      any    `json:"data,omitempty"`
		Truncated bool   `json:"truncated,omitempty"`
		Error     string `json:"error,omitempty"`
	}{TS: s.Time.UTC().Format(time.RFC3339Nano), Data: s.Data, Truncated: s.Truncated}
	if s.Err != nil {
		env.Error = s.Err.Error()
	}
	body, err := json.Marshal(env)
	if err != nil {
		a.log.Error("encode telemetry", "stream", stream, "err", err)
		return
	}
	if _, err := a.spool.Append(topic.Telemetry(a.cfg.File.DeviceID, stream), body, s.Time); err != nil {
		if errors.Is(err, spool.ErrFull) {
			a.log.Debug("offline buffer full: sample dropped", "stream", stream)
			return
		}
		a.log.Warn("offline buffer", "stream", stream, "err", err)
	}
}

// envelope inserts the record's sequence number into its JSON body:
// {"seq":N,"ts":...,"data":...}.
func envelope(r spool.Record) []byte {
	if len(r.Payload) < 2 || r.Payload[0] != '{' {
		return r.Payload
	}
	out := make([]byte, 0, len(r.Payload)+24)
	out = append(out, `{"seq":`...)
	out = strconv.AppendUint(out, r.Seq, 10)
	if r.Payload[1] != '}' {
		out = append(out, ',')
	}
	return append(out, r.Payload[1:]...)
}

// SetServer replaces the connection settings used from the next connect on
// (for a config-apply capability); Reconnect makes that happen now.
func (a *Agent) SetServer(s config.ServerConfig) {
	a.mu.Lock()
	a.server = s
	a.protocol = conn.Protocol(s.Protocol)
	a.mu.Unlock()
}

// Server returns the connection settings in use.
func (a *Agent) Server() config.ServerConfig { return a.serverConfig() }

// Reconnect closes the current session; the loop connects again at once.
func (a *Agent) Reconnect() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *Agent) serverConfig() config.ServerConfig {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.server
}

// connConfig builds the session configuration from the current settings.
func (a *Agent) connConfig() (conn.Config, error) {
	a.mu.Lock()
	s, proto := a.server, a.protocol
	a.mu.Unlock()
	f := a.cfg.File
	pw, err := f.Password()
	if err != nil {
		return conn.Config{}, err
	}
	c := conn.Config{Address: s.Address, ClientID: f.DeviceID, Password: pw, Keepalive: s.Keepalive,
		ConnectTimeout: s.ConnectTimeout, Protocol: proto, Dial: a.cfg.Dial, Logger: a.log}
	if pw != "" {
		c.Username = f.DeviceID
	}
	if s.TLS.Enabled {
		var t *tls.Config
		t, err = conn.LoadTLS(conn.TLSFiles{CAFile: s.TLS.CAFile, ServerName: s.TLS.ServerName,
			CertFile: f.Credentials.CertFile, KeyFile: f.Credentials.KeyFile}, s.Address)
		if err != nil {
			return conn.Config{}, err
		}
		c.TLS = t
	}
	return c, nil
}

// readSecret returns value, or the first line of file.
func readSecret(value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, "\r"), nil
}
