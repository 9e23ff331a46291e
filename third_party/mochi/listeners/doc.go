// SPDX-License-Identifier: MIT

// Package listeners holds the network listeners mochi accepts clients on (TCP, websocket, unix socket, HTTP status).
//
// Part of lastmile's fork of github.com/mochi-mqtt/server/v2 (see
// third_party/mochi/FORK.md).
package listeners
