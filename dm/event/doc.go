// Package event is the in-process event bus behind the northbound event
// stream: presence, telemetry, shadow changes and command results of every
// device on this node, fanned out to watchers with filters.
//
//	presence sink ──┐
//	tele/# handler ─┤  Publish (never blocks)        ┌─> Watcher (buffer) ─> Next ─> gRPC / REST stream
//	shadows ────────┼──> Bus: cheap filters (type,  ─┼─> Watcher (buffer) ─> ...
//	commands ───────┘        device ID, cached labels)└─> ...
//	                                │ label cache miss
//	                                v
//	                          prefetcher ──> LabelSource (registry)
//
// The publisher's cost per event is one filter check and one non-blocking
// channel send per watcher, so a slow watcher never stalls a device's
// connection. When a watcher's buffer is full its watch is over: Next
// returns an *OverflowError with the number of events it missed, and the
// caller ends its stream with that status. A watcher that asks for a label
// filter has labels checked from a cache: on the publisher's side when the
// device's labels are cached, else on the watcher's side (Next), which
// reads the registry once per device per TTL, shared by every watcher; a
// miss also starts a background prefetch, so the publisher never waits for
// the store. Labels changed in the registry are seen within LabelTTL.
//
// In-process consumers that must see every event use Listen instead of a
// watcher: a synchronous callback that must not block.
//
// Telemetry is opt-in per watcher; Wants lets the telemetry handler skip
// copying payloads nobody watches.
package event
