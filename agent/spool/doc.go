// Package spool is the agent's offline buffer: a bounded, on-disk FIFO of
// telemetry messages that survives an agent restart and a power cut, and
// that the connection drains in order, one QoS 1 publish at a time.
//
//	Append ──> [seg 1][seg 42][seg 97 (active)] ──> Peek/Ack (head)
//	                 directory of segment files          state file
//
// A segment is an append-only file of records (record.go) named after the
// sequence number of its first record. The state file holds the head (the
// sequence number of the oldest record not yet acknowledged by the broker)
// and the count of records dropped because the spool was full. A segment is
// deleted once every record in it is acknowledged.
//
// Guarantees:
//   - Records come out in the order they went in, each with a sequence
//     number that increases by one and never repeats, across restarts.
//   - Nothing is lost within MaxBytes: a record appended and (with
//     SyncAlways) returned from Append is delivered unless the full policy
//     drops it, and every drop is counted.
//   - An acknowledgement that did not reach the disk before a crash makes
//     the record come out again: a duplicate, as QoS 1 allows, never a loss.
//     A torn record at the end of the last segment (power cut mid-write) is
//     cut off on Open; it was never acknowledged to the caller under
//     SyncAlways.
package spool
