package persist

import "context"

// Session store buckets. Keys inside a bucket that belong to one client start
// with the client ID and a NUL byte, so a prefix scan finds them all.
const (
	BucketClients  = "clients"  // key client ID: session metadata (expiry, protocol, ...)
	BucketSubs     = "subs"     // key client ID + "\x00" + filter: subscription
	BucketInflight = "inflight" // key client ID + "\x00" + ...: unacked or queued QoS 1/2 message
	BucketRetained = "retained" // key topic: retained message
	BucketWAL      = "wal"      // key sequence: a QoS >= 1 publish accepted but not yet fanned out
)

// Op is one write in a Store batch.
type Op struct {
	Bucket string
	Key    string
	Value  []byte // ignored when Delete
	Delete bool
}

// Store persists MQTT session state. Implementations are safe for
// concurrent use. Keys and values are opaque bytes to the store.
type Store interface {
	// Apply writes all ops atomically and in order. With sync, it returns
	// only once the batch is durable (fsync, or the Redis reply): the broker
	// acknowledges QoS >= 1 messages only after such a write.
	Apply(ctx context.Context, ops []Op, sync bool) error
	// Scan calls fn for every key in bucket that starts with prefix, in
	// ascending key order, until fn returns an error (returned as is). fn
	// must not retain value after it returns.
	Scan(ctx context.Context, bucket, prefix string, fn func(key string, value []byte) error) error
}
