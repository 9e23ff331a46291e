// Package command invokes commands on devices: a request to one connected
// device and its reply, like Azure IoT direct methods. The topic contract is
// in package topic (topic.CommandRequest, topic.CommandReply) and
// docs/mqtt-topics.md.
//
//	Invoke ──> Devices.Online? ──no──> ErrOffline at once
//	   │ yes
//	   ├─ pending[requestID] (bounded, per device too)
//	   ├─ Transport.Send  $dm/{id}/cmd/{name}              (MQTT 5: response topic + correlation data)
//	   │                  $dm/{id}/cmd/{name}/{requestID}  (MQTT 3.1.1)
//	   │
//	   └─ wait: reply ─────────> Result{device's status, payload}
//	          timeout ─────────> ErrTimeout (request ID remembered: a later reply counts as late)
//	          malformed reply ─> ErrBadReply
//
//	broker: $dm/+/cmdreply/+/+ ──> HandleReply (never blocks): the publisher
//	must be the addressed device, the request must be pending for that
//	device and command; everything else is dropped and counted.
//
// Requests are published at QoS 0: a command reaches a device at most once
// and only while it is connected; nothing is queued for later (use the
// shadow for state that must reach a device eventually).
package command
