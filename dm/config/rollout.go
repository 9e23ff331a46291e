package config

import (
	"fmt"
	"time"
)

// Target is what a rollout assigns a version to: exactly one of a device,
// a registry group or a fleet query (dm/shadow's filter syntax, e.g.
// "label.region=north AND reported.fw<2").
type Target struct {
	DeviceID string `json:"device_id,omitempty"`
	Group    string `json:"group,omitempty"`
	Query    string `json:"query,omitempty"`
}

func (t Target) check() error {
	n := 0
	for _, s := range []string{t.DeviceID, t.Group, t.Query} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: a target is exactly one of device_id, group or query", ErrInvalid)
	}
	return nil
}

// String describes the target for logs and listings.
func (t Target) String() string {
	switch {
	case t.DeviceID != "":
		return "device " + t.DeviceID
	case t.Group != "":
		return "group " + t.Group
	}
	return "query " + t.Query
}

// Rollout states.
const (
	RolloutRunning = "running" // devices are still being released
	RolloutDone    = "done"    // every device was released; outcomes may still arrive
)

// Rollout is one assignment of a profile version to a target.
type Rollout struct {
	ID      string `json:"id"`
	Profile string `json:"profile"`
	Version int64  `json:"version"`
	Hash    string `json:"hash"`
	Target  Target `json:"target"`
	// Rate is how many devices are released per second.
	Rate      int       `json:"rate"`
	Devices   int       `json:"devices"`
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	// Cursor is the last device released, in device ID order.
	Cursor string `json:"cursor,omitempty"`
}

// Device states in a rollout: pending → delivered → applied | failed |
// rolled_back; superseded when a later rollout took the device over
// before it finished.
const (
	StatePending    = "pending"
	StateDelivered  = "delivered"
	StateApplied    = "applied"
	StateFailed     = "failed"
	StateRolledBack = "rolled_back"
	StateSuperseded = "superseded"
)

// States lists every device state, in lifecycle order.
var States = []string{StatePending, StateDelivered, StateApplied, StateFailed, StateRolledBack, StateSuperseded}

// Final reports whether a state is an outcome.
func Final(state string) bool {
	return state == StateApplied || state == StateFailed || state == StateRolledBack || state == StateSuperseded
}

// DeviceStatus is one device's progress in one rollout.
type DeviceStatus struct {
	Rollout  string `json:"rollout"`
	DeviceID string `json:"device_id"`
	State    string `json:"state"`
	Reason   string `json:"reason,omitempty"`
	// Released: the rate limiter let the document go to this device.
	Released  bool      `json:"released,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Totals counts a rollout's devices by state.
type Totals map[string]int
