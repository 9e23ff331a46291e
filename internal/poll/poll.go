// Package poll lets tests wait for a condition instead of sleeping a
// guessed time: the condition is checked every few milliseconds until it
// holds, and the test fails, naming what it waited for, when a deadline
// passes first.
package poll

import (
	"testing"
	"time"
)

// Interval is how often Until checks its condition.
const Interval = 5 * time.Millisecond

// Until returns once cond reports true; if that takes longer than d it
// fails the test with "timed out after d waiting for what". cond runs on
// the test's goroutine and must not block.
func Until(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(Interval)
	}
}
