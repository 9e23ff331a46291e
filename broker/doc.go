// Package broker is lastmile's MQTT core: mochi-mqtt v2 with one hook per
// concern. It never imports dm; cmd wires the domain to the small interfaces
// in contract.go.
//
//	devices / applications (MQTT 3.1.1, 5 over TCP, TLS, WebSocket)
//	                   |
//	  mochi-mqtt server (listeners, packets, topics, inflight)
//	     |            |              |                 |
//	 authHook     presence       metricsHook     persist.Hook
//	 CONNECT ->   (in authHook)  counters by     subscriptions, inflight,
//	 Authenticator Connected/    QoS, drops,     queued and retained
//	 CONNACK code  Disconnected  denials         messages, WAL before PUBACK
//	 ACL on every  with conn IDs                      |
//	 PUBLISH/SUB                                 persist.Store
//
// Delivery (delivery.go, conn.go): socket writes never block under
// mochi's client lock, so a subscriber that stops reading cannot stall the
// publishers of its topics; its backlog is bounded (max_pending_bytes),
// QoS >= 1 messages that find its write buffer full wait in its session
// queue, and what still cannot be kept is dropped or the client is
// disconnected per slow_consumer_policy, always counted and logged.
//
// Authentication runs in OnConnect, not OnConnectAuthenticate, because the
// latter can only answer 0x86: refusing from OnConnect means the hook writes
// the CONNACK with the right reason code itself and then returns the error
// (mochi closes the connection without a CONNACK of its own).
//
// Takeover: a CONNECT with a client ID that is connected closes the old
// connection at once (mochi's inheritClientSession). Presence carries a
// connection ID per connection, so the old connection's late disconnect is
// recognised as stale and never marks the device offline.
package broker
