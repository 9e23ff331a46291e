package config

import (
	"net"
	"time"
)

// SNMPProxyConfig lets the platform's SNMP proxy reach an SNMP agent the
// device can reach (its own snmpd or a LAN device), and forwards the
// traps that device sends (docs/snmp.md).
type SNMPProxyConfig struct {
	// Target is host:port of the SNMP agent that runs the platform's
	// requests (port default 161). Empty: the device answers no SNMP
	// request.
	Target string `yaml:"target"`
	// Community reads (GET, GETNEXT, GETBULK) at Target.
	Community     string `yaml:"community"`
	CommunityFile string `yaml:"community_file"`
	// WriteCommunity is used for SET; empty refuses SET (noAccess).
	WriteCommunity     string `yaml:"write_community"`
	WriteCommunityFile string `yaml:"write_community_file"`
	// Timeout per attempt (default 2s) and Retries (default 1).
	Timeout time.Duration `yaml:"timeout"`
	Retries *int          `yaml:"retries"`
	// TrapListen is the local UDP address where the agent receives SNMP
	// v2c traps to forward ("127.0.0.1:162"); empty: no trap listener.
	TrapListen string `yaml:"trap_listen"`
	// TrapCommunity, if set, is the only community accepted on traps.
	TrapCommunity string `yaml:"trap_community"`
}

func (s *SNMPProxyConfig) check() error {
	if s.Target != "" {
		if _, _, err := net.SplitHostPort(s.Target); err != nil {
			s.Target = net.JoinHostPort(s.Target, "161")
		}
		if s.Community != "" && s.CommunityFile != "" {
			return keyError("snmp_proxy.community_file", "set either community or community_file, not both")
		}
		if s.Community == "" && s.CommunityFile == "" {
			return keyError("snmp_proxy.community", "required with snmp_proxy.target (or community_file)")
		}
		if s.WriteCommunity != "" && s.WriteCommunityFile != "" {
			return keyError("snmp_proxy.write_community_file", "set either write_community or write_community_file, not both")
		}
	}
	if s.Timeout == 0 {
		s.Timeout = 2 * time.Second
	}
	if s.Timeout < 0 {
		return keyError("snmp_proxy.timeout", "negative")
	}
	if s.Retries == nil {
		one := 1
		s.Retries = &one
	}
	if *s.Retries < 0 {
		return keyError("snmp_proxy.retries", "negative")
	}
	if s.TrapListen != "" {
		if _, port, err := net.SplitHostPort(s.TrapListen); err != nil || port == "" {
			return keyError("snmp_proxy.trap_listen", "%q is not host:port", s.TrapListen)
		}
	}
	return nil
}
