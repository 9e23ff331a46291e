package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"
)

// EnvPprofAddr names a loopback address on which `lastmile serve` offers
// Go's pprof handlers, for performance work (docs/performance.md). It is an
// environment variable outside LASTMILE_* (which name configuration keys)
// because it is a developer
// tool: it must never be on in production by accident of a config file.
const EnvPprofAddr = "LM_PPROF_ADDR"

// startPprof serves /debug/pprof/ on $LASTMILE_PPROF_ADDR when it is a
// loopback address.
func startPprof(log *slog.Logger) {
	addr := os.Getenv(EnvPprofAddr)
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Error("pprof not started: "+EnvPprofAddr+" must be a loopback host:port", "addr", addr)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof server", "addr", addr, "error", err)
		}
	}()
	log.Warn("pprof enabled", "addr", addr)
}
