package registry

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Stores return ErrNotFound, ErrExists and ErrConflict.
var (
	// ErrNotFound: no device (or presence) with that ID.
	ErrNotFound = errors.New("registry: device not found")
	// ErrExists: a device with that ID exists already.
	ErrExists = errors.New("registry: device already exists")
	// ErrConflict: the device changed since it was read (revision or etag mismatch).
	ErrConflict = errors.New("registry: device was modified concurrently")
	// ErrInvalid wraps every validation failure; the message names the field.
	ErrInvalid = errors.New("registry: invalid argument")
	// ErrBadCredentials: unknown device, wrong password or certificate.
	ErrBadCredentials = errors.New("registry: bad credentials")
	// ErrDisabled: the device is disabled.
	ErrDisabled = errors.New("registry: device disabled")
	// ErrBanned: the device is banned.
	ErrBanned = errors.New("registry: device banned")
	// ErrClientIDMismatch: a device must use its device ID as MQTT client ID.
	ErrClientIDMismatch = errors.New("registry: client ID is not the device ID")
)

// Device is one registered device. Stores persist every field.
type Device struct {
	ID     string            `json:"id"`
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	Groups []string          `json:"groups,omitempty"`
	// Enabled devices may connect.
	Enabled bool `json:"enabled"`
	// Banned devices are refused with a distinct reason (CONNACK 0x8A).
	Banned bool `json:"banned,omitempty"`
	// PasswordHash is a credential hash (see package credential), or "".
	PasswordHash  string    `json:"password_hash,omitempty"`
	PasswordSetAt time.Time `json:"password_set_at,omitzero"`
	// CertFingerprint pins the client certificate: SHA-256 of its DER, hex.
	CertFingerprint string    `json:"cert_fingerprint,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
	// Revision increases by one on every change; stores use it for
	// compare-and-set and the API shows it as the etag.
	Revision uint64 `json:"revision"`
}

// Presence is whether and how a device is connected.
type Presence struct {
	DeviceID string `json:"device_id"`
	Online   bool   `json:"online"`
	// Conn identifies the connection: unique across nodes and restarts.
	Conn            string    `json:"conn,omitempty"`
	Node            string    `json:"node,omitempty"`
	ClientID        string    `json:"client_id,omitempty"`
	RemoteAddr      string    `json:"remote_addr,omitempty"`
	Listener        string    `json:"listener,omitempty"`
	ProtocolVersion uint8     `json:"protocol_version,omitempty"`
	Keepalive       uint16    `json:"keepalive,omitempty"`
	ConnectedAt     time.Time `json:"connected_at,omitzero"`
	DisconnectedAt  time.Time `json:"disconnected_at,omitzero"`
	// DisconnectReason says why the last connection ended.
	DisconnectReason string `json:"disconnect_reason,omitempty"`
}

// Store persists devices. Implementations are safe for concurrent use.
type Store interface {
	// CreateDevice stores a new device, or returns ErrExists.
	CreateDevice(ctx context.Context, d *Device) error
	// GetDevice returns the device, or ErrNotFound.
	GetDevice(ctx context.Context, id string) (*Device, error)
	// UpdateDevice replaces the stored device if its revision is still
	// expectRevision (d.Revision is the new one); ErrConflict if not,
	// ErrNotFound if there is none.
	UpdateDevice(ctx context.Context, d *Device, expectRevision uint64) error
	// DeleteDevice removes the device and its presence, or returns ErrNotFound.
	DeleteDevice(ctx context.Context, id string) error
	// ListDevices returns up to limit devices with IDs greater than after,
	// in ascending ID order.
	ListDevices(ctx context.Context, after string, limit int) ([]*Device, error)
}

// PresenceStore persists presence. Implementations are safe for concurrent
// use and apply each call atomically.
type PresenceStore interface {
	// SetOnline records a new connection; the newest connection always wins.
	SetOnline(ctx context.Context, p Presence) error
	// SetOffline marks the device offline if its current connection is conn,
	// and reports whether it did. A stale disconnect is ignored.
	SetOffline(ctx context.Context, deviceID, conn string, at time.Time, reason string) (bool, error)
	// GetPresence returns the presence of each ID that has one; devices that
	// never connected are absent from the map.
	GetPresence(ctx context.Context, ids []string) (map[string]Presence, error)
	// ResetNode marks offline every device whose connection is on node, for
	// a node that restarts after a crash.
	ResetNode(ctx context.Context, node string, at time.Time, reason string) error
}

// Kicker closes device connections. The broker implements it.
type Kicker interface {
	// Kick disconnects the device now and reports whether it was connected.
	Kick(deviceID, reason string) bool
}
