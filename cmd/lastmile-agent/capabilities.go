package main

import (
	"log/slog"

	"github.com/lastmile-dm/lastmile/agent"
	"github.com/lastmile-dm/lastmile/agent/command"
	"github.com/lastmile-dm/lastmile/agent/config"
)

// capabilities builds the device-management features from the
// configuration. The command dispatcher is built (and so checked) here;
// binding it and the shadow reporter to the topic contract of
// dm/topic/command.go and dm/topic/shadow.go adds them to the list.
func capabilities(cfg config.Config, log *slog.Logger) ([]agent.Capability, error) {
	if _, err := dispatcher(cfg, log); err != nil {
		return nil, err
	}
	return nil, nil
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
