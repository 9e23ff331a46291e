package topic

import "strings"

// Tunnel topics. A tunnel session has two topics, one per direction, under
// the device's namespace:
//
//	$dm/{deviceId}/tunnel/{sessionId}/down   platform -> device
//	$dm/{deviceId}/tunnel/{sessionId}/up     device -> platform
//
// The agent subscribes once to TunnelDownFilter and learns the session from
// the topic; the platform subscribes to one session's up topic.
const (
	TunnelLevel = "tunnel"
	TunnelDown  = "down"
	TunnelUp    = "up"
)

// MaxTunnelSessionIDLen bounds a session ID; it is one topic level.
const MaxTunnelSessionIDLen = 64

// ValidTunnelSessionID reports whether id can name a tunnel session: the
// same alphabet as a device ID, at most MaxTunnelSessionIDLen characters.
func ValidTunnelSessionID(id string) bool {
	return len(id) <= MaxTunnelSessionIDLen && ValidDeviceID(id)
}

// TunnelDownTopic is where the platform publishes a session's frames.
func TunnelDownTopic(deviceID, sessionID string) string {
	return Platform(deviceID, TunnelLevel, sessionID, TunnelDown)
}

// TunnelUpTopic is where the device publishes a session's frames.
func TunnelUpTopic(deviceID, sessionID string) string {
	return Platform(deviceID, TunnelLevel, sessionID, TunnelUp)
}

// TunnelDownFilter matches every session's down topic of one device.
func TunnelDownFilter(deviceID string) string {
	return Platform(deviceID, TunnelLevel, "+", TunnelDown)
}

// ParseTunnelTopic splits a tunnel topic into device, session and direction
// (TunnelDown or TunnelUp); ok is false for any other topic.
func ParseTunnelTopic(name string) (deviceID, sessionID, dir string, ok bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 5 || parts[0] != PlatformRoot || parts[2] != TunnelLevel {
		return "", "", "", false
	}
	if !ValidDeviceID(parts[1]) || !ValidTunnelSessionID(parts[3]) || (parts[4] != TunnelDown && parts[4] != TunnelUp) {
		return "", "", "", false
	}
	return parts[1], parts[3], parts[4], true
}
