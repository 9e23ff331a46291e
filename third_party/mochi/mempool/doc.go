// SPDX-License-Identifier: MIT

// Package mempool holds a pool of bytes.Buffers for encoding packets.
//
// Part of lastmile's fork of github.com/mochi-mqtt/server/v2 (see
// third_party/mochi/FORK.md).
package mempool
