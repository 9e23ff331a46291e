package topic

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Config push topics (docs/config-push.md). The device pulls the document
// assigned to it and reports what it did; the platform confirms that it
// hears the device after the device applied a document:
//
//	$dm/{deviceId}/config/get        device -> platform  "send my document"
//	$dm/{deviceId}/config/document   platform -> device  ConfigDocument
//	$dm/{deviceId}/config/status     device -> platform  ConfigStatus
//	$dm/{deviceId}/config/confirm    platform -> device  ConfigConfirm
//
// The device asks on every connection, so a device that was offline when
// its rollout reached it gets the document when it comes back.
const (
	ConfigLevel    = "config"
	ConfigGet      = "get"
	ConfigDocument = "document"
	ConfigStatus   = "status"
	ConfigConfirm  = "confirm"
)

// ConfigFilter is the filter the platform subscribes to for every device's
// config requests and reports (it also matches the platform's own
// messages, which ParseConfigTopic returns with their kind).
const ConfigFilter = PlatformRoot + "/+/" + ConfigLevel + "/+"

// ConfigTopic returns $dm/{deviceId}/config/{kind}.
func ConfigTopic(deviceID, kind string) string { return Platform(deviceID, ConfigLevel, kind) }

// ConfigDeviceFilter matches what the platform sends one device (document
// and confirm); the device subscribes to it.
func ConfigDeviceFilter(deviceID string) string { return Platform(deviceID, ConfigLevel, "+") }

// ParseConfigTopic splits a config topic into device and kind; ok is false
// for any other topic or an unknown kind.
func ParseConfigTopic(name string) (deviceID, kind string, ok bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != PlatformRoot || parts[2] != ConfigLevel || !ValidDeviceID(parts[1]) {
		return "", "", false
	}
	switch parts[3] {
	case ConfigGet, ConfigDocument, ConfigStatus, ConfigConfirm:
		return parts[1], parts[3], true
	}
	return "", "", false
}

// Config states a device reports in ConfigStatus.State.
const (
	// ConfigReceived: the document arrived and is about to be applied.
	ConfigReceived = "received"
	// ConfigAwaitingConfirm: applied and reconnected; the device waits for
	// ConfigConfirm and rolls back if it does not come in time.
	ConfigAwaitingConfirm = "awaiting_confirm"
	// ConfigApplied: confirmed and kept.
	ConfigApplied = "applied"
	// ConfigFailed: the handler refused the document; nothing changed.
	ConfigFailed = "failed"
	// ConfigRolledBack: no confirmation in time; the previous
	// configuration is back.
	ConfigRolledBack = "rolled_back"
)

// MaxConfigPayload bounds a config message (the document plus its
// envelope); the platform refuses larger documents when they are created.
const MaxConfigPayload = 512 << 10

// ConfigRef names one version of a profile as assigned by one rollout.
// Hash is the hex SHA-256 of the document's content: the device compares
// hashes, never versions, to know whether it already runs a document.
type ConfigRef struct {
	Rollout string `json:"rollout"`
	Profile string `json:"profile"`
	Version int64  `json:"version"`
	Hash    string `json:"hash"`
}

// ConfigHash is the hash of a document's content that ConfigRef carries.
func ConfigHash(content []byte) string {
	h := sha256.Sum256(content)
	return hex.EncodeToString(h[:])
}

// ConfigDocumentPayload is what the platform publishes on .../document.
type ConfigDocumentPayload struct {
	ConfigRef
	// Format is json, yaml or text.
	Format  string `json:"format"`
	Content string `json:"content"`
}

// ConfigStatusPayload is what the device publishes on .../status.
type ConfigStatusPayload struct {
	ConfigRef
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// ConfigConfirmPayload is what the platform publishes on .../confirm.
type ConfigConfirmPayload struct {
	ConfigRef
}

// ErrBadConfigPayload is returned for a config message that cannot be read.
var ErrBadConfigPayload = errors.New("bad config payload")

func (r ConfigRef) check() error {
	switch {
	case r.Rollout == "" || len(r.Rollout) > 64:
		return fmt.Errorf("%w: rollout must be 1 to 64 characters", ErrBadConfigPayload)
	case r.Profile == "" || len(r.Profile) > 64:
		return fmt.Errorf("%w: profile must be 1 to 64 characters", ErrBadConfigPayload)
	case r.Version < 1:
		return fmt.Errorf("%w: version must be positive", ErrBadConfigPayload)
	case len(r.Hash) != 64 || strings.Trim(r.Hash, "0123456789abcdef") != "":
		return fmt.Errorf("%w: hash must be 64 lowercase hex digits", ErrBadConfigPayload)
	}
	return nil
}

func decodeConfig(b []byte, v any) error {
	if len(b) > MaxConfigPayload {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrBadConfigPayload, len(b), MaxConfigPayload)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfigPayload, err)
	}
	return nil
}

// ParseConfigDocument reads a .../document payload.
func ParseConfigDocument(b []byte) (ConfigDocumentPayload, error) {
	var d ConfigDocumentPayload
	if err := decodeConfig(b, &d); err != nil {
		return ConfigDocumentPayload{}, err
	}
	if err := d.check(); err != nil {
		return ConfigDocumentPayload{}, err
	}
	switch d.Format {
	case "json", "yaml", "text":
	default:
		return ConfigDocumentPayload{}, fmt.Errorf("%w: format %q is not json, yaml or text", ErrBadConfigPayload, d.Format)
	}
	return d, nil
}

// ParseConfigStatus reads a .../status payload.
func ParseConfigStatus(b []byte) (ConfigStatusPayload, error) {
	var s ConfigStatusPayload
	if err := decodeConfig(b, &s); err != nil {
		return ConfigStatusPayload{}, err
	}
	if err := s.check(); err != nil {
		return ConfigStatusPayload{}, err
	}
	switch s.State {
	case ConfigReceived, ConfigAwaitingConfirm, ConfigApplied, ConfigFailed, ConfigRolledBack:
	default:
		return ConfigStatusPayload{}, fmt.Errorf("%w: unknown state %q", ErrBadConfigPayload, s.State)
	}
	if len(s.Reason) > 1024 {
		s.Reason = s.Reason[:1024]
	}
	return s, nil
}

// ParseConfigConfirm reads a .../confirm payload.
func ParseConfigConfirm(b []byte) (ConfigConfirmPayload, error) {
	var c ConfigConfirmPayload
	if err := decodeConfig(b, &c); err != nil {
		return ConfigConfirmPayload{}, err
	}
	if err := c.check(); err != nil {
		return ConfigConfirmPayload{}, err
	}
	return c, nil
}
