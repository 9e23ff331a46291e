// SPDX-License-Identifier: MIT

//go:build !race

package mqtt

const raceDetector = false
