// Package conn opens the agent's MQTT session to the platform: TCP or TLS
// with a pinned CA, the device's password or client certificate, MQTT 5
// with a fallback to MQTT 3.1.1 for brokers (or middleboxes) that refuse 5.
//
//	Dial (TCP | TLS, pinned CA, client cert)
//	  └─ Connect ── MQTT 5 (paho.golang) ──────────────┐
//	                 refused as a protocol version? ──> MQTT 3.1.1 (v3.go, our own)
//	                                                   └─> Session
//
// A Session is one connection: it publishes (QoS 1 waits for the PUBACK),
// subscribes, delivers incoming messages to a handler, and reports when it
// ends. It never reconnects by itself: the agent's loop owns reconnecting,
// with its own backoff, so there is exactly one retry policy.
//
// MQTT 3.1.1 is a small client of our own (CONNECT, QoS 0/1 PUBLISH,
// QoS 1 SUBSCRIBE, keepalive) rather than paho.mqtt.golang, which links
// net/http, a WebSocket library and a proxy dialer: about 0.9 MB more in a
// binary meant for small CPEs. Its packet reader has a fuzz test.
package conn
