package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/lastmile-dm/lastmile/agent"
	"github.com/lastmile-dm/lastmile/agent/command"
	"github.com/lastmile-dm/lastmile/agent/config"
	"github.com/lastmile-dm/lastmile/agent/state"
)

// The agent's side of the topic contract for commands and shadows
// (dm/topic/command.go, dm/topic/shadow.go), bound in contracts.go. A
// build without a binding runs telemetry only and says so at start; the
// dispatcher, the reporter and the applier are built (and so their
// configuration checked) either way.
var (
	commandContract agent.CommandContract
	shadowContract  agent.ShadowContract
)

// capabilities builds the device-management features from the
// configuration. push, when not nil, needs its Control set and Start
// called once the agent exists.
func capabilities(cfg config.Config, log *slog.Logger, level *slog.LevelVar, status func() agent.Status) (caps []agent.Capability, push *agent.ConfigPush, err error) {
	d, err := dispatcher(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	ap, err := applier(cfg, level)
	if err != nil {
		return nil, nil, err
	}
	rep := &state.Reporter{AgentVersion: version, FirmwareVersionFile: cfg.State.FirmwareVersionFile,
		Extra: func() map[string]any { return map[string]any{"agent_buffer": status().Buffer} }}
	if commandContract != nil {
		caps = append(caps, &agent.Commands{DeviceID: cfg.DeviceID, Contract: commandContract, Dispatcher: d, Logger: log})
	} else {
		log.Warn("commands are not bound to the topic contract in this build", "commands", d.Names())
	}
	if shadowContract != nil {
		caps = append(caps, &agent.Shadow{DeviceID: cfg.DeviceID, Contract: shadowContract, Reporter: rep, Applier: ap, Logger: log})
	} else {
		log.Warn("shadow sync is not bound to the topic contract in this build")
	}
	if c := cfg.ConfigPush; !c.Disabled {
		push = &agent.ConfigPush{DeviceID: cfg.DeviceID, Dir: c.Dir, ConfirmTimeout: c.ConfirmTimeout,
			Program: c.Handler.Argv, ProgramTimeout: c.Handler.Timeout, Logger: log.With("component", "config-push")}
		caps = append(caps, push)
	}
	return caps, push, nil
}

// dispatcher registers the built-in commands as configured.
func dispatcher(cfg config.Config, log *slog.Logger) (*command.Dispatcher, error) {
	d := command.NewDispatcher()
	c := cfg.Commands
	if !c.Reboot.Disabled {
		if err := d.Register("reboot", &command.Reboot{Argv: c.Reboot.Argv, Delay: c.Reboot.Delay, Log: log}); err != nil {
			return nil, err
		}
	}
	if !c.Ping.Disabled {
		if err := d.Register("ping", &command.Ping{Program: c.Ping.Program, MaxCount: c.Ping.MaxCount}); err != nil {
			return nil, err
		}
	}
	allow := map[string]command.Allowed{}
	for _, e := range c.Exec {
		allow[e.Name] = command.Allowed{Argv: e.Argv, AllowArgs: e.AllowArgs, Timeout: e.Timeout, MaxBytes: e.MaxBytes}
	}
	if err := d.Register("exec", &command.Exec{Allow: allow}); err != nil {
		return nil, err
	}
	return d, nil
}

// applier registers the configured state handlers and the built-in ones.
func applier(cfg config.Config, level *slog.LevelVar) (*state.Applier, error) {
	var ap state.Applier
	for _, h := range cfg.State.Handlers {
		if err := ap.Register(h.Prefix, &state.Program{Argv: h.Argv, Timeout: h.Timeout}); err != nil {
			return nil, err
		}
	}
	err := ap.Register(config.BuiltinLogLevel, state.HandlerFunc(func(_ context.Context, _ string, v any) (any, error) {
		s, _ := v.(string)
		var l slog.Level
		if err := l.UnmarshalText([]byte(s)); err != nil {
			return nil, fmt.Errorf("%w: log level %v: want debug, info, warn or error", state.ErrApply, v)
		}
		level.Set(l)
		return s, nil
	}))
	return &ap, err
}
