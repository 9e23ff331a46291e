// Package node wires one lastmile server process: it is the only place that
// knows every layer.
//
//	config.Config
//	     |
//	  OpenStore ──> embedded (Pebble at data_dir) | redis
//	     |            implements registry/access/token/persist stores
//	     v
//	registry.Service  access.Service  token.Service      prometheus.Registry
//	     ^   |             ^   |            |                 |
//	     |   | Kicker      |   | Kicker     |                 |
//	 authenticator ─────────┘   |            |                 |
//	 presenceSink  <─────┐      v            v                 v
//	     |   └──────> broker.Server     services.API (gRPC + REST gateway)
//	     |               MQTT tcp/tls/ws   grpc.addr      http.addr
//	     v
//	 broker.Authenticator / broker.PresenceSink
//
//	event.Bus <── presenceSink, tele/# subscription, command.Service
//	    └──> services EventService.Watch (events.go)
//	command.Service ── PublishMessage $dm/{id}/cmd/...; Subscribe $dm/+/cmdreply/+/+
//	    └──> services CommandService (commands.go)
//
// Run binds every listener, logs one "listening" line with the actual
// addresses (so ":0" works in tests), and on context cancellation stops
// accepting (HTTP, gRPC), shuts the broker down (which flushes sessions and
// records every disconnect), marks this node's devices offline and closes
// the store, in that order, so nothing writes to a closed store.
//
// Connection IDs in presence are node name + "/" + boot ID + "/" + the
// broker's per-process counter: unique across nodes and restarts, so a
// stale disconnect from before a restart can never mark a device offline.
//
// Each capability that speaks MQTT wires itself in its own file: shadow.go
// serves device shadows over the broker's in-process messaging, and
// subscriptions.go fans the broker's one SubscriptionSink out to every
// component that wants to know when a client subscribes. pprof.go serves
// Go's profiles when debug.pprof_addr is set (off by default).
package node
