package main

import (
	"os"
	"runtime/debug"
)

// serveGCPercent is the garbage collector's target for `lastmile serve`
// when the operator has not set GOGC. Every MQTT message allocates a
// little and briefly; at Go's default (100) the collector and the stack
// shrinking it does took a quarter of the server's CPU under shadow load,
// at 400 a tenth. The price is a heap up to five times the live data
// between collections instead of twice (docs/configuration.md).
const serveGCPercent = 400

// tuneGC applies serveGCPercent unless GOGC is set; it returns the
// percentage in force.
func tuneGC() int {
	if os.Getenv("GOGC") != "" {
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(serveGCPercent)
	return serveGCPercent
}
