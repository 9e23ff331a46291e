package topic

import "strings"

// SNMP topics. The platform's SNMP proxy relays requests to the device's
// agent, which runs them against its configured SNMP target and answers;
// the agent forwards the traps it receives.
//
//	$dm/{deviceId}/snmp/req    platform -> device   one request (QoS 0)
//	$dm/{deviceId}/snmp/resp   device -> platform   its answer (QoS 0)
//	$dm/{deviceId}/snmp/trap   device -> platform   a trap (QoS 1, buffered offline)
//
// Requests and answers are correlated by the ID in the payload, so the
// contract works the same over MQTT 3.1.1 and 5.
const (
	SNMPLevel = "snmp"
	SNMPReq   = "req"
	SNMPResp  = "resp"
	SNMPTrap  = "trap"
)

// SNMPRequestTopic is where the platform publishes a device's SNMP requests.
func SNMPRequestTopic(deviceID string) string { return Platform(deviceID, SNMPLevel, SNMPReq) }

// SNMPResponseTopic is where the device answers them.
func SNMPResponseTopic(deviceID string) string { return Platform(deviceID, SNMPLevel, SNMPResp) }

// SNMPTrapTopic is where the device publishes the traps it received.
func SNMPTrapTopic(deviceID string) string { return Platform(deviceID, SNMPLevel, SNMPTrap) }

// SNMPAllFilter matches one kind (SNMPResp, SNMPTrap) of every device's
// SNMP topics, for the platform.
func SNMPAllFilter(kind string) string { return Platform("+", SNMPLevel, kind) }

// ParseSNMPTopic splits an SNMP topic into device and kind (SNMPReq,
// SNMPResp or SNMPTrap); ok is false for any other topic.
func ParseSNMPTopic(name string) (deviceID, kind string, ok bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != PlatformRoot || parts[2] != SNMPLevel || !ValidDeviceID(parts[1]) {
		return "", "", false
	}
	switch parts[3] {
	case SNMPReq, SNMPResp, SNMPTrap:
		return parts[1], parts[3], true
	}
	return "", "", false
}
