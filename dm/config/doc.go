// Package config is config push: named, versioned configuration documents
// (profiles), their assignment to devices, groups or fleet queries, and the
// rollout that delivers them at a bounded rate and tracks each device's
// outcome. The device side of the contract is commit-confirmed: a device
// applies a document, reconnects, and keeps it only if the platform
// confirms it hears the device (docs/config-push.md).
//
//	CreateProfile / CreateVersion ──> Store (versions are immutable)
//	Assign(target) ──> resolve devices (Targets) ──> Rollout + one
//	                   DeviceStatus per device, all "pending"
//	Runner (one per cluster, under a lease)
//	   every tick: release up to rate×tick pending devices:
//	   SetDeviceTarget, publish $dm/{id}/config/document (if online)
//	device ── config/get ──────> HandleGet: publish the target's document
//	device ── config/status ───> HandleStatus:
//	           received          ──> delivered
//	           awaiting_confirm  ──> publish config/confirm (stays delivered)
//	           applied | failed | rolled_back ──> final state, with reason
//
// The package imports no transport: the node adapts the broker to
// Messenger and the registry and shadow fleet query to Targets.
package config
