// SPDX-License-Identifier: MIT

// Package packets holds the MQTT 3.1.1 and 5 packet codec: fixed headers, properties, encode and decode of every packet type.
//
// Part of lastmile's fork of github.com/mochi-mqtt/server/v2 (see
// third_party/mochi/FORK.md).
package packets
