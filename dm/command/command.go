package command

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/dm/event"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// Timeout bounds of one invocation.
const (
	MinTimeout     = time.Second
	MaxTimeout     = 300 * time.Second
	DefaultTimeout = 30 * time.Second
)

// Sentinel errors.
var (
	// ErrInvalid wraps a bad request; the message names the field.
	ErrInvalid = errors.New("command: invalid argument")
	// ErrOffline: the device is not connected, or went away before replying.
	ErrOffline = errors.New("command: device is offline")
	// ErrTimeout: the device did not reply within the timeout.
	ErrTimeout = errors.New("command: device did not reply in time")
	// ErrTooManyPending: too many invocations are waiting for replies.
	ErrTooManyPending = errors.New("command: too many pending invocations")
	// ErrBadReply: the device replied with something that is not a reply.
	ErrBadReply = errors.New("command: device sent a malformed reply")
)

// Devices tells the service about devices.
type Devices interface {
	// Online reports whether the device is connected to this node and the
	// MQTT protocol version of that connection (4 or 5). An unknown device
	// is an error wrapping the registry's not-found error.
	Online(ctx context.Context, deviceID string) (online bool, protocolVersion byte, err error)
}

// Message is a request as the transport publishes it (QoS 0).
type Message struct {
	Topic           string
	Payload         []byte
	ResponseTopic   string
	CorrelationData []byte
}

// Transport publishes a request to a device. Send must not block for long.
type Transport interface {
	Send(m Message) error
}

// Config configures a Service.
type Config struct {
	Devices   Devices
	Transport Transport
	// Events receives a command.result event per invocation; optional.
	Events interface{ Publish(event.Event) }
	// MaxPending bounds invocations waiting for a reply; default 10 000.
	MaxPending int
	// MaxPendingPerDevice bounds them per device; default 64.
	MaxPendingPerDevice int
	// MaxPayload bounds a request payload in bytes; default 256 KiB.
	MaxPayload int
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// CheckAndSetDefaults validates cfg and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Devices == nil || c.Transport == nil {
		return errors.New("command: Devices and Transport are required")
	}
	if c.MaxPending == 0 {
		c.MaxPending = 10_000
	}
	if c.MaxPendingPerDevice == 0 {
		c.MaxPendingPerDevice = 64
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 256 << 10
	}
	if c.MaxPending < 1 || c.MaxPendingPerDevice < 1 || c.MaxPayload < 1 {
		return errors.New("command: MaxPending, MaxPendingPerDevice and MaxPayload must be positive")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Request is one invocation.
type Request struct {
	DeviceID string
	Name     string
	// Payload is JSON, or empty for none.
	Payload json.RawMessage
	// Timeout: 0 means DefaultTimeout; else MinTimeout-MaxTimeout.
	Timeout time.Duration
}

// Result is the device's answer.
type Result struct {
	RequestID string
	// Status is the device's own result code.
	Status int
	// Payload is JSON, or empty.
	Payload  json.RawMessage
	Duration time.Duration
}

// Reply is a reply as received from the broker.
type Reply struct {
	Topic           string
	Payload         []byte
	CorrelationData []byte
	// PrincipalID is the publisher's device ID ("" or "app:..." otherwise).
	PrincipalID string
}

// Service invokes commands on devices. Safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	mu       sync.Mutex
	pending  map[string]*pending // by request ID
	perDev   map[string]int
	late     map[string]struct{} // recently timed-out request IDs
	lateRing []string
	lateNext int
	closed   bool
}

type pending struct {
	deviceID, name string
	done           chan outcome // buffered 1; written once, by whoever removes the entry
}

type outcome struct {
	reply topic.Reply
	err   error
}

// lateMemory is how many timed-out request IDs are remembered, so that a
// reply after the timeout is counted as late rather than unknown.
const lateMemory = 4096

