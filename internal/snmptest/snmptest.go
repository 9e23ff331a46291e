// Package snmptest runs the real SNMP pieces tests need: a net-snmp snmpd
// on a free UDP port of 127.0.0.1 with a given configuration, and the
// net-snmp command-line tools (snmpget, snmpwalk, snmpbulkwalk, snmpset,
// snmptrap) as an OSS runs them: numeric OIDs, no MIBs.
package snmptest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"
)

// FreeUDP returns a UDP address of 127.0.0.1 that was free a moment ago.
func FreeUDP(tb testing.TB) string {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().String()
}

// SNMPD starts snmpd with conf (snmpd.conf lines) and returns its address
// once it answers community. It skips the test when snmpd is missing.
func SNMPD(tb testing.TB, conf, community string) string {
	tb.Helper()
	bin := "/usr/sbin/snmpd"
	if p, err := exec.LookPath("snmpd"); err == nil {
		bin = p
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Skip("snmpd not installed (make test-deps)")
	}
	dir := tb.TempDir()
	path := filepath.Join(dir, "snmpd.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	addr := FreeUDP(tb)
	cmd := exec.Command(bin, "-f", "-Lo", "-C", "-c", path, "-M", "/dev/null", "-p", filepath.Join(dir, "pid"), "udp:"+addr) //nolint:gosec // snmpd from PATH, for tests
	cmd.Env = append(os.Environ(), "SNMP_PERSISTENT_DIR="+dir, "MIBS=")
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	host, port, _ := net.SplitHostPort(addr)
	p, _ := net.LookupPort("udp", port)
	c := &gosnmp.GoSNMP{Target: host, Port: uint16(p), Community: community, Version: gosnmp.Version2c, //nolint:gosec // a port
		Timeout: 200 * time.Millisecond, Retries: 0}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := c.Connect(); err == nil {
			_, err = c.Get([]string{"1.3.6.1.2.1.1.3.0"})
			_ = c.Conn.Close()
			if err == nil {
				return addr
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("snmpd on %s never answered", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Tool runs a net-snmp tool (snmpget ...) without MIBs and returns its
// combined output and whether it exited 0. It skips the test when the
// tool is missing.
func Tool(tb testing.TB, name string, args ...string) (string, bool) {
	tb.Helper()
	if _, err := exec.LookPath(name); err != nil {
		tb.Skipf("%s not installed (apt-get install snmp)", name)
	}
	cmd := exec.Command(name, append([]string{"-M", "/dev/null", "-On"}, args...)...) //nolint:gosec // a net-snmp tool named by the test
	cmd.Env = append(os.Environ(), "MIBS=", "SNMPCONFPATH=/dev/null")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err == nil
}
