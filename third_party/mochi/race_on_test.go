// SPDX-License-Identifier: MIT

//go:build race

package mqtt

// raceDetector: the race detector allocates where the code under test
// does not, which hides what the allocation tests measure.
const raceDetector = true
