// Package shadow keeps device shadows: the platform's copy of each device's
// state, with AWS IoT Device Shadow semantics. A device has one classic
// (unnamed) shadow and any number of named shadows. Each is a JSON document
//
//	{"state":    {"desired": {...}, "reported": {...}},
//	 "metadata": {"desired": {...}, "reported": {...}},   per-leaf {"timestamp": t}
//	 "version": n, "timestamp": t}
//
// and the delta (desired values that reported does not match) is computed,
// never stored.
//
//	device (MQTT) ─┐                        ┌─> Store (CAS on version)
//	               ├─> ParseUpdate ─> Service.Update ─┤
//	API (gRPC) ────┘    (limits,      (merge, delta,  └─> Notifier (event stream)
//	                     400/413)      409 on version)
//
// Updates deep-merge into the stored state; a null value deletes a key. An
// update that carries a version applies only if it equals the stored one
// (ErrConflict otherwise). Writes of one shadow are serialised in-process
// and made atomic across nodes by the store's compare-and-set on the
// version, so concurrent writers never lose an update and versions increase
// by exactly one per accepted update.
//
// Every refusal wraps one of the sentinel errors; Code maps them to the
// numeric codes of the MQTT rejected payload (400, 404, 409, 413, 429, 500).
// The MQTT topics are in package topic (shadow.go) and docs/mqtt-topics.md.
package shadow
