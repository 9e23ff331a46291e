// Command lastmile-agent is lastmile's reference device agent for Linux
// CPEs and edge gateways: it connects to the platform with the device's
// credentials, publishes telemetry through an on-disk offline buffer and
// answers the platform. The logic lives in package agent; this file only
// reads the configuration, sets up logging and signals, and runs it.
//
//	lastmile-agent [--config FILE]     run (default /etc/lastmile-agent/config.yaml)
//	lastmile-agent check-config [--config FILE]
//	lastmile-agent version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/lastmile-dm/lastmile/agent"
	"github.com/lastmile-dm/lastmile/agent/config"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// defaultConfig is where the systemd unit and packages put the file.
const defaultConfig = "/etc/lastmile-agent/config.yaml"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && (args[0] == "version" || args[0] == "check-config" || args[0] == "run") {
		cmd, args = args[0], args[1:]
	}
	if cmd == "version" {
		fmt.Fprintln(stdout, "lastmile-agent", versionString())
		return 0
	}
	fs := flag.NewFlagSet("lastmile-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", envOr("LASTMILE_AGENT_CONFIG", defaultConfig), "configuration `file` (env LASTMILE_AGENT_CONFIG)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "lastmile-agent: %v\n", err)
		return 1
	}
	if cmd == "check-config" {
		fmt.Fprintf(stdout, "%s: OK (device %s, server %s, %d collectors)\n", *path, cfg.DeviceID, cfg.Server.Address, len(cfg.Collectors))
		return 0
	}
	level := new(slog.LevelVar)
	log := newLogger(cfg.Log, level, stderr)
	// The capabilities report the agent's status, which exists once the
	// agent does: a holder breaks the cycle.
	var a *agent.Agent
	caps, push, err := capabilities(cfg, log, level, func() agent.Status { return a.Status() })
	if err != nil {
		fmt.Fprintf(stderr, "lastmile-agent: %v\n", err)
		return 1
	}
	// The endpoints (tunnel, SNMP) use the agent's connection and feed its
	// buffer: they start after it exists and stop before it closes the
	// buffer.
	stopEndpoints := func() {}
	a, err = agent.New(agent.Config{File: cfg, Version: version, Logger: log, Capabilities: caps,
		BeforeClose: func() { stopEndpoints() }})
	if err != nil {
		fmt.Fprintf(stderr, "lastmile-agent: %v\n", err)
		return 1
	}
	stopEndpoints, err = startEndpoints(cfg, a, log)
	if err != nil {
		fmt.Fprintf(stderr, "lastmile-agent: %v\n", err)
		return 1
	}
	if push != nil {
		push.Control = a
		if err := push.Start(); err != nil {
			fmt.Fprintf(stderr, "lastmile-agent: %v\n", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil {
		log.Error("agent stopped with an error", "err", err)
		return 1
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// newLogger logs at a level the platform may change (agent.log_level).
func newLogger(c config.LogConfig, level *slog.LevelVar, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.Level))
	level.Set(l)
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		v += " " + bi.GoVersion
	}
	return v
}
