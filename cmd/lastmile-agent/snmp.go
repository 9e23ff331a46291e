package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lastmile-dm/lastmile/agent"
	"github.com/lastmile-dm/lastmile/agent/config"
	"github.com/lastmile-dm/lastmile/dm/topic"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/executor"
)

// startSNMP runs the platform's relayed SNMP requests against the
// configured target, and forwards traps through the offline buffer, as
// configured in snmp_proxy.
func startSNMP(cfg config.Config, a *agent.Agent, log *slog.Logger) (stop func(), err error) {
	c := cfg.SNMPProxy
	var stops []func()
	stopAll := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	if c.Target != "" {
		community, err := readFileOr(c.Community, c.CommunityFile)
		if err != nil {
			return nil, fmt.Errorf("snmp_proxy.community_file: %w", err)
		}
		write, err := readFileOr(c.WriteCommunity, c.WriteCommunityFile)
		if err != nil {
			return nil, fmt.Errorf("snmp_proxy.write_community_file: %w", err)
		}
		ex, err := executor.New(executor.Config{DeviceID: cfg.DeviceID, PubSub: a.PubSub(), Target: c.Target,
			Community: community, WriteCommunity: write, Timeout: c.Timeout, Retries: *c.Retries, Logger: log})
		if err != nil {
			return nil, err
		}
		if err := ex.Start(); err != nil {
			return nil, err
		}
		stops = append(stops, func() { _ = ex.Close() })
		log.Info("SNMP proxy target ready", "target", c.Target, "set", write != "")
	}
	if c.TrapListen != "" {
		trapTopic := topic.SNMPTrapTopic(cfg.DeviceID)
		r, err := executor.ListenTraps(executor.TrapConfig{Listen: c.TrapListen, Community: c.TrapCommunity, Logger: log,
			Sink: func(t snmprelay.Trap) error {
				b, err := snmprelay.Encode(t)
				if err != nil {
					return err
				}
				if err := a.Buffer(trapTopic, b, time.Now()); err != nil {
					return err
				}
				log.Debug("trap buffered", "source", t.Source, "vars", len(t.Vars))
				return nil
			}})
		if err != nil {
			stopAll()
			return nil, err
		}
		stops = append(stops, r.Close)
		log.Info("SNMP trap listener ready", "listen", c.TrapListen)
	}
	return stopAll, nil
}

// readFileOr returns value, or the first line of file.
func readFileOr(value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, "\r"), nil
}
