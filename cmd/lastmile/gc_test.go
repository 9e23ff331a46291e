package main

import (
	"runtime/debug"
	"testing"
)

// TestTuneGC: without GOGC the server's target applies; with it, the
// operator's value stays. Not parallel: it changes the process's GC.
func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	if got := tuneGC(); got != serveGCPercent || debug.SetGCPercent(serveGCPercent) != serveGCPercent {
		t.Fatalf("without GOGC: %d", got)
	}
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150) // what the runtime read from GOGC at start
	if got := tuneGC(); got != 150 || debug.SetGCPercent(150) != 150 {
		t.Fatalf("with GOGC=150: %d", got)
	}
}
