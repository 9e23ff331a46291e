// Package registry is the device registry: who each device is (ID, name,
// labels, groups), whether it may connect (enabled, banned, credentials), and
// whether it is connected now (presence).
//
//	northbound API ──> Service ──> Store          (devices, durable)
//	                      │  └───> PresenceStore  (online/offline, per connection)
//	broker connect ───> Authenticate (credential.Verifier caches argon2id)
//	broker presence ──> Connected / Disconnected
//	                      └───> Kicker (the broker) when a device is deleted,
//	                            disabled, banned or its credentials rotate
//
// Presence is keyed by connection: each connection has an opaque Conn ID
// (node + sequence), and a disconnect only marks a device offline when it
// comes from the connection that is current. A takeover (same client ID on a
// new connection) therefore always ends "online", whatever order the old
// connection's disconnect and the new connect arrive in.
//
// The store interfaces are defined here, by their consumer; the engines live
// in internal/store and share one contract test suite.
package registry
