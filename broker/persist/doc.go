// Package persist is the broker's session persistence: a mochi-mqtt hook that
// keeps subscriptions, inflight and queued QoS 1/2 messages, session metadata
// and retained messages in a Store, and restores them at start.
package persist
