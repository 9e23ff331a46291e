package main

import (
	"fmt"
	"log/slog"

	"github.com/lastmile-dm/lastmile/agent"
	"github.com/lastmile-dm/lastmile/agent/config"
	"github.com/lastmile-dm/lastmile/tunnel/endpoint"
)

// startTunnel hosts the tunnel endpoint on the agent's MQTT connection
// when the configuration trusts a platform key; the returned stop ends
// its sessions.
func startTunnel(cfg config.Config, a *agent.Agent, log *slog.Logger) (stop func(), err error) {
	t := cfg.Tunnel
	if !t.Enabled() {
		return func() {}, nil
	}
	keys, err := t.Keys()
	if err != nil {
		return nil, err
	}
	ep, err := endpoint.New(endpoint.Config{DeviceID: cfg.DeviceID, PubSub: a.PubSub(), AllowList: t.Allow,
		TrustedKeys: keys, MaxSessions: t.MaxSessions, IdleTimeout: t.IdleTimeout, MaxLifetime: t.MaxLifetime,
		Logger: log})
	if err != nil {
		return nil, fmt.Errorf("tunnel: %w", err)
	}
	if err := ep.Start(); err != nil {
		return nil, fmt.Errorf("tunnel: %w", err)
	}
	log.Info("tunnel endpoint ready", "allow", t.Allow)
	return func() { _ = ep.Close() }, nil
}

// startEndpoints starts what the platform reaches through the agent's
// connection: the tunnel endpoint and the SNMP executor.
func startEndpoints(cfg config.Config, a *agent.Agent, log *slog.Logger) (stop func(), err error) {
	stopTunnel, err := startTunnel(cfg, a, log)
	if err != nil {
		return nil, err
	}
	stopSNMP, err := startSNMP(cfg, a, log)
	if err != nil {
		stopTunnel()
		return nil, err
	}
	return func() { stopSNMP(); stopTunnel() }, nil
}
