// Package access decides what MQTT principals that are not devices may do.
//
// Devices need no configuration: each is confined to its own namespace by
// package topic. Applications (an OSS consumer subscribing to tele/+/#, a
// provisioning tool) and, when switched on for a lab, anonymous clients get
// a Role: a list of allow/deny topic rules for publish and subscribe.
//
//	config file roles ──┐
//	                    ├─> Service.Role(name) ──> Role.MayPublish/MaySubscribe
//	API (PutRole) ─> Store
//	                    └─> Application{role, secret hash} ──> AuthenticateApplication
//
// Rule semantics: a deny rule that touches a topic (or can match any topic a
// subscription filter can) wins; otherwise an allow rule must cover it;
// nothing matching means deny.
package access
