// Package proxy is the platform side of the SNMP relay: a UDP SNMP agent
// for OSS tools (v1 and v2c; the device is chosen by the community
// "community@deviceId"), the Get/Walk/Set calls behind SnmpService, and the
// forwarding of devices' traps to the operator's trap receivers. It relays
// every request over the device's MQTT connection (tunnel.PubSub) to the
// agent's executor and never reaches a device any other way.
package proxy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/gosnmp/gosnmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/dm/topic"
	"github.com/lastmile-dm/lastmile/tunnel"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay"
)

// Defaults for Config.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultMaxInflight   = 256
	DefaultTrapDeviceOID = "1.3.6.1.4.1.8072.9999.9999.7.1.0"
	// maxDatagram is the largest response sent over UDP (IPv4).
	maxDatagram = 65507
)

// Errors of the API calls (mapped to gRPC codes in services/errors.go).
var (
	// ErrDeviceOffline: the device has no MQTT connection.
	ErrDeviceOffline = errors.New("device is offline")
	// ErrNoAnswer: the device's agent did not answer in time.
	ErrNoAnswer = errors.New("no SNMP answer from the device's agent")
	// ErrTargetUnreachable: the agent answered that its SNMP target did
	// not (timeout, refused, no target configured).
	ErrTargetUnreachable = errors.New("the device's SNMP target did not answer")
	// ErrInvalid: a bad OID, value or device ID.
	ErrInvalid = errors.New("invalid SNMP request")
	// ErrClosed: the proxy is shutting down.
	ErrClosed = errors.New("SNMP proxy closed")
)

// DeviceTrap is a trap a device forwarded.
type DeviceTrap struct {
	DeviceID string
	snmprelay.Trap
}

// TrapSink is told about every trap a device forwards (the event stream).
// Trap must not block for long.
type TrapSink interface {
	Trap(DeviceTrap)
}

// TrapSinkFunc adapts a function to TrapSink.
type TrapSinkFunc func(DeviceTrap)

// Trap calls f(t).
func (f TrapSinkFunc) Trap(t DeviceTrap) { f(t) }

var _ TrapSink = TrapSinkFunc(nil)

// Config configures a Proxy.
type Config struct {
	PubSub tunnel.PubSub // required: the broker's platform messaging
	// Connected reports whether a device is online; optional (without it
	// an offline device shows as ErrNoAnswer after Timeout).
	Connected func(deviceID string) bool
	// ReadCommunity and WriteCommunity are what the OSS puts before
	// "@deviceId": read allows GET, GETNEXT, GETBULK; write allows SET
	// too. Required for the UDP listener; the device's agent uses its own
	// communities towards its target.
	ReadCommunity, WriteCommunity string
	Timeout                       time.Duration // wait for the device's answer; default DefaultTimeout
	MaxInflight                   int           // UDP requests relayed at once; default DefaultMaxInflight

	// TrapReceivers are host:port of the OSS trap receivers (v2c).
	TrapReceivers []string
	TrapCommunity string // default "public"
	// TrapDeviceOID is the OctetString varbind appended to every forwarded
	// trap carrying the device ID; default DefaultTrapDeviceOID.
	TrapDeviceOID string
	TrapSink      TrapSink // optional

	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// CheckAndSetDefaults validates c and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.PubSub == nil {
		return errors.New("snmp proxy: PubSub is required")
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.TrapCommunity == "" {
		c.TrapCommunity = "public"
	}
	if c.TrapDeviceOID == "" {
		c.TrapDeviceOID = DefaultTrapDeviceOID
	}
	if !snmprelay.ValidOID(c.TrapDeviceOID) {
		return fmt.Errorf("snmp proxy: trap device OID %q is not a numeric OID", c.TrapDeviceOID)
	}
	for _, r := range c.TrapReceivers {
		if _, _, err := splitHostPort(r); err != nil {
			return fmt.Errorf("snmp proxy: trap receiver %q: %w", r, err)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Proxy relays SNMP to devices. Safe for concurrent use.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	inflght chan struct{}
	traps   chan DeviceTrap

	mu      sync.Mutex
	pending map[string]pending
	relayed map[string]bool // UDP requests in flight, by source and request ID
	sink    TrapSink
	cancels []func()
	conns   []net.PacketConn
	closed  bool
	wg      sync.WaitGroup
	done    chan struct{}
}

type pending struct {
	device string
	ch     chan snmprelay.Response
}

// New subscribes to the devices' answers and traps.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger.With("component", "snmp-proxy"), m: m,
		inflght: make(chan struct{}, cfg.MaxInflight), traps: make(chan DeviceTrap, 1024),
		pending: map[string]pending{}, relayed: map[string]bool{}, sink: cfg.TrapSink, done: make(chan struct{})}
	c1, err := cfg.PubSub.Subscribe(topic.SNMPAllFilter(topic.SNMPResp), 0, p.answer)
	if err != nil {
		return nil, fmt.Errorf("snmp proxy: subscribe: %w", err)
	}
	c2, err := cfg.PubSub.Subscribe(topic.SNMPAllFilter(topic.SNMPTrap), 1, p.trap)
	if err != nil {
		c1()
		return nil, fmt.Errorf("snmp proxy: subscribe: %w", err)
	}
	p.cancels = []func(){c1, c2}
	p.wg.Add(1)
	go p.forwardTraps()
	return p, nil
}

