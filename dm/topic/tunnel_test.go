package topic

import "testing"

func TestTunnelTopics(t *testing.T) {
	t.Parallel()
	if got := TunnelDownTopic("d1", "s1"); got != "$dm/d1/tunnel/s1/down" {
		t.Fatalf("down topic %q", got)
	}
	if got := TunnelUpTopic("d1", "s1"); got != "$dm/d1/tunnel/s1/up" {
		t.Fatalf("up topic %q", got)
	}
	f := TunnelDownFilter("d1")
	if !Match(f, TunnelDownTopic("d1", "abc")) || Match(f, TunnelUpTopic("d1", "abc")) || Match(f, TunnelDownTopic("d2", "abc")) {
		t.Fatalf("filter %q matches the wrong topics", f)
	}
	if !DeviceMaySubscribe("d1", f) || !DeviceMayPublish("d1", TunnelUpTopic("d1", "s")) {
		t.Fatal("a device may not use its own tunnel topics")
	}
	cases := []struct {
		topic          string
		dev, sess, dir string
		ok             bool
	}{
		{"$dm/d1/tunnel/s1/down", "d1", "s1", "down", true},
		{"$dm/d1/tunnel/s1/up", "d1", "s1", "up", true},
		{"$dm/d1/tunnel/s1/sideways", "", "", "", false},
		{"$dm/d1/tunnel/s1", "", "", "", false},
		{"$dm/d1/tunnel/s1/up/x", "", "", "", false},
		{"$dm/d1/shadow/s1/up", "", "", "", false},
		{"$dm/d/1/tunnel/up", "", "", "", false},
		{"$dm/d1/tunnel/+/up", "", "", "", false},
		{"tele/d1/tunnel/s1/up", "", "", "", false},
		{"$dm/d1/tunnel/" + string(make([]byte, 65)) + "/up", "", "", "", false},
	}
	for _, c := range cases {
		dev, sess, dir, ok := ParseTunnelTopic(c.topic)
		if ok != c.ok || dev != c.dev || sess != c.sess || dir != c.dir {
			t.Errorf("ParseTunnelTopic(%q) = %q %q %q %v", c.topic, dev, sess, dir, ok)
		}
	}
}
