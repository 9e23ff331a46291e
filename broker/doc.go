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
