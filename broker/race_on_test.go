//go:build race

package broker_test

// raceDetector: the race detector doubles every goroutine's stack, which
// hides what TestIdleConnectionsHoldNoGoroutineStack measures.
const raceDetector = true
