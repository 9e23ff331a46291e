// Package conn opens the agent's MQTT session to the platform: TCP or TLS
// with a pinned CA, the device's password or client certificate, MQTT 5
// with a fallback to MQTT 3.1.1 for brokers (or middleboxes) that refuse 5.
//
//	Dial (TCP | TLS, pinned CA, client cert)
//	  └─ Connect ── MQTT 5 (paho.golang) ──────────────┐
//	                 refused as a protocol version? ──> MQTT 3.1.1 (paho.mqtt.golang)
//	                                                   └─> Session
//
// A Session is one connection: it publishes (QoS 1 waits for the PUBACK),
// subscribes, delivers incoming messages to a handler, and reports when it
// ends. It never reconnects by itself: the agent's loop owns reconnecting,
// with its own backoff, so there is exactly one retry policy.
package conn
