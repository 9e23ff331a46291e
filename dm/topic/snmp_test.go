package topic

import "testing"

func TestSNMPTopics(t *testing.T) {
	t.Parallel()
	if got := SNMPRequestTopic("gw1"); got != "$dm/gw1/snmp/req" {
		t.Fatalf("request topic %q", got)
	}
	if !Match(SNMPAllFilter(SNMPResp), SNMPResponseTopic("gw1")) || Match(SNMPAllFilter(SNMPResp), SNMPTrapTopic("gw1")) {
		t.Fatal("SNMPAllFilter matches the wrong topics")
	}
	for _, tc := range []struct {
		topic, dev, kind string
		ok               bool
	}{
		{"$dm/gw1/snmp/req", "gw1", SNMPReq, true},
		{"$dm/gw1/snmp/resp", "gw1", SNMPResp, true},
		{"$dm/gw1/snmp/trap", "gw1", SNMPTrap, true},
		{"$dm/gw1/snmp/other", "", "", false},
		{"$dm/gw1/snmp/req/x", "", "", false},
		{"$dm/+/snmp/req", "", "", false},
		{"tele/gw1/snmp/req", "", "", false},
		{"$dm/gw1/tunnel/req", "", "", false},
	} {
		dev, kind, ok := ParseSNMPTopic(tc.topic)
		if dev != tc.dev || kind != tc.kind || ok != tc.ok {
			t.Errorf("%s: %q %q %v", tc.topic, dev, kind, ok)
		}
	}
	if !DeviceMayPublish("gw1", SNMPTrapTopic("gw1")) || DeviceMayPublish("gw1", SNMPTrapTopic("gw2")) {
		t.Fatal("a device publishes traps in its own namespace only")
	}
}