// New returns a Service and registers its metrics.
func New(cfg Config) (*Service, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "commands"), m: m,
		pending: map[string]*pending{}, perDev: map[string]int{}, late: map[string]struct{}{}, lateRing: make([]string, lateMemory)}, nil
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Check validates r and returns its effective timeout.
func (r Request) Check(maxPayload int) (time.Duration, error) {
	switch {
	case !topic.ValidDeviceID(r.DeviceID):
		return 0, fmt.Errorf("%w: device ID %q is not valid", ErrInvalid, r.DeviceID)
	case !topic.ValidCommandName(r.Name):
		return 0, fmt.Errorf("%w: command name %q is not 1-%d characters of [A-Za-z0-9._-]", ErrInvalid, r.Name, topic.MaxCommandNameLen)
	case len(r.Payload) > maxPayload:
		return 0, fmt.Errorf("%w: payload of %d bytes is larger than %d", ErrInvalid, len(r.Payload), maxPayload)
	case len(r.Payload) > 0 && !json.Valid(r.Payload):
		return 0, fmt.Errorf("%w: payload is not JSON", ErrInvalid)
	}
	t := r.Timeout
	if t == 0 {
		t = DefaultTimeout
	}
	if t < MinTimeout || t > MaxTimeout {
		return 0, fmt.Errorf("%w: timeout %s is outside %s-%s", ErrInvalid, r.Timeout, MinTimeout, MaxTimeout)
	}
	return t, nil
}

// Invoke sends the command and waits for the device's reply. It fails at
// once with ErrOffline when the device is not connected, with ErrTimeout
// when it does not reply in time and with ErrBadReply when its reply is
// malformed; any status the device replies with is a success. A device
// that reconnects may still reply within the timeout (the reply topic
// holds everything needed), so a disconnect alone does not end the wait.
func (s *Service) Invoke(ctx context.Context, r Request) (*Result, error) {
	timeout, err := r.Check(s.cfg.MaxPayload)
	if err != nil {
		return nil, err
	}
	log := s.log.With("device", r.DeviceID, "command", r.Name)
	online, version, err := s.cfg.Devices.Online(ctx, r.DeviceID)
	if err != nil {
		return nil, fmt.Errorf("command %s on %s: %w", r.Name, r.DeviceID, err)
	}
	start := s.cfg.Now()
	id := newRequestID()
	if !online {
		s.finish(r, id, start, outcome{err: ErrOffline})
		return nil, fmt.Errorf("command %s: device %s: %w", r.Name, r.DeviceID, ErrOffline)
	}
	p := &pending{deviceID: r.DeviceID, name: r.Name, done: make(chan outcome, 1)}
	if err := s.add(id, p); err != nil {
		if errors.Is(err, ErrTooManyPending) {
			s.m.invocations.WithLabelValues("too_many_pending").Inc()
		}
		return nil, err
	}
	msg := Message{Topic: topic.CommandRequest(r.DeviceID, r.Name), Payload: r.Payload,
		ResponseTopic: topic.CommandReply(r.DeviceID, r.Name, id), CorrelationData: []byte(id)}
	if version < 5 {
		msg.Topic = topic.CommandRequestV3(r.DeviceID, r.Name, id)
	}
	if err := s.cfg.Transport.Send(msg); err != nil {
		s.remove(id, false)
		s.m.invocations.WithLabelValues("send_failed").Inc()
		return nil, fmt.Errorf("command %s: send to %s: %w", r.Name, r.DeviceID, err)
	}
	log.Debug("command sent", "request_id", id, "timeout", timeout)

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var o outcome
	select {
	case o = <-p.done:
	case <-timer.C:
		if s.remove(id, true) {
			o = outcome{err: ErrTimeout}
		} else {
			o = <-p.done // completed at the same moment
		}
	case <-ctx.Done():
		if s.remove(id, true) {
			s.m.invocations.WithLabelValues("canceled").Inc()
			return nil, ctx.Err()
		}
		o = <-p.done
	}
	res := s.finish(r, id, start, o)
	if o.err != nil {
		log.Info("command failed", "request_id", id, "error", o.err)
		return nil, fmt.Errorf("command %s on %s (request %s): %w", r.Name, r.DeviceID, id, o.err)
	}
	return res, nil
}

// finish counts and publishes the end of an invocation.
func (s *Service) finish(r Request, id string, start time.Time, o outcome) *Result {
	d := s.cfg.Now().Sub(start)
	ev := &event.Command{RequestID: id, Name: r.Name, Duration: d}
	switch {
	case o.err == nil:
		ev.Outcome, ev.Status, ev.Payload = event.OutcomeReplied, o.reply.Status, o.reply.Payload
	case errors.Is(o.err, ErrTimeout):
		ev.Outcome = event.OutcomeTimeout
	case errors.Is(o.err, ErrBadReply):
		ev.Outcome = event.OutcomeBadReply
	default:
		ev.Outcome = event.OutcomeUnavailable
	}
	s.m.invocations.WithLabelValues(ev.Outcome).Inc()
	if o.err == nil {
		s.m.duration.Observe(d.Seconds())
	}
	if s.cfg.Events != nil {
		s.cfg.Events.Publish(event.Event{Type: event.TypeCommandResult, DeviceID: r.DeviceID, Command: ev})
	}
	if o.err != nil {
		return nil
	}
	return &Result{RequestID: id, Status: o.reply.Status, Payload: o.reply.Payload, Duration: d}
}