// SetTrapSink replaces the sink told about every device trap (nil for
// none), for wiring that exists after the proxy (the event stream).
func (p *Proxy) SetTrapSink(s TrapSink) {
	p.mu.Lock()
	p.sink = s
	p.mu.Unlock()
}

// Close stops the listeners, fails the calls in progress and stops
// forwarding traps.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	conns, cancels := p.conns, p.cancels
	p.mu.Unlock()
	for _, c := range cancels {
		c()
	}
	for _, c := range conns {
		_ = c.Close()
	}
	p.wg.Wait()
}

// answer runs on the broker's goroutine: it only hands the answer over.
func (p *Proxy) answer(name string, payload []byte) {
	dev, _, ok := topic.ParseSNMPTopic(name)
	if !ok {
		return
	}
	r, err := snmprelay.DecodeResponse(payload)
	if err != nil {
		p.m.answers.WithLabelValues("bad").Inc()
		p.log.Warn("unreadable SNMP answer", "device", dev, "err", err)
		return
	}
	p.mu.Lock()
	pd, ok := p.pending[r.ID]
	if ok && pd.device == dev {
		delete(p.pending, r.ID)
	}
	p.mu.Unlock()
	if !ok || pd.device != dev {
		p.m.answers.WithLabelValues("late").Inc()
		return
	}
	pd.ch <- r // buffered, and sent once: the entry is gone
}

