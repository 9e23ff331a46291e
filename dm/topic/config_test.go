package topic

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const testHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestConfigTopics(t *testing.T) {
	t.Parallel()
	if got := ConfigTopic("d1", ConfigGet); got != "$dm/d1/config/get" {
		t.Fatalf("get topic %q", got)
	}
	f := ConfigDeviceFilter("d1")
	if !Match(f, ConfigTopic("d1", ConfigDocument)) || !Match(f, ConfigTopic("d1", ConfigConfirm)) || Match(f, ConfigTopic("d2", ConfigDocument)) {
		t.Fatalf("device filter %q matches the wrong topics", f)
	}
	if !DeviceMaySubscribe("d1", f) || !DeviceMayPublish("d1", ConfigTopic("d1", ConfigStatus)) {
		t.Fatal("a device may not use its own config topics")
	}
	if !Match(ConfigFilter, ConfigTopic("d1", ConfigStatus)) || Match(ConfigFilter, "$dm/d1/shadow/get") {
		t.Fatal("platform filter")
	}
	cases := []struct {
		topic, dev, kind string
		ok               bool
	}{
		{"$dm/d1/config/get", "d1", "get", true},
		{"$dm/d1/config/status", "d1", "status", true},
		{"$dm/d1/config/document", "d1", "document", true},
		{"$dm/d1/config/confirm", "d1", "confirm", true},
		{"$dm/d1/config/other", "", "", false},
		{"$dm/d1/config", "", "", false},
		{"$dm/d1/config/get/x", "", "", false},
		{"$dm/d+/config/get", "", "", false},
		{"tele/d1/config/get", "", "", false},
		{"$dm/d1/shadow/get", "", "", false},
	}
	for _, c := range cases {
		dev, kind, ok := ParseConfigTopic(c.topic)
		if ok != c.ok || dev != c.dev || kind != c.kind {
			t.Errorf("ParseConfigTopic(%q) = %q %q %v", c.topic, dev, kind, ok)
		}
	}
}

func TestConfigHash(t *testing.T) {
	t.Parallel()
	if ConfigHash([]byte("test")) != testHash {
		t.Fatal("ConfigHash is not hex SHA-256")
	}
}

func TestParseConfigPayloads(t *testing.T) {
	t.Parallel()
	ref := `"rollout":"r1","profile":"wan","version":3,"hash":"` + testHash + `"`
	docs := []struct {
		in   string
		want string // "" for valid, else a fragment of the error
	}{
		{`{` + ref + `,"format":"yaml","content":"a: 1"}`, ""},
		{`{` + ref + `,"format":"text","content":""}`, ""},
		{`{` + ref + `,"format":"xml","content":"<a/>"}`, "format"},
		{`{"rollout":"r1","profile":"wan","version":0,"hash":"` + testHash + `","format":"json","content":"{}"}`, "version"},
		{`{"rollout":"r1","profile":"wan","version":1,"hash":"ABC","format":"json","content":"{}"}`, "hash"},
		{`{"rollout":"","profile":"wan","version":1,"hash":"` + testHash + `","format":"json","content":"{}"}`, "rollout"},
		{`{"rollout":"r1","profile":"","version":1,"hash":"` + testHash + `","format":"json","content":"{}"}`, "profile"},
		{`[]`, "bad config payload"},
		{``, "bad config payload"},
		{`{` + ref + `,"format":"json","content":"` + strings.Repeat("x", MaxConfigPayload) + `"}`, "more than"},
	}
	for _, c := range docs {
		_, err := ParseConfigDocument([]byte(c.in))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrBadConfigPayload)) {
			t.Errorf("ParseConfigDocument(%.60q) = %v, want %q", c.in, err, c.want)
		}
	}
	statuses := []struct {
		in   string
		want string
	}{
		{`{` + ref + `,"state":"received"}`, ""},
		{`{` + ref + `,"state":"awaiting_confirm"}`, ""},
		{`{` + ref + `,"state":"applied"}`, ""},
		{`{` + ref + `,"state":"failed","reason":"exit 3"}`, ""},
		{`{` + ref + `,"state":"rolled_back","reason":"no confirmation"}`, ""},
		{`{` + ref + `,"state":"done"}`, "unknown state"},
		{`{` + ref + `}`, "unknown state"},
		{`{"state":"applied"}`, "rollout"},
	}
	for _, c := range statuses {
		_, err := ParseConfigStatus([]byte(c.in))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("ParseConfigStatus(%q) = %v, want %q", c.in, err, c.want)
		}
	}
	long, err := ParseConfigStatus([]byte(`{` + ref + `,"state":"failed","reason":"` + strings.Repeat("r", 5000) + `"}`))
	if err != nil || len(long.Reason) != 1024 {
		t.Errorf("a long reason is cut to 1024 bytes: %d %v", len(long.Reason), err)
	}
	if _, err := ParseConfigConfirm([]byte(`{` + ref + `}`)); err != nil {
		t.Errorf("confirm: %v", err)
	}
	if _, err := ParseConfigConfirm([]byte(`{"hash":"x"}`)); err == nil {
		t.Error("a confirm without a rollout was accepted")
	}
}

// The three parsers never panic, and what they accept encodes back to
// something they accept again.
func FuzzParseConfigPayload(f *testing.F) {
	ref := `"rollout":"r1","profile":"wan","version":3,"hash":"` + testHash + `"`
	for _, s := range []string{`{` + ref + `,"format":"yaml","content":"a: 1"}`, `{` + ref + `,"state":"applied"}`, `{` + ref + `}`, `{}`, `null`, `{"version":-1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := ParseConfigDocument(b); err == nil {
			again, _ := json.Marshal(d)
			if _, err := ParseConfigDocument(again); err != nil {
				t.Fatalf("document round trip: %v", err)
			}
		}
		if s, err := ParseConfigStatus(b); err == nil {
			again, _ := json.Marshal(s)
			if _, err := ParseConfigStatus(again); err != nil {
				t.Fatalf("status round trip: %v", err)
			}
		}
		_, _ = ParseConfigConfirm(b)
	})
}
