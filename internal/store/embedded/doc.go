// Package embedded is lastmile's default store: one Pebble database in the
// data directory, holding the registry, presence, roles, applications,
// tokens and MQTT session state. No other process is needed.
//
//	key prefix        value
//	d/{device id}     registry.Device (JSON)
//	p/{device id}     registry.Presence (JSON)
//	r/{role}          access.Role (JSON)
//	a/{application}   access.Application (JSON)
//	t/{token id}      token.Token (JSON)
//	s/{bucket}/{key}  opaque session bytes (broker/persist)
//
// Reads go straight to Pebble. Every read-modify-write (create-if-absent,
// revision compare-and-set, stale-disconnect checks) runs under one mutex,
// the single writer path, so it is atomic without transactions. Durable
// writes use Pebble's synced commits, which group concurrent commits into
// one fsync: that is what makes QoS 1 persistence affordable.
//
// Pebble takes a lock file in the directory, so a second process (a second
// server, or `lastmile token create` while the server runs) fails to open it
// instead of corrupting it.
package embedded
