package topic

import "strings"

// Shadow topics (docs/mqtt-topics.md, "Shadows"), AWS IoT's layout under
// the device's $dm namespace:
//
//	$dm/{deviceId}/shadow/{op}                  classic shadow request
//	$dm/{deviceId}/shadow/name/{name}/{op}      named shadow request
//	.../{op}/accepted   .../{op}/rejected       responses (op: get, update, delete)
//	.../update/delta    .../update/documents    notifications

// Shadow operations a device requests.
const (
	ShadowGet    = "get"
	ShadowUpdate = "update"
	ShadowDelete = "delete"
)

// Shadow response and notification suffixes.
const (
	ShadowAccepted  = "accepted"
	ShadowRejected  = "rejected"
	ShadowDelta     = "delta"
	ShadowDocuments = "documents"
)

// ShadowFilter matches every device's shadow requests and responses.
const ShadowFilter = PlatformRoot + "/+/shadow/#"

// ShadowRequestFilters are the filters the platform subscribes to for
// every device's shadow requests: exactly the topics ParseShadowRequest
// accepts, and none of the responses, so publishing a response does not
// come back to the platform's own handler.
var ShadowRequestFilters = []string{
	PlatformRoot + "/+/shadow/" + ShadowGet, PlatformRoot + "/+/shadow/" + ShadowUpdate, PlatformRoot + "/+/shadow/" + ShadowDelete,
	PlatformRoot + "/+/shadow/name/+/" + ShadowGet, PlatformRoot + "/+/shadow/name/+/" + ShadowUpdate, PlatformRoot + "/+/shadow/name/+/" + ShadowDelete,
}

// ShadowPrefix returns the topic prefix of a shadow: name "" is the
// classic shadow.
func ShadowPrefix(deviceID, name string) string {
	if name == "" {
		return Platform(deviceID, "shadow")
	}
	return Platform(deviceID, "shadow", "name", name)
}

// ShadowRequest returns the topic a device publishes op (get, update,
// delete) on.
func ShadowRequest(deviceID, name, op string) string {
	return ShadowPrefix(deviceID, name) + "/" + op
}

// ShadowResponse returns the topic of a response to op: kind is accepted or
// rejected (or, for update, delta or documents).
func ShadowResponse(deviceID, name, op, kind string) string {
	return ShadowPrefix(deviceID, name) + "/" + op + "/" + kind
}

// ShadowDeltaTopic returns the topic the delta of a shadow is published on.
func ShadowDeltaTopic(deviceID, name string) string {
	return ShadowResponse(deviceID, name, ShadowUpdate, ShadowDelta)
}

// ShadowTopic is a parsed shadow request topic.
type ShadowTopic struct {
	DeviceID string
	// Name is "" for the classic shadow.
	Name string
	// Op is ShadowGet, ShadowUpdate or ShadowDelete.
	Op string
}

// ParseShadowRequest parses a topic a device publishes a shadow request
// on. It returns ok=false for anything else, including the response and
// notification topics. The name is any non-empty level (a topic name has
// no wildcards, so it is safe in the response topic): the shadow service
// checks it, so a device that uses a bad name gets a rejection on that
// name's rejected topic instead of silence.
func ParseShadowRequest(topic string) (ShadowTopic, bool) {
	rest, ok := strings.CutPrefix(topic, PlatformRoot+"/")
	if !ok {
		return ShadowTopic{}, false
	}
	id, rest, ok := strings.Cut(rest, "/")
	if !ok || !ValidDeviceID(id) {
		return ShadowTopic{}, false
	}
	rest, ok = strings.CutPrefix(rest, "shadow/")
	if !ok {
		return ShadowTopic{}, false
	}
	var name string
	if r, named := strings.CutPrefix(rest, "name/"); named {
		name, rest, ok = strings.Cut(r, "/")
		if !ok || name == "" || strings.ContainsAny(name, "+#\x00") {
			return ShadowTopic{}, false
		}
	}
	switch rest {
	case ShadowGet, ShadowUpdate, ShadowDelete:
		return ShadowTopic{DeviceID: id, Name: name, Op: rest}, true
	}
	return ShadowTopic{}, false
}
