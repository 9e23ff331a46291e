package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Type says what happened.
type Type string

// Event types. Telemetry is opt-in: a watcher receives it only when it asks
// for it by type.
const (
	// TypePresence: a device connected or disconnected (Event.Presence).
	TypePresence Type = "presence"
	// TypeTelemetry: a device published on tele/{id}/... (Event.Telemetry).
	TypeTelemetry Type = "telemetry"
	// TypeShadowUpdated: a shadow document changed (Event.Shadow).
	TypeShadowUpdated Type = "shadow.updated"
	// TypeShadowDelta: desired and reported differ after a change (Event.Shadow).
	TypeShadowDelta Type = "shadow.delta"
	// TypeCommandResult: a command finished, whatever the outcome (Event.Command).
	TypeCommandResult Type = "command.result"

	// TypeJobProgress: a device moved on in a job, such as a config
	// rollout (Event.Job).
	TypeJobProgress Type = "job.progress"

	// Reserved for later capabilities; no publisher yet.
	TypeTrap Type = "trap"
)

// Types lists every event type, in a stable order.
var Types = []Type{TypePresence, TypeTelemetry, TypeShadowUpdated, TypeShadowDelta, TypeCommandResult, TypeJobProgress, TypeTrap}

// ValidType reports whether t is a known event type.
func ValidType(t Type) bool { return slices.Contains(Types, t) }

// Event is one thing that happened to one device. Exactly the field that
// matches Type is set.
type Event struct {
	// Seq is assigned by Bus.Publish: unique on one bus (one node) and
	// increasing in publish order; events published at the same moment by
	// different goroutines may reach a watcher out of Seq order.
	Seq      uint64
	Type     Type
	DeviceID string
	Time     time.Time

	Presence  *Presence
	Telemetry *Telemetry
	Shadow    *Shadow
	Command   *Command
	Job       *Job
	Trap      *Trap
}

// Presence is a connect or disconnect.
type Presence struct {
	Connected bool
	// Reason says why a connection ended ("client disconnected", "keepalive
	// timeout", "taken over", ...); empty on connect.
	Reason          string
	ClientID        string
	RemoteAddr      string
	ProtocolVersion uint8
	Node            string
}

// Telemetry is one telemetry message.
type Telemetry struct {
	// Stream is the part of the topic after tele/{deviceId}/.
	Stream      string
	Payload     []byte
	ContentType string
}

// Shadow is a change of a device shadow.
type Shadow struct {
	// Name is "" for the classic shadow.
	Name    string
	Version uint64
	// State is the document (TypeShadowUpdated) or the delta
	// (TypeShadowDelta), as JSON; for a delete, the last document.
	State json.RawMessage
	// Deleted: the shadow was deleted (TypeShadowUpdated only).
	Deleted bool
}

// Command outcomes.
const (
	OutcomeReplied     = "replied"     // the device answered; Status and Payload are its own
	OutcomeTimeout     = "timeout"     // no answer within the timeout
	OutcomeUnavailable = "unavailable" // the device was offline or went away
	OutcomeBadReply    = "bad_reply"   // the device answered something that is not a reply
)

// Command is the end of one command invocation.
type Command struct {
	RequestID string
	Name      string
	Outcome   string
	Status    int
	Payload   json.RawMessage
	Duration  time.Duration
}

// Job kinds.
const (
	// JobConfig is a config push rollout (docs/config-push.md).
	JobConfig = "config"
)

// Trap is an SNMP trap a device's agent received and forwarded.
type Trap struct {
	// Source is the address the trap came from on the device's side (the
	// gateway's LAN), as the agent saw it.
	Source string
	// Vars are the trap's varbinds as received (sysUpTime.0 and
	// snmpTrapOID.0 first).
	Vars []TrapVar
}

// TrapVar is one varbind. Type is the ASN.1 tag; the value is in the field
// its type uses (the same layout as the SNMP relay's messages).
type TrapVar struct {
	OID   string
	Type  byte
	Int   int64
	Uint  uint64
	Bytes []byte
	Str   string
	Float float64
}

// TrapReceived returns the event of an SNMP trap a device forwarded.
func TrapReceived(deviceID string, t Trap) Event {
	return Event{Type: TypeTrap, DeviceID: deviceID, Trap: &t}
}

// Job is one device's progress in a job.
type Job struct {
	// Kind is JobConfig.
	Kind string
	// ID is the job's ID (the rollout ID).
	ID string
	// State is the device's state in the job (for config: pending,
	// delivered, applied, failed, rolled_back, superseded).
	State  string
	Reason string
	// Profile and Version name the config version a config rollout pushes.
	Profile string
	Version int64
}

// ShadowUpdated returns the event of a changed shadow document, for
// Bus.Publish: bus.Publish(event.ShadowUpdated(id, name, version, doc)).
func ShadowUpdated(deviceID, name string, version uint64, doc json.RawMessage) Event {
	return Event{Type: TypeShadowUpdated, DeviceID: deviceID, Shadow: &Shadow{Name: name, Version: version, State: doc}}
}

// ShadowDelta returns the event of a shadow delta, for Bus.Publish.
func ShadowDelta(deviceID, name string, version uint64, delta json.RawMessage) Event {
	return Event{Type: TypeShadowDelta, DeviceID: deviceID, Shadow: &Shadow{Name: name, Version: version, State: delta}}
}

// Sentinel errors.
var (
	// ErrInvalid wraps a bad filter; the message names the field.
	ErrInvalid = errors.New("event: invalid argument")
	// ErrTooManyWatchers: the bus has as many watchers as it allows.
	ErrTooManyWatchers = errors.New("event: too many watchers")
	// ErrOverflow: the watcher did not keep up and its buffer overflowed.
	// Next returns an *OverflowError wrapping it.
	ErrOverflow = errors.New("event: watcher too slow, buffer overflowed")
	// ErrClosed: the watcher or the bus was closed (the server is stopping).
	ErrClosed = errors.New("event: watch closed: the server is stopping")
	// ErrLabels: device labels could not be looked up for a label filter.
	ErrLabels = errors.New("event: device labels unavailable")
)

// OverflowError ends a watch whose buffer overflowed.
type OverflowError struct {
	// Dropped counts the matching events the watcher did not receive: those
	// still buffered when the watch ended and those published after the
	// buffer was full.
	Dropped uint64
	// Buffer is the watcher's buffer size.
	Buffer int
}

func (e *OverflowError) Error() string {
	return fmt.Sprintf("event: watcher too slow: its buffer of %d events overflowed and %d events were dropped; watch again to resume", e.Buffer, e.Dropped)
}

// Unwrap makes errors.Is(err, ErrOverflow) hold.
func (e *OverflowError) Unwrap() error { return ErrOverflow }
