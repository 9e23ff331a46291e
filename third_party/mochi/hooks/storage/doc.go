// SPDX-License-Identifier: MIT

// Package storage holds the records mochi's storage hooks persist (clients, subscriptions, retained and inflight messages, system info).
//
// Part of lastmile's fork of github.com/mochi-mqtt/server/v2 (see
// third_party/mochi/FORK.md).
package storage
