package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// startPprof serves net/http/pprof on debug.pprof_addr when it is set
// (off by default: profiles and traces are not authenticated, so the
// address belongs on loopback). The bound address is added to addrs as
// "pprof" for the listening log line. The returned func stops it.
func (n *Node) startPprof(addrs map[string]net.Addr) (func(), error) {
	addr := n.cfg.Debug.PprofAddr
	if addr == "" {
		return func() {}, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug.pprof_addr: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("pprof server stopped", "error", err)
		}
	}()
	addrs["pprof"] = l.Addr()
	n.log.Warn("serving pprof without authentication", "addr", l.Addr().String())
	return func() { _ = srv.Close() }, nil
}
