package main

import (
	"strings"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/dm/token"
	"github.com/lastmile-dm/lastmile/internal/apitest"
	"github.com/lastmile-dm/lastmile/internal/snmptest"
	"github.com/lastmile-dm/lastmile/internal/tunneltest"
	"github.com/lastmile-dm/lastmile/services"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/executor"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/proxy"
)

// TestSNMPCommands: lmctl snmp get, walk and set against the real API, a
// real broker, the agent's executor and a real snmpd.
func TestSNMPCommands(t *testing.T) {
	t.Parallel()
	snmpd := snmptest.SNMPD(t, "rocommunity public 127.0.0.1\nrwcommunity private 127.0.0.1\nsysLocation lab-rack-7\n", "public")
	b := tunneltest.Broker(t)
	ex, err := executor.New(executor.Config{DeviceID: "gw1", PubSub: tunneltest.Connect(t, b, "gw1"), Target: snmpd,
		Community: "public", WriteCommunity: "private", Timeout: 2 * time.Second, Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := ex.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ex.Close() })
	p, err := proxy.New(proxy.Config{PubSub: tunneltest.Platform{B: b}, Connected: b.Connected, Logger: tunneltest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	c := apitest.NewCore(t)
	lmctl := lmctlAt(c.Serve(t, services.Config{SNMP: p, Logger: tunneltest.Quiet}).GRPCAddr, c.Token(t, "noc", token.PermSNMPWrite))
	out, errs, rc := lmctl("snmp", "get", "gw1", "1.3.6.1.2.1.1.6.0")
	if rc != 0 || !strings.Contains(out, `octet_string  "lab-rack-7"`) {
		t.Fatalf("get: %d %s %s", rc, out, errs)
	}
	out, errs, rc = lmctl("snmp", "walk", "gw1", "1.3.6.1.2.1.1")
	if rc != 0 || strings.Count(out, "\n") < 9 || !strings.Contains(out, ".1.3.6.1.2.1.1.6.0") {
		t.Fatalf("walk: %d %s %s", rc, out, errs)
	}
	out, errs, rc = lmctl("-o", "json", "snmp", "walk", "gw1", "1.3.6.1.2.1.1.6")
	if rc != 0 || !strings.Contains(out, `"text": "lab-rack-7"`) {
		t.Fatalf("walk -o json: %d %s %s", rc, out, errs)
	}
	if out, errs, rc = lmctl("snmp", "set", "gw1", "1.3.6.1.2.1.1.4.0", "s", "noc@example.net"); rc != 0 {
		t.Fatalf("set: %d %s %s", rc, out, errs)
	}
	if out, _ := snmptest.Tool(t, "snmpget", "-v2c", "-c", "public", snmpd, "1.3.6.1.2.1.1.4.0"); !strings.Contains(out, "noc@example.net") {
		t.Fatalf("snmpd after lmctl snmp set: %s", out)
	}
	// An SNMP error fails the command and says which.
	if _, errs, rc = lmctl("snmp", "set", "gw1", "1.3.6.1.2.1.1.3.0", "t", "5"); rc == 0 || !strings.Contains(errs, "SNMP error") {
		t.Fatalf("set of a read-only object: %d %s", rc, errs)
	}
	for _, bad := range [][]string{
		{"snmp", "get", "gw1"},
		{"snmp", "set", "gw1", "1.3.6.1.2.1.1.4.0", "q", "x"},
		{"snmp", "set", "gw1", "1.3.6.1.2.1.1.4.0", "i", "x"},
		{"snmp", "walk", "gw1"},
	} {
		if _, errs, rc = lmctl(bad...); rc == 0 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q", bad, rc, errs)
		}
	}
	if _, errs, rc = lmctl("snmp", "get", "nodev", "1.3.6.1.2.1.1.6.0"); rc == 0 || !strings.Contains(errs, "offline") {
		t.Fatalf("offline device: %d %s", rc, errs)
	}
}
