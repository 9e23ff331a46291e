// Package topic is the MQTT topic contract between lastmile and its devices:
// the names of every topic a device and the platform use, the rule that
// confines a device to its own namespace, and MQTT filter matching.
//
// Both the platform and the agent build topics only through this package,
// never by hand, so the two sides cannot drift apart. The contract is
// documented for device makers in docs/mqtt-topics.md.
//
//	tele/{deviceId}/{stream...}   device -> platform telemetry
//	$dm/{deviceId}/...            device management (shadows, commands, jobs,
//	                              tunnel, snmp); the leading '$' keeps it out
//	                              of every ordinary '#' subscription
package topic

import (
	"strings"
)

// Version is the version of the topic contract. It changes only when a
// topic's name or meaning changes in a way an existing device would notice.
const Version = 1

// Roots of the two namespaces a device owns.
const (
	TelemetryRoot = "tele"
	PlatformRoot  = "$dm"
)

// MaxDeviceIDLen is the longest device ID.
const MaxDeviceIDLen = 128

// ValidDeviceID reports whether id can name a device: 1 to 128 characters
// of [A-Za-z0-9._-], not "." or "..". Everything else (notably '/', '+',
// '#', '$', ':' and spaces) is refused so that an ID can never widen a topic
// or a filter it is put into, and so that application client IDs ("app:...")
// can never collide with a device's.
func ValidDeviceID(id string) bool {
	if len(id) == 0 || len(id) > MaxDeviceIDLen || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Telemetry returns the topic a device publishes a telemetry stream on. The
// stream may have several levels ("env/temp").
func Telemetry(deviceID, stream string) string {
	return TelemetryRoot + "/" + deviceID + "/" + stream
}

// Platform returns a topic in the device's management namespace:
// Platform("d1", "shadow", "get") is "$dm/d1/shadow/get".
func Platform(deviceID string, levels ...string) string {
	var b strings.Builder
	b.WriteString(PlatformRoot)
	b.WriteByte('/')
	b.WriteString(deviceID)
	for _, l := range levels {
		b.WriteByte('/')
		b.WriteString(l)
	}
	return b.String()
}

// DeviceOf returns the device ID that owns topic (a topic name, not a
// filter) and whether topic lies in a device namespace at all.
func DeviceOf(topic string) (string, bool) {
	root, rest, ok := strings.Cut(topic, "/")
	if !ok || (root != TelemetryRoot && root != PlatformRoot) {
		return "", false
	}
	id, tail, ok := strings.Cut(rest, "/")
	if !ok || tail == "" || !ValidDeviceID(id) {
		return "", false
	}
	return id, true
}

// DeviceMayPublish reports whether device deviceID may publish to topic:
// only below tele/{deviceID}/ or $dm/{deviceID}/.
func DeviceMayPublish(deviceID, topic string) bool {
	if strings.ContainsAny(topic, "+#") {
		return false
	}
	id, ok := DeviceOf(topic)
	return ok && id == deviceID
}

// DeviceMaySubscribe reports whether device deviceID may subscribe to
// filter: the filter's first two levels must be literally tele/{deviceID} or
// $dm/{deviceID}, so it can match nothing outside the device's namespace.
// Shared subscriptions are not for devices.
func DeviceMaySubscribe(deviceID, filter string) bool {
	if !ValidFilter(filter) {
		return false
	}
	root, rest, ok := strings.Cut(filter, "/")
	if !ok || (root != TelemetryRoot && root != PlatformRoot) {
		return false
	}
	id, tail, ok := strings.Cut(rest, "/")
	return ok && tail != "" && id == deviceID
}
