package main

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/lastmile-dm/lastmile/internal/snmptest"
)

var counters = regexp.MustCompile(`(Timeticks|Counter32|Counter64|Gauge32): .*`)

// TestSNMPProxyThroughAgent: the real platform's SNMP proxy and the real
// agent: net-snmp tools as the OSS get from a real snmpd behind the agent
// what they get asking it directly, a SET lands, and a trap sent to the
// agent reaches the OSS's trap receiver with the device ID.
func TestSNMPProxyThroughAgent(t *testing.T) {
	t.Parallel()
	snmpd := snmptest.SNMPD(t, "rocommunity public 127.0.0.1\nrwcommunity private 127.0.0.1\nsysLocation lab-rack-7\n", "public")

	type trap struct{ vars []gosnmp.SnmpPDU }
	traps := make(chan trap, 4)
	tl := gosnmp.NewTrapListener()
	tl.Params = &gosnmp.GoSNMP{Version: gosnmp.Version2c}
	tl.OnNewTrap = func(p *gosnmp.SnmpPacket, _ *net.UDPAddr) {
		if p.Community == "oss-traps" {
			traps <- trap{p.Variables}
		}
	}
	oss := snmptest.FreeUDP(t)
	errc := make(chan error, 1)
	go func() { errc <- tl.Listen(oss) }()
	select {
	case <-tl.Listening():
	case err := <-errc:
		t.Fatal(err)
	}
	t.Cleanup(tl.Close)

	pl := startPlatformWith(t, fmt.Sprintf(`
snmp:
  listen: "127.0.0.1:0"
  read_community: oss-ro
  write_community: oss-rw
  trap_receivers: "%s"
  trap_community: oss-traps
`, oss))
	id := "gw-snmp"
	dir := t.TempDir()
	secret := pl.createDevice(t, id)
	trapPort := snmptest.FreeUDP(t)
	cfg := baseConfig(t, dir, id, secret, pl.addr("mqtt"), "5") + fmt.Sprintf(`
snmp_proxy:
  target: "%s"
  community: public
  write_community: private
  timeout: 1s
  trap_listen: "%s"
`, snmpd, trapPort)
	a := startAgent(t, agentConfig(t, dir, cfg))
	proxyAddr := pl.addr("snmp")
	if proxyAddr == "" {
		t.Fatalf("the platform logged no snmp address")
	}
	// The first request may come before the agent subscribed: poll.
	waitFor(t, 20*time.Second, "the proxy to reach the agent", func() bool {
		_, ok := snmptest.Tool(t, "snmpget", "-v2c", "-t", "0.5", "-r", "0", "-c", "oss-ro@"+id, proxyAddr, "1.3.6.1.2.1.1.6.0")
		return ok
	})

	same := func(tool string, args ...string) string {
		t.Helper()
		var via, direct []string
		for _, x := range args {
			switch x {
			case "@c":
				via, direct = append(via, "-c", "oss-ro@"+id), append(direct, "-c", "public")
			case "@a":
				via, direct = append(via, proxyAddr), append(direct, snmpd)
			default:
				via, direct = append(via, x), append(direct, x)
			}
		}
		d, dok := snmptest.Tool(t, tool, direct...)
		v, vok := snmptest.Tool(t, tool, via...)
		d, v = counters.ReplaceAllString(d, "$1: N"), counters.ReplaceAllString(v, "$1: N")
		if d != v || dok != vok {
			t.Fatalf("%s %v\nvia proxy (%v):\n%s\ndirect (%v):\n%s", tool, args, vok, v, dok, d)
		}
		return v
	}
	if out := same("snmpget", "-v2c", "@c", "@a", "1.3.6.1.2.1.1.6.0", "1.3.6.1.2.1.1.99.0"); !strings.Contains(out, "lab-rack-7") {
		t.Fatalf("snmpget: %s", out)
	}
	same("snmpwalk", "-v2c", "@c", "@a", "1.3.6.1.2.1.1")
	if out := same("snmpbulkwalk", "-v2c", "-Cr20", "@c", "@a", "1.3.6.1.2.1.2.2.1.2"); !strings.Contains(out, `"lo"`) {
		t.Fatalf("snmpbulkwalk: %s", out)
	}
	same("snmpget", "-v1", "@c", "@a", "1.3.6.1.2.1.1.99.0")
	if out, ok := snmptest.Tool(t, "snmpset", "-v2c", "-c", "oss-rw@"+id, proxyAddr, "1.3.6.1.2.1.1.4.0", "s", "noc@example.net"); !ok {
		t.Fatalf("snmpset: %s", out)
	}
	if out, _ := snmptest.Tool(t, "snmpget", "-v2c", "-c", "public", snmpd, "1.3.6.1.2.1.1.4.0"); !strings.Contains(out, "noc@example.net") {
		t.Fatalf("snmpd did not take the SET: %s", out)
	}

	if out, ok := snmptest.Tool(t, "snmptrap", "-v2c", "-c", "public", trapPort, "", "1.3.6.1.6.3.1.1.5.3",
		"1.3.6.1.2.1.2.2.1.1.1", "i", "1"); !ok {
		t.Fatal(out)
	}
	select {
	case tr := <-traps:
		var trapOID, device string
		for _, v := range tr.vars {
			switch strings.TrimPrefix(v.Name, ".") {
			case "1.3.6.1.6.3.1.1.4.1.0":
				trapOID, _ = v.Value.(string)
			case "1.3.6.1.4.1.8072.9999.9999.7.1.0":
				b, _ := v.Value.([]byte)
				device = string(b)
			}
		}
		if strings.TrimPrefix(trapOID, ".") != "1.3.6.1.6.3.1.1.5.3" || device != id {
			t.Fatalf("forwarded trap: %+v", tr.vars)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no trap reached the OSS receiver")
	}
	a.stop(t)
}
