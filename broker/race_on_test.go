//go:build race

package broker_test

// raceDetector: the race detector doubles every goroutine's stack, which
// hides what TestPingedIdleConnectionsKeepSmallStacks measures.
const raceDetector = true