func (s *Service) add(id string, p *pending) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: the server is shutting down", ErrOffline)
	}
	if len(s.pending) >= s.cfg.MaxPending {
		return fmt.Errorf("%w: %d invocations are waiting for replies", ErrTooManyPending, len(s.pending))
	}
	if s.perDev[p.deviceID] >= s.cfg.MaxPendingPerDevice {
		return fmt.Errorf("%w: %d invocations are waiting for device %s", ErrTooManyPending, s.perDev[p.deviceID], p.deviceID)
	}
	s.pending[id] = p
	s.perDev[p.deviceID]++
	s.m.pending.Inc()
	return nil
}

// take removes and returns a pending invocation; nil if there is none.
func (s *Service) take(id string) *pending {
	p := s.pending[id]
	if p == nil {
		return nil
	}
	delete(s.pending, id)
	if s.perDev[p.deviceID]--; s.perDev[p.deviceID] <= 0 {
		delete(s.perDev, p.deviceID)
	}
	s.m.pending.Dec()
	return p
}

// remove drops a pending invocation that ended without a reply and
// reports whether it was still pending; a timed-out one is remembered so
// that its reply, if it comes, counts as late.
func (s *Service) remove(id string, remember bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.take(id) == nil {
		return false
	}
	if remember {
		if old := s.lateRing[s.lateNext]; old != "" {
			delete(s.late, old)
		}
		s.lateRing[s.lateNext] = id
		s.lateNext = (s.lateNext + 1) % len(s.lateRing)
		s.late[id] = struct{}{}
	}
	return true
}

// HandleReply takes a reply published by a device. It never blocks: it
// runs on the publishing connection's goroutine. Replies that match no
// pending invocation, come from another client than the addressed device,
// or are malformed are dropped and counted.
func (s *Service) HandleReply(m Reply) {
	rt, err := topic.ParseReplyTopic(m.Topic)
	if err != nil {
		s.drop("malformed", m, err)
		return
	}
	if m.PrincipalID != rt.DeviceID {
		// Only the addressed device may answer (an application whose role
		// allows publishing under $dm may not).
		s.drop("foreign", m, fmt.Errorf("published by %q, not by device %s", m.PrincipalID, rt.DeviceID))
		return
	}
	if len(m.CorrelationData) > 0 && !bytes.Equal(m.CorrelationData, []byte(rt.RequestID)) {
		s.drop("malformed", m, errors.New("correlation data does not match the request ID in the topic"))
		return
	}
	s.mu.Lock()
	p := s.pending[rt.RequestID]
	if p == nil || p.deviceID != rt.DeviceID || p.name != rt.Name {
		_, late := s.late[rt.RequestID]
		s.mu.Unlock()
		if late {
			s.drop("late", m, errors.New("reply after the timeout"))
		} else {
			s.drop("unknown", m, errors.New("no pending request with this ID"))
		}
		return
	}
	s.take(rt.RequestID)
	s.mu.Unlock()
	r, err := topic.ParseReply(m.Payload)
	if err != nil {
		p.done <- outcome{err: fmt.Errorf("%w: %w", ErrBadReply, err)}
		s.m.replies.WithLabelValues("malformed").Inc()
		return
	}
	s.m.replies.WithLabelValues("accepted").Inc()
	p.done <- outcome{reply: r}
}

func (s *Service) drop(reason string, m Reply, err error) {
	s.m.replies.WithLabelValues(reason).Inc()
	s.log.Debug("command reply dropped", "reason", reason, "topic", m.Topic, "principal", m.PrincipalID, "error", err)
}

// Close fails every pending invocation with ErrOffline and refuses new
// ones, so a stopping server does not wait for replies.
func (s *Service) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for id, p := range s.pending {
		s.take(id)
		p.done <- outcome{err: fmt.Errorf("%w: the server is shutting down", ErrOffline)}
	}
}

// Pending returns how many invocations wait for replies.
func (s *Service) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}