// Do relays one request to a device and waits for its answer. The
// request's ID is set by Do.
func (p *Proxy) Do(ctx context.Context, deviceID string, req snmprelay.Request) (snmprelay.Response, error) {
	if !topic.ValidDeviceID(deviceID) {
		return snmprelay.Response{}, fmt.Errorf("%w: device ID %q", ErrInvalid, deviceID)
	}
	var id [12]byte
	_, _ = rand.Read(id[:])
	req.ID = hex.EncodeToString(id[:])
	if err := req.Check(); err != nil {
		return snmprelay.Response{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if p.cfg.Connected != nil && !p.cfg.Connected(deviceID) {
		return snmprelay.Response{}, fmt.Errorf("%w: %s", ErrDeviceOffline, deviceID)
	}
	b, err := snmprelay.Encode(req)
	if err != nil {
		return snmprelay.Response{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	ch := make(chan snmprelay.Response, 1)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return snmprelay.Response{}, ErrClosed
	}
	p.pending[req.ID] = pending{device: deviceID, ch: ch}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, req.ID)
		p.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if err := p.cfg.PubSub.Publish(ctx, topic.SNMPRequestTopic(deviceID), 0, b); err != nil {
		return snmprelay.Response{}, fmt.Errorf("%w: %w", ErrNoAnswer, err)
	}
	select {
	case r := <-ch:
		if r.Error != "" {
			return r, fmt.Errorf("%w: %s", ErrTargetUnreachable, r.Error)
		}
		return r, nil
	case <-ctx.Done():
		return snmprelay.Response{}, fmt.Errorf("%w within %s", ErrNoAnswer, p.cfg.Timeout)
	case <-p.done:
		return snmprelay.Response{}, ErrClosed
	}
}

func nullVars(oids []string) ([]snmprelay.Var, error) {
	if len(oids) == 0 {
		return nil, fmt.Errorf("%w: no OIDs", ErrInvalid)
	}
	vs := make([]snmprelay.Var, len(oids))
	for i, o := range oids {
		if !snmprelay.ValidOID(o) {
			return nil, fmt.Errorf("%w: %q is not a numeric OID", ErrInvalid, o)
		}
		vs[i] = snmprelay.Var{OID: o, Type: byte(gosnmp.Null)}
	}
	return vs, nil
}

// Get reads OIDs from a device's SNMP target.
func (p *Proxy) Get(ctx context.Context, deviceID string, oids []string) (snmprelay.Response, error) {
	vs, err := nullVars(oids)
	if err != nil {
		return snmprelay.Response{}, err
	}
	return p.Do(ctx, deviceID, snmprelay.Request{Op: snmprelay.OpGet, Vars: vs})
}

// Set writes varbinds at a device's SNMP target.
func (p *Proxy) Set(ctx context.Context, deviceID string, vars []snmprelay.Var) (snmprelay.Response, error) {
	if len(vars) == 0 {
		return snmprelay.Response{}, fmt.Errorf("%w: no varbinds", ErrInvalid)
	}
	return p.Do(ctx, deviceID, snmprelay.Request{Op: snmprelay.OpSet, Vars: vars})
}

// WalkBatch is how many varbinds one GETBULK of a walk asks for.
const WalkBatch = 50

// Walk calls fn for every varbind under root, in order, with GETBULK.
// An SNMP error status from the target ends it with ErrTargetUnreachable
// naming the status.
func (p *Proxy) Walk(ctx context.Context, deviceID, root string, fn func(snmprelay.Var) error) error {
	if !snmprelay.ValidOID(root) {
		return fmt.Errorf("%w: %q is not a numeric OID", ErrInvalid, root)
	}
	prefix := "." + strings.TrimPrefix(root, ".") + "."
	last := root
	for {
		r, err := p.Do(ctx, deviceID, snmprelay.Request{Op: snmprelay.OpGetBulk, MaxRepetitions: WalkBatch,
			Vars: []snmprelay.Var{{OID: last, Type: byte(gosnmp.Null)}}})
		if err != nil {
			return err
		}
		if r.ErrorStatus != 0 {
			return fmt.Errorf("%w: error status %s at index %d", ErrTargetUnreachable, gosnmp.SNMPError(r.ErrorStatus), r.ErrorIndex)
		}
		if len(r.Vars) == 0 {
			return nil
		}
		for _, v := range r.Vars {
			oid := "." + strings.TrimPrefix(v.OID, ".")
			if v.Type == byte(gosnmp.EndOfMibView) || !strings.HasPrefix(oid, prefix) {
				return nil
			}
			if !oidLess(last, oid) {
				return fmt.Errorf("%w: OID %s does not increase after %s", ErrTargetUnreachable, oid, last)
			}
			if err := fn(v); err != nil {
				return err
			}
			last = oid
		}
	}
}

// oidLess compares numeric OIDs arc by arc.
func oidLess(a, b string) bool {
	as := strings.Split(strings.TrimPrefix(a, "."), ".")
	bs := strings.Split(strings.TrimPrefix(b, "."), ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if len(as[i]) != len(bs[i]) {
			return len(as[i]) < len(bs[i])
		}
		if as[i] != bs[i] {
			return as[i] < bs[i]
		}
	}
	return len(as) < len(bs)
}

// communityOK compares in constant time.
func communityOK(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
