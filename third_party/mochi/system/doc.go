// SPDX-License-Identifier: MIT

// Package system holds the broker's $SYS counters.
//
// Part of lastmile's fork of github.com/mochi-mqtt/server/v2 (see
// third_party/mochi/FORK.md).
package system
