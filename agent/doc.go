// Package agent is lastmile's reference device agent for Linux CPEs and
// edge gateways. It keeps one outbound MQTT connection to the platform,
// publishes telemetry through an on-disk offline buffer, and hands
// device-management messages to capabilities.
//
//	collectors ──Sample──> enqueue ──> spool (disk, bounded, ordered)
//	 (file, command,                      │ Peek / Ack
//	  snmp, status)                       v
//	                 ┌──────────── drain: one QoS 1 publish at a time,
//	 backoff ──> connect loop ──> Session (MQTT 5 | 3.1.1, TCP | TLS)
//	 (jitter)        │                    │ incoming $dm/{id}/...
//	                 └──> Capability.Connected      v
//	                      Capability.Handle <── route by filter
//	                      (commands, shadow sync, config apply)
//
// Telemetry never goes around the spool: every sample is appended, and the
// connection drains the spool in order and acknowledges a record only after
// the broker's PUBACK. So an outage, a restart of the agent or a power cut
// loses nothing within the spool's bound; a record whose PUBACK was lost
// is sent again (a duplicate, as QoS 1 allows); its "seq" field lets a
// consumer drop it.
//
// Capabilities are the device-management features bound to the platform's
// topic contract: each declares the filters it needs, is told about every
// (re)connection, and gets the messages on its filters. The connect loop
// knows nothing about them.
//
// A config-apply capability with commit-confirmed rollback fits the same
// shape: on a config message it keeps the previous configuration, applies
// the new one through its handler (and, if the configuration moves the
// connection, Agent.SetServer + Agent.Reconnect), then arms a timer
// (default 120 s, on the same injected clock as the backoff). Connected
// tells it the agent is back; the platform's confirmation on its filter
// disarms the timer and it reports "applied". On expiry it restores the
// previous configuration, SetServer/Reconnect with the previous settings
// (Reconnect also cuts a backoff wait short), and reports "rolled_back"
// with the reason once Connected fires again.
package agent
