package topic

import (
	"strings"
	"testing"
)

func TestValidDeviceID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"dev1": true, "cpe-00:11": false, "a.b_c-D9": true, "": false, ".": false, "..": false,
		"a/b": false, "a+": false, "#": false, "$dm": false, "app:x": false, "has space": false,
		strings.Repeat("x", 128): true, strings.Repeat("x", 129): false,
	} {
		if got := ValidDeviceID(id); got != want {
			t.Errorf("ValidDeviceID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestDeviceNamespace(t *testing.T) {
	t.Parallel()
	pub := []struct {
		topic string
		want  bool
	}{
		{"tele/dev1/x", true},
		{"tele/dev1/env/temp", true},
		{"$dm/dev1/shadow/update", true},
		{"tele/dev1", false},
		{"tele/dev1/", false},
		{"tele/dev2/x", false},
		{"$dm/dev2/shadow/update", false},
		{"other/dev1/x", false},
		{"tele/+/x", false},
		{"tele/dev1/#", false},
	}
	for _, c := range pub {
		if got := DeviceMayPublish("dev1", c.topic); got != c.want {
			t.Errorf("DeviceMayPublish(dev1, %q) = %v, want %v", c.topic, got, c.want)
		}
	}
	sub := []struct {
		filter string
		want   bool
	}{
		{"$dm/dev1/#", true},
		{"$dm/dev1/shadow/+/delta", true},
		{"tele/dev1/#", true},
		{"#", false},
		{"+/dev1/#", false},
		{"$dm/+/#", false},
		{"$dm/dev1", false},
		{"$dm/#", false},
		{"tele/dev2/#", false},
		{"$share/g/tele/dev1/#", false},
		{"$dm/dev1/a#", false},
	}
	for _, c := range sub {
		if got := DeviceMaySubscribe("dev1", c.filter); got != c.want {
			t.Errorf("DeviceMaySubscribe(dev1, %q) = %v, want %v", c.filter, got, c.want)
		}
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	cases := []struct {
		filter, name string
		want         bool
	}{
		{"#", "a/b", true},
		{"#", "$dm/a", false},
		{"+/a", "$dm/a", false},
		{"$dm/#", "$dm/a/b", true},
		{"a/#", "a", true},
		{"a/+", "a", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+/c", "a/b/c", true},
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"+", "a", true},
		{"+", "a/b", false},
		{"a//b", "a//b", true},
		{"a/+/b", "a//b", true},
	}
	for _, c := range cases {
		if got := Match(c.filter, c.name); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.filter, c.name, got, c.want)
		}
	}
}

func TestCoversAndOverlaps(t *testing.T) {
	t.Parallel()
	cases := []struct {
		pattern, filter string
		covers, overlap bool
	}{
		{"tele/+/#", "tele/dev1/#", true, true},
		{"tele/+/#", "tele/#", false, true},
		{"tele/+/#", "#", false, true},
		{"#", "$dm/x/#", false, false},
		{"$dm/#", "$dm/x/#", true, true},
		{"a/b", "a/+", false, true},
		{"a/+", "a/b", true, true},
		{"a/#", "a", true, true},
		{"a/b", "c/d", false, false},
		{"a/+/c", "a/b/d", false, false},
	}
	for _, c := range cases {
		if got := Covers(c.pattern, c.filter); got != c.covers {
			t.Errorf("Covers(%q, %q) = %v, want %v", c.pattern, c.filter, got, c.covers)
		}
		if got := Overlaps(c.pattern, c.filter); got != c.overlap {
			t.Errorf("Overlaps(%q, %q) = %v, want %v", c.pattern, c.filter, got, c.overlap)
		}
		if Overlaps(c.pattern, c.filter) != Overlaps(c.filter, c.pattern) {
			t.Errorf("Overlaps(%q, %q) is not symmetric", c.pattern, c.filter)
		}
	}
}

// FuzzFilterAlgebra checks Covers and Overlaps against Match on topics built
// from the inputs: if pattern covers filter, every topic the filter matches
// the pattern matches too; if both match a topic, they overlap.
func FuzzFilterAlgebra(f *testing.F) {
	f.Add("tele/+/#", "tele/d/#", "tele/d/x")
	f.Add("a/#", "a", "a")
	f.Add("#", "$dm/#", "$dm/a")
	f.Add("+/+", "a/+", "a/b")
	f.Fuzz(func(t *testing.T, pattern, filter, name string) {
		if !ValidFilter(pattern) || !ValidFilter(filter) || !ValidTopic(name) {
			return
		}
		if Covers(pattern, filter) && Match(filter, name) && !Match(pattern, name) {
			t.Fatalf("Covers(%q, %q) but %q matches only the filter", pattern, filter, name)
		}
		if Match(pattern, name) && Match(filter, name) && !Overlaps(pattern, filter) {
			t.Fatalf("both %q and %q match %q but Overlaps is false", pattern, filter, name)
		}
		if Covers(pattern, filter) && Match(filter, name) && !Overlaps(pattern, filter) {
			t.Fatalf("Covers(%q, %q) without Overlaps", pattern, filter)
		}
	})
}
