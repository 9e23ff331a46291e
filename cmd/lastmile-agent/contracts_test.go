package main

import (
	"encoding/json"
	"testing"

	"github.com/lastmile-dm/lastmile/agent/conn"
)

// TestEncodeReport: the apply errors mirror the desired keys, keys that
// applied now clear their earlier error, a delta without failures removes
// them all, and a full report leaves them alone.
func TestEncodeReport(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		reported map[string]any
		errs     map[string]string
		want     string
	}{
		{"full report", map[string]any{"agent_version": "1"}, nil,
			`{"state":{"reported":{"agent_version":"1"}}}`},
		{"all applied", map[string]any{"wifi": map[string]any{"ssid": "x"}}, map[string]string{},
			`{"state":{"reported":{"agent_apply_errors":null,"wifi":{"ssid":"x"}}}}`},
		{"some failed", map[string]any{"wifi": map[string]any{"ssid": "x"}}, map[string]string{"ntp.server": "no handler"},
			`{"state":{"reported":{"agent_apply_errors":{"ntp":{"server":"no handler"},"wifi":{"ssid":null}},"wifi":{"ssid":"x"}}}}`},
	}
	for _, c := range cases {
		out, err := topicShadow{}.EncodeReport("gw", c.reported, c.errs)
		if err != nil {
			t.Fatal(err)
		}
		if out.Topic != "$dm/gw/shadow/update" || out.QoS != 1 {
			t.Errorf("%s: topic %s qos %d", c.name, out.Topic, out.QoS)
		}
		var got, want any
		_ = json.Unmarshal(out.Payload, &got)
		_ = json.Unmarshal([]byte(c.want), &want)
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if string(g) != string(w) {
			t.Errorf("%s:\n got %s\nwant %s", c.name, g, w)
		}
	}
}

func TestDecodeDelta(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		payload string
		ok      bool
		err     bool
	}{
		{`{"state":{"wifi":{"ssid":"x"}},"version":3}`, true, false},
		{`{"state":{}}`, false, false},
		{`{}`, false, false},
		{`{"state":`, false, true},
	} {
		_, ok, err := topicShadow{}.DecodeDelta("gw", conn.Message{Payload: []byte(c.payload)})
		if ok != c.ok || (err != nil) != c.err {
			t.Errorf("%s: ok %v err %v", c.payload, ok, err)
		}
	}
}
