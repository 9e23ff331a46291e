package config

import (
	"net"
	"strings"
	"time"
)

// SNMPConfig configures the SNMP proxy and trap forwarding (docs/snmp.md).
type SNMPConfig struct {
	// Enabled serves SnmpService and forwards devices' traps; default true.
	Enabled bool `yaml:"enabled"`
	// Listen is the UDP address of the SNMP proxy for OSS tools
	// (":1161"); empty (default) runs no UDP listener.
	Listen string `yaml:"listen"`
	// ReadCommunity and WriteCommunity are what an OSS writes before
	// "@deviceId" to read, or to read and write. No default: the listener
	// needs at least one.
	ReadCommunity  string `yaml:"read_community"`
	WriteCommunity string `yaml:"write_community"`
	// Timeout bounds the wait for a device's answer.
	Timeout time.Duration `yaml:"timeout"`
	// TrapReceivers is a comma-separated list of host:port of the OSS
	// trap receivers (SNMP v2c).
	TrapReceivers string `yaml:"trap_receivers"`
	TrapCommunity string `yaml:"trap_community"`
	// TrapDeviceOID names the varbind carrying the device ID in each
	// forwarded trap.
	TrapDeviceOID string `yaml:"trap_device_oid"`
}

func defaultSNMP() SNMPConfig {
	return SNMPConfig{Enabled: true, Timeout: 5 * time.Second, TrapCommunity: "public",
		TrapDeviceOID: "1.3.6.1.4.1.8072.9999.9999.7.1.0"}
}

// Receivers splits TrapReceivers.
func (s SNMPConfig) Receivers() []string {
	var out []string
	for _, r := range strings.Split(s.TrapReceivers, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

func (s SNMPConfig) validate(bad func(key, format string, args ...any)) {
	if s.Timeout <= 0 || s.Timeout > time.Minute {
		bad("snmp.timeout", "%v must be between 0 and 1m", s.Timeout)
	}
	if s.Listen != "" {
		if _, _, err := net.SplitHostPort(s.Listen); err != nil {
			bad("snmp.listen", "%q is not host:port", s.Listen)
		}
		if s.ReadCommunity == "" && s.WriteCommunity == "" {
			bad("snmp.read_community", "set read_community or write_community for the UDP listener")
		}
	}
	if strings.Contains(s.ReadCommunity, "@") || strings.Contains(s.WriteCommunity, "@") {
		bad("snmp.read_community", "a community may not contain '@' (it separates the device ID)")
	}
	for _, r := range s.Receivers() {
		if _, port, err := net.SplitHostPort(r); err != nil || port == "" {
			bad("snmp.trap_receivers", "%q is not host:port", r)
		}
	}
}
