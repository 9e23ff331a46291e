// Package executor is the agent side of the SNMP relay: it runs the
// platform's SNMP requests against the device's configured SNMP target with
// gosnmp and publishes the answers, and receives the traps sent to the
// device, handing each to a sink (the agent's offline buffer). It talks
// MQTT only through tunnel.PubSub.
package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/lastmile-dm/lastmile/dm/topic"
	"github.com/lastmile-dm/lastmile/tunnel"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay"
)

// Defaults for Config.
const (
	DefaultWorkers = 4
	DefaultQueue   = 64
	DefaultTimeout = 2 * time.Second
)

// Config configures an Executor.
type Config struct {
	DeviceID string        // required
	PubSub   tunnel.PubSub // required: the agent's MQTT connection
	// Target is host:port of the SNMP agent requests run against.
	Target string
	// Community reads; WriteCommunity sets (empty: SET is answered
	// noAccess without asking the target).
	Community, WriteCommunity string
	Timeout                   time.Duration // per attempt; default DefaultTimeout
	Retries                   int
	// Workers run requests in parallel, each with its own socket; Queue
	// bounds the requests waiting (more are dropped: the OSS times out,
	// as with an overloaded agent).
	Workers, Queue int
	Logger         *slog.Logger
}

// CheckAndSetDefaults validates c and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	switch {
	case !topic.ValidDeviceID(c.DeviceID):
		return fmt.Errorf("snmp executor: invalid device ID %q", c.DeviceID)
	case c.PubSub == nil:
		return errors.New("snmp executor: PubSub is required")
	case c.Community == "":
		return errors.New("snmp executor: Community is required")
	}
	if _, _, err := splitTarget(c.Target); err != nil {
		return fmt.Errorf("snmp executor: target %q: %w", c.Target, err)
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Retries < 0 {
		return errors.New("snmp executor: negative Retries")
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.Queue <= 0 {
		c.Queue = DefaultQueue
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func splitTarget(t string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(t)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || host == "" {
		return "", 0, errors.New("want host:port")
	}
	return host, uint16(p), nil
}

// Executor runs relayed SNMP requests. Safe for concurrent use.
type Executor struct {
	cfg   Config
	log   *slog.Logger
	queue chan snmprelay.Request
	wg    sync.WaitGroup

	mu     sync.Mutex
	cancel func()
	closed bool
	done   chan struct{}
}

// New returns an Executor; Start subscribes it.
func New(cfg Config) (*Executor, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Executor{cfg: cfg, log: cfg.Logger.With("component", "snmp-executor", "device", cfg.DeviceID),
		queue: make(chan snmprelay.Request, cfg.Queue), done: make(chan struct{})}, nil
}

// Start starts the workers and subscribes to the device's request topic.
func (e *Executor) Start() error {
	for range e.cfg.Workers {
		e.wg.Add(1)
		go e.work()
	}
	cancel, err := e.cfg.PubSub.Subscribe(topic.SNMPRequestTopic(e.cfg.DeviceID), 0, e.receive)
	if err != nil {
		_ = e.Close()
		return fmt.Errorf("snmp executor: subscribe: %w", err)
	}
	e.mu.Lock()
	e.cancel = cancel
	e.mu.Unlock()
	return nil
}

// Close unsubscribes and stops the workers.
func (e *Executor) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	cancel := e.cancel
	close(e.done)
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	e.wg.Wait()
	return nil
}

// receive runs on the MQTT receive goroutine: it only queues.
func (e *Executor) receive(_ string, payload []byte) {
	req, err := snmprelay.DecodeRequest(payload)
	if err != nil {
		e.log.Warn("unreadable SNMP relay request; ignored", "err", err)
		return
	}
	select {
	case e.queue <- req:
	default:
		e.log.Warn("SNMP requests queue full; request dropped", "id", req.ID)
	}
}

func (e *Executor) client(community string) *gosnmp.GoSNMP {
	host, port, _ := splitTarget(e.cfg.Target)
	return &gosnmp.GoSNMP{Target: host, Port: port, Community: community, Version: gosnmp.Version2c,
		Timeout: e.cfg.Timeout, Retries: e.cfg.Retries, MaxOids: snmprelay.MaxVars, Context: context.Background()}
}

func (e *Executor) work() {
	defer e.wg.Done()
	read, write := e.client(e.cfg.Community), e.client(e.cfg.WriteCommunity)
	defer func() {
		for _, c := range []*gosnmp.GoSNMP{read, write} {
			if c.Conn != nil {
				_ = c.Conn.Close()
			}
		}
	}()
	for {
		select {
		case <-e.done:
			return
		case req := <-e.queue:
			resp := e.run(read, write, req)
			b, err := encodeFitting(resp)
			if err != nil {
				e.log.Error("encode SNMP relay response", "err", err)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := e.cfg.PubSub.Publish(ctx, topic.SNMPResponseTopic(e.cfg.DeviceID), 0, b); err != nil {
				e.log.Warn("SNMP relay response not delivered", "id", req.ID, "err", err)
			}
			cancel()
		}
	}
}

// run executes one request. A client connects (opens its socket) on first
// use and keeps it.
func (e *Executor) run(read, write *gosnmp.GoSNMP, req snmprelay.Request) (resp snmprelay.Response) {
	resp.ID = req.ID
	defer func() {
		// gosnmp decodes what the target sends; a target that makes it
		// panic must not take the agent down.
		if r := recover(); r != nil {
			resp = snmprelay.Response{ID: req.ID, Error: fmt.Sprintf("SNMP client failed: %v", r)}
		}
	}()
	c := read
	if req.Op == snmprelay.OpSet {
		if e.cfg.WriteCommunity == "" {
			resp.ErrorStatus, resp.ErrorIndex, resp.Vars = int(gosnmp.NoAccess), 1, req.Vars
			return resp
		}
		c = write
	}
	if c.Conn == nil {
		if err := c.Connect(); err != nil {
			resp.Error = fmt.Sprintf("connect to %s: %v", e.cfg.Target, err)
			return resp
		}
	}
	oids := make([]string, len(req.Vars))
	for i, v := range req.Vars {
		oids[i] = v.OID
	}
	var (
		p   *gosnmp.SnmpPacket
		err error
	)
	switch req.Op {
	case snmprelay.OpGet:
		p, err = c.Get(oids)
	case snmprelay.OpGetNext:
		p, err = c.GetNext(oids)
	case snmprelay.OpGetBulk:
		p, err = c.GetBulk(oids, uint8(min(req.NonRepeaters, 255)), uint32(req.MaxRepetitions)) //nolint:gosec // bounded
	case snmprelay.OpSet:
		p, err = c.Set(snmprelay.PDUs(req.Vars))
	}
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	resp.ErrorStatus, resp.ErrorIndex = int(p.Error), int(p.ErrorIndex)
	if resp.Vars, err = snmprelay.FromPDUs(p.Variables); err != nil {
		resp.Error = err.Error()
	}
	return resp
}

// encodeFitting encodes resp within snmprelay.MaxMessage: a GETBULK answer
// loses varbinds from its end (RFC 3416 allows fewer), any other answer
// that is too large becomes tooBig.
func encodeFitting(resp snmprelay.Response) ([]byte, error) {
	for {
		b, err := snmprelay.Encode(resp)
		if err != nil || len(b) <= snmprelay.MaxMessage {
			return b, err
		}
		if len(resp.Vars) > 1 && resp.ErrorStatus == 0 {
			resp.Vars = resp.Vars[:len(resp.Vars)/2]
			continue
		}
		resp.ErrorStatus, resp.ErrorIndex, resp.Vars = int(gosnmp.TooBig), 0, nil
	}
}
