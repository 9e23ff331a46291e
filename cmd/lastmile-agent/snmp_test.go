package main

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/lastmile-dm/lastmile/internal/netem"
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

	oss, traps := trapReceiver(t, "oss-traps")

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
	// MQTT 3.1.1: requests and answers are correlated in the payload, so
	// the relay needs nothing of MQTT 5 (the tunnel test runs over 5).
	cfg := baseConfig(t, dir, id, secret, pl.addr("mqtt"), "3.1.1") + fmt.Sprintf(`
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

	events := pl.watchEvents(t, "--device", id, "--type", "trap", "-o", "json")
	if out, ok := snmptest.Tool(t, "snmptrap", "-v2c", "-c", "public", trapPort, "", "1.3.6.1.6.3.1.1.5.3",
		"1.3.6.1.2.1.2.2.1.1.1", "i", "1"); !ok {
		t.Fatal(out)
	}
	select {
	case vars := <-traps:
		if trapOID, device, _ := trapFields(vars); trapOID != "1.3.6.1.6.3.1.1.5.3" || device != id {
			t.Fatalf("forwarded trap: %+v", vars)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no trap reached the OSS receiver")
	}
	// The trap is on the event stream too, with its varbinds.
	waitFor(t, 10*time.Second, "the trap event", func() bool {
		out := events.String()
		return strings.Contains(out, `"EVENT_TYPE_TRAP"`) && strings.Contains(out, "1.3.6.1.2.1.2.2.1.1.1") &&
			strings.Contains(out, `"device_id":"`+id+`"`)
	})
	a.stop(t)
}

// trapReceiver is the OSS's trap receiver (gosnmp) on a free port: it
// delivers the varbinds of every trap with community.
func trapReceiver(t *testing.T, community string) (string, chan []gosnmp.SnmpPDU) {
	t.Helper()
	traps := make(chan []gosnmp.SnmpPDU, 16)
	tl := gosnmp.NewTrapListener()
	tl.Params = &gosnmp.GoSNMP{Version: gosnmp.Version2c}
	tl.OnNewTrap = func(p *gosnmp.SnmpPacket, _ *net.UDPAddr) {
		if p.Community == community {
			traps <- p.Variables
		}
	}
	addr := snmptest.FreeUDP(t)
	errc := make(chan error, 1)
	go func() { errc <- tl.Listen(addr) }()
	select {
	case <-tl.Listening():
	case err := <-errc:
		t.Fatal(err)
	}
	t.Cleanup(tl.Close)
	return addr, traps
}

// trapFields picks snmpTrapOID, the device ID and ifIndex.2-style marker
// (the value of 1.3.6.1.2.1.2.2.1.1.*) out of a forwarded trap.
func trapFields(vars []gosnmp.SnmpPDU) (trapOID, device string, marker int) {
	for _, v := range vars {
		name := strings.TrimPrefix(v.Name, ".")
		switch {
		case name == "1.3.6.1.6.3.1.1.4.1.0":
			s, _ := v.Value.(string)
			trapOID = strings.TrimPrefix(s, ".")
		case name == "1.3.6.1.4.1.8072.9999.9999.7.1.0":
			b, _ := v.Value.([]byte)
			device = string(b)
		case strings.HasPrefix(name, "1.3.6.1.2.1.2.2.1.1."):
			marker, _ = v.Value.(int)
		}
	}
	return trapOID, device, marker
}

// TestTrapsBufferedWhileOffline: traps the agent receives while its link
// to the platform is down, across a restart of the agent, reach the OSS
// in order once the link is back.
func TestTrapsBufferedWhileOffline(t *testing.T) {
	t.Parallel()
	oss, traps := trapReceiver(t, "public")
	pl := startPlatformWith(t, fmt.Sprintf("\nsnmp: {trap_receivers: \"%s\"}\n", oss))
	link, err := netem.New(pl.addr("mqtt"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = link.Close() })
	id := "gw-traps"
	dir := t.TempDir()
	secret := pl.createDevice(t, id)
	trapPort := snmptest.FreeUDP(t)
	cfg := agentConfig(t, dir, baseConfig(t, dir, id, secret, link.Addr(), "5")+fmt.Sprintf("\nsnmp_proxy: {trap_listen: \"%s\"}\n", trapPort))
	a := startAgent(t, cfg)
	waitFor(t, 20*time.Second, "the agent to connect", func() bool { return strings.Contains(a.logText(), "msg=connected") })
	link.SetMode(netem.Cut)
	waitFor(t, 20*time.Second, "the agent to notice the cut", func() bool { return strings.Contains(a.logText(), "connection lost") })

	send := func(n int) {
		t.Helper()
		if out, ok := snmptest.Tool(t, "snmptrap", "-v2c", "-c", "public", trapPort, "", "1.3.6.1.6.3.1.1.5.3",
			fmt.Sprintf("1.3.6.1.2.1.2.2.1.1.%d", n), "i", fmt.Sprint(n)); !ok {
			t.Fatal(out)
		}
	}
	send(1)
	send(2)
	waitFor(t, 10*time.Second, "the agent to buffer two traps", func() bool {
		return strings.Count(a.logText(), "trap buffered") == 2
	})
	// The traps are in the buffer on disk: restart the agent offline.
	a.stop(t)
	a = startAgent(t, cfg)
	waitFor(t, 20*time.Second, "the restarted agent to listen for traps", func() bool {
		return strings.Contains(a.logText(), "SNMP trap listener ready")
	})
	send(3)
	select {
	case vars := <-traps:
		t.Fatalf("a trap arrived while the link was cut: %+v", vars)
	default:
	}
	link.SetMode(netem.Up)
	for want := 1; want <= 3; want++ {
		select {
		case vars := <-traps:
			if _, device, marker := trapFields(vars); device != id || marker != want {
				t.Fatalf("trap %d: device %q marker %d: %+v", want, device, marker, vars)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("trap %d never reached the OSS", want)
		}
	}
	a.stop(t)
}
