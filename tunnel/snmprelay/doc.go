// Package snmprelay is the SNMP relay protocol between the platform's SNMP
// proxy and a device's agent: the messages that carry one SNMP request,
// its answer and a trap over the device's MQTT connection, and their
// conversion to and from gosnmp's varbinds. The platform side is
// snmprelay/proxy, the agent side snmprelay/executor; they share only this
// package and the topics of dm/topic/snmp.go.
//
//	OSS ──UDP v1/v2c "community@device"──> proxy ──$dm/{id}/snmp/req──> executor ──UDP v2c──> snmpd
//	    <──────── GetResponse ──────────── proxy <──$dm/{id}/snmp/resp── executor <──────────
//	trap receivers <── v2c trap + device ID ── proxy <──$dm/{id}/snmp/trap── executor <── traps
//
// Messages are JSON (a few hundred bytes; an SNMP request is bounded by a
// UDP datagram), so a device maker can implement the agent side without
// this package; docs/snmp.md is the contract.
package snmprelay
