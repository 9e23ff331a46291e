package topic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Commands: request/response from the platform to one device.
//
//	platform -> device  $dm/{deviceId}/cmd/{name}              MQTT 5, with Response Topic + Correlation Data
//	platform -> device  $dm/{deviceId}/cmd/{name}/{requestId}  MQTT 3.1.1 (the ID is in the topic)
//	device -> platform  $dm/{deviceId}/cmdreply/{name}/{requestId}
//
// One device subscription, $dm/{deviceId}/cmd/#, receives both request
// forms. The reply topic is the same for both protocols: MQTT 5 devices find
// it in the Response Topic, 3.1.1 devices derive it by replacing the third
// level "cmd" with "cmdreply". Replies are outside cmd/, so a device never
// receives its own reply.
const (
	CommandLevel = "cmd"
	ReplyLevel   = "cmdreply"
)

// MaxCommandNameLen is the longest command name.
const MaxCommandNameLen = 64

// ValidCommandName reports whether name can name a command: 1 to 64
// characters of [A-Za-z0-9._-], not "." or "..". It is one topic level, so
// it can never widen a topic.
func ValidCommandName(name string) bool {
	return len(name) <= MaxCommandNameLen && ValidDeviceID(name)
}

// ValidRequestID reports whether id can be a command request ID: 1 to 64
// characters of [A-Za-z0-9._-].
func ValidRequestID(id string) bool { return len(id) <= 64 && ValidDeviceID(id) }

// CommandRequest returns the topic an MQTT 5 device receives command name on.
func CommandRequest(deviceID, name string) string {
	return Platform(deviceID, CommandLevel, name)
}

// CommandRequestV3 returns the topic an MQTT 3.1.1 device receives command
// name on: the request ID is the last level.
func CommandRequestV3(deviceID, name, requestID string) string {
	return Platform(deviceID, CommandLevel, name, requestID)
}

// CommandReply returns the topic a device answers request requestID on.
func CommandReply(deviceID, name, requestID string) string {
	return Platform(deviceID, ReplyLevel, name, requestID)
}

// CommandSubscription is the one filter a device subscribes to for commands.
func CommandSubscription(deviceID string) string { return Platform(deviceID, CommandLevel, "#") }

// CommandReplyFilter is the platform's subscription for every reply.
const CommandReplyFilter = PlatformRoot + "/+/" + ReplyLevel + "/+/+"

// ErrBadReply wraps every reason a reply topic or payload is refused.
var ErrBadReply = errors.New("topic: bad command reply")

// ReplyTopic is a parsed reply topic.
type ReplyTopic struct {
	DeviceID, Name, RequestID string
}

// ParseReplyTopic parses $dm/{deviceId}/cmdreply/{name}/{requestId}.
func ParseReplyTopic(t string) (ReplyTopic, error) {
	parts := strings.Split(t, "/")
	if len(parts) != 5 || parts[0] != PlatformRoot || parts[2] != ReplyLevel {
		return ReplyTopic{}, fmt.Errorf("%w: topic %q is not %s/{deviceId}/%s/{name}/{requestId}", ErrBadReply, t, PlatformRoot, ReplyLevel)
	}
	r := ReplyTopic{DeviceID: parts[1], Name: parts[3], RequestID: parts[4]}
	switch {
	case !ValidDeviceID(r.DeviceID):
		return ReplyTopic{}, fmt.Errorf("%w: bad device ID in %q", ErrBadReply, t)
	case !ValidCommandName(r.Name):
		return ReplyTopic{}, fmt.Errorf("%w: bad command name in %q", ErrBadReply, t)
	case !ValidRequestID(r.RequestID):
		return ReplyTopic{}, fmt.Errorf("%w: bad request ID in %q", ErrBadReply, t)
	}
	return r, nil
}

// Reply is the payload a device answers a command with, for both MQTT
// versions: {"status": 200, "payload": <any JSON value>}. Status is the
// device's own result code (HTTP-like: 2xx success, 4xx bad request, 5xx
// the device failed); payload is optional.
type Reply struct {
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Reply status bounds: any code a device may return.
const (
	MinReplyStatus = 0
	MaxReplyStatus = 999
)

// ParseReply parses a reply payload. The status is required; unknown fields
// are refused so that a typo ("statu") is not read as status 0.
func ParseReply(b []byte) (Reply, error) {
	var raw struct {
		Status  json.RawMessage `json:"status"`
		Payload json.RawMessage `json:"payload"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Reply{}, fmt.Errorf("%w: payload is not {\"status\": N, \"payload\": ...}: %w", ErrBadReply, err)
	}
	if dec.More() {
		return Reply{}, fmt.Errorf("%w: data after the JSON object", ErrBadReply)
	}
	if len(raw.Status) == 0 || string(raw.Status) == "null" {
		return Reply{}, fmt.Errorf("%w: status is missing", ErrBadReply)
	}
	// An integer literal only: not "200", 2e2 or 200.0.
	n, err := strconv.Atoi(string(raw.Status))
	if err != nil || n < MinReplyStatus || n > MaxReplyStatus {
		return Reply{}, fmt.Errorf("%w: status %.20s is not an integer %d-%d", ErrBadReply, raw.Status, MinReplyStatus, MaxReplyStatus)
	}
	r := Reply{Status: n}
	if len(raw.Payload) > 0 && !bytes.Equal(raw.Payload, []byte("null")) {
		var c bytes.Buffer
		if err := json.Compact(&c, raw.Payload); err != nil {
			return Reply{}, fmt.Errorf("%w: payload: %w", ErrBadReply, err)
		}
		r.Payload = c.Bytes()
	}
	return r, nil
}
