package shadow

import (
	"testing"
)

func TestFilter(t *testing.T) {
	t.Parallel()
	doc := &Document{State: State{
		Desired:  obj(t, `{"firmware":{"version":"2.1.0"},"interval":30}`),
		Reported: obj(t, `{"firmware":{"version":"2.0.0"},"interval":30,"temp":21.5,"up":true}`),
	}}
	north := map[string]string{"region": "north", "tier": "gold"}
	cases := []struct {
		filter string
		labels map[string]string
		doc    *Document
		want   bool
	}{
		{``, nil, nil, true},
		{`reported.firmware.version != "2.1.0" AND labels.region = "north"`, north, doc, true},
		{`reported.firmware.version != "2.1.0" and labels.region = "south"`, north, doc, false},
		{`reported.firmware.version != "2.1.0"`, nil, nil, true}, // no shadow: absent field differs
		{`reported.firmware.version = "2.0.0"`, nil, doc, true},
		{`reported.firmware.version == "2.0.0"`, nil, doc, true},
		{`reported.firmware = "2.0.0"`, nil, doc, false},
		{`reported.temp > 20`, nil, doc, true},
		{`reported.temp >= 21.50`, nil, doc, true},
		{`reported.temp < 21.5`, nil, doc, false},
		{`reported.temp <= 21.5 AND reported.interval = 30.0`, nil, doc, true},
		{`reported.temp > "a"`, nil, doc, false},
		{`reported.firmware.version < "2.1"`, nil, doc, true},
		{`reported.missing < 1`, nil, doc, false},
		{`reported.up = true`, nil, doc, true},
		{`reported.missing = null`, nil, doc, true},
		{`reported.up != null`, nil, doc, true},
		{`delta.firmware.version = "2.1.0"`, nil, doc, true},
		{`delta.interval = null`, nil, doc, true},
		{`desired.interval = 30`, nil, doc, true},
		{`labels.tier in (gold,silver)`, north, doc, true},
		{`labels.tier notin ("gold")`, north, doc, false},
		{`labels.region`, north, nil, true},
		{`!labels.region`, north, nil, false},
		{`reported.note = "x AND y"`, nil, &Document{State: State{Reported: obj(t, `{"note":"x AND y"}`)}}, true},
		{`reported.BAND = 1`, nil, &Document{State: State{Reported: obj(t, `{"BAND":1}`)}}, true},
	}
	for _, c := range cases {
		f, err := ParseFilter(c.filter)
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", c.filter, err)
			continue
		}
		if got := f.Matches(c.labels, c.doc); got != c.want {
			t.Errorf("%q matches = %v, want %v", c.filter, got, c.want)
		}
	}
}

var badFilters = []string{
	`reported.fw`,
	`reported.fw = 2.1.0`,
	`reported.fw = unquoted`,
	`state.fw = "x"`,
	`reported..fw = "x"`,
	`reported.fw = "x" AND`,
	`AND reported.fw = "x"`,
	`reported.fw = "x" AND AND reported.y = 1`,
	`reported.fw = "unterminated`,
	`reported.fw = {"a":1}`,
	`reported.fw = [1]`,
	`reported.fw > null`,
	`reported.fw = "x" "y"`,
	`labels.region = "a,b"`,
	`labels.= "x"`,
	`labels.env in (a,b),beta`,
	`reported.fw ~ "x"`,
}

func TestFilterErrors(t *testing.T) {
	t.Parallel()
	for _, s := range badFilters {
		if _, err := ParseFilter(s); err == nil {
			t.Errorf("ParseFilter(%q) accepted a bad filter", s)
		} else if code, _ := Code(err); code != 400 {
			t.Errorf("ParseFilter(%q): code %d (%v), want 400", s, code, err)
		}
	}
}

func FuzzParseFilter(f *testing.F) {
	f.Add(`reported.firmware.version != "2.1.0" AND labels.region = "north"`)
	f.Add(`reported.temp >= 21.5 and delta.x = null AND !labels.beta`)
	f.Add(`labels.env in (lab, prod) AND desired.a.b < "z"`)
	for _, s := range badFilters {
		f.Add(s)
	}
	doc := &Document{State: State{Desired: Object{"a": Object{"b": "y"}}, Reported: Object{"temp": "x"}}}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter(s)
		if err != nil {
			if code, _ := Code(err); code != 400 {
				t.Fatalf("ParseFilter(%q): code %d: %v", s, code, err)
			}
			return
		}
		// Any parsed filter can be evaluated on any document.
		_ = flt.Matches(map[string]string{"region": "north"}, doc)
		_ = flt.Matches(nil, nil)
	})
}
