package topic

import (
	"strings"
	"testing"
)

var shadowTopicFixtures = []struct {
	topic string
	want  ShadowTopic
	ok    bool
}{
	{"$dm/d1/shadow/get", ShadowTopic{"d1", "", "get"}, true},
	{"$dm/d1/shadow/update", ShadowTopic{"d1", "", "update"}, true},
	{"$dm/d1/shadow/delete", ShadowTopic{"d1", "", "delete"}, true},
	{"$dm/d1/shadow/name/fw/update", ShadowTopic{"d1", "fw", "update"}, true},
	{"$dm/d1/shadow/name/a:b_c-9/get", ShadowTopic{"d1", "a:b_c-9", "get"}, true},
	{"$dm/d1/shadow/update/accepted", ShadowTopic{}, false},
	{"$dm/d1/shadow/update/delta", ShadowTopic{}, false},
	{"$dm/d1/shadow/name/fw/update/documents", ShadowTopic{}, false},
	{"$dm/d1/shadow/name//update", ShadowTopic{}, false},
	{"$dm/d1/shadow/name/a.b/update", ShadowTopic{"d1", "a.b", "update"}, true}, // the service rejects the name
	{"$dm/d1/shadow/name/" + strings.Repeat("n", 65) + "/get", ShadowTopic{"d1", strings.Repeat("n", 65), "get"}, true},
	{"$dm/d1/shadow/name/fw", ShadowTopic{}, false},
	{"$dm/d1/shadow/name/#/get", ShadowTopic{}, false},
	{"$dm/d1/shadow/name/a+b/get", ShadowTopic{}, false},
	{"$dm/d1/shadow/patch", ShadowTopic{}, false},
	{"$dm/d1/shadow", ShadowTopic{}, false},
	{"$dm/d+/shadow/get", ShadowTopic{}, false},
	{"$dm//shadow/get", ShadowTopic{}, false},
	{"tele/d1/shadow/get", ShadowTopic{}, false},
	{"$dm/d1/cmd/reboot", ShadowTopic{}, false},
}

func TestParseShadowRequest(t *testing.T) {
	t.Parallel()
	for _, c := range shadowTopicFixtures {
		got, ok := ParseShadowRequest(c.topic)
		if ok != c.ok || got != c.want {
			t.Errorf("ParseShadowRequest(%q) = %+v, %v; want %+v, %v", c.topic, got, ok, c.want, c.ok)
		}
	}
}

func TestShadowTopicsRoundTrip(t *testing.T) {
	t.Parallel()
	if got := ShadowResponse("d1", "", "update", "accepted"); got != "$dm/d1/shadow/update/accepted" {
		t.Fatalf("classic response topic %q", got)
	}
	if got := ShadowDeltaTopic("d1", "fw"); got != "$dm/d1/shadow/name/fw/update/delta" {
		t.Fatalf("named delta topic %q", got)
	}
	for _, name := range []string{"", "fw"} {
		for _, op := range []string{ShadowGet, ShadowUpdate, ShadowDelete} {
			got, ok := ParseShadowRequest(ShadowRequest("d1", name, op))
			if !ok || got != (ShadowTopic{"d1", name, op}) {
				t.Errorf("round trip of %q/%q: %+v %v", name, op, got, ok)
			}
			if !Match(ShadowFilter, ShadowRequest("d1", name, op)) {
				t.Errorf("ShadowFilter misses %s", ShadowRequest("d1", name, op))
			}
			if !matchesAny(ShadowRequestFilters, ShadowRequest("d1", name, op)) {
				t.Errorf("ShadowRequestFilters miss %s", ShadowRequest("d1", name, op))
			}
		}
	}
}

func FuzzParseShadowRequest(f *testing.F) {
	for _, c := range shadowTopicFixtures {
		f.Add(c.topic)
	}
	f.Fuzz(func(t *testing.T, s string) {
		st, ok := ParseShadowRequest(s)
		if !ok {
			return
		}
		// Whatever parses must be exactly the topic we would build, and the
		// device must own it.
		if back := ShadowRequest(st.DeviceID, st.Name, st.Op); back != s {
			t.Fatalf("%q parsed to %+v which builds %q", s, st, back)
		}
		if !DeviceMayPublish(st.DeviceID, s) {
			t.Fatalf("%q parsed but device %q may not publish it", s, st.DeviceID)
		}
	})
}

func matchesAny(filters []string, topic string) bool {
	for _, f := range filters {
		if Match(f, topic) {
			return true
		}
	}
	return false
}

// TestShadowRequestFilters: the platform's request filters match every
// topic ParseShadowRequest accepts and no response topic. (They also match
// an empty device ID or shadow name, which parsing then refuses.)
func TestShadowRequestFilters(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		topic string
		match bool
	}{
		{"$dm/d1/shadow/update", true}, {"$dm/d1/shadow/get", true}, {"$dm/d1/shadow/delete", true},
		{"$dm/d1/shadow/name/net/get", true}, {"$dm/d1/shadow/name//update", true}, {"$dm//shadow/get", true},
		{"$dm/d1/shadow/update/accepted", false}, {"$dm/d1/shadow/update/documents", false}, {"$dm/d1/shadow/update/delta", false},
		{"$dm/d1/shadow/get/rejected", false}, {"$dm/d1/shadow/name/net/update/rejected", false},
		{"$dm/d1/shadow/name/a/b/update", false}, {"$dm/d1/shadow/list", false}, {"$dm/d1/shadow", false}, {"$dm/d1/cmd/update", false},
	} {
		if got := matchesAny(ShadowRequestFilters, c.topic); got != c.match {
			t.Errorf("%s: filters match %v, want %v", c.topic, got, c.match)
		}
		if _, ok := ParseShadowRequest(c.topic); ok && !c.match {
			t.Errorf("%s: a request the filters miss", c.topic)
		}
	}
}
