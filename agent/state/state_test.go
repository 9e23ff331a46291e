package state

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReported(t *testing.T) {
	t.Parallel()
	fw := filepath.Join(t.TempDir(), "version")
	if err := os.WriteFile(fw, []byte("OpenWrt 23.05.3\nextra\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := (&Reporter{AgentVersion: "v1", FirmwareVersionFile: fw, Extra: func() map[string]any { return map[string]any{"x": 1} }}).Reported()
	if r["agent_version"] != "v1" || r["firmware_version"] != "OpenWrt 23.05.3" || r["x"] != 1 {
		t.Fatalf("%v", r)
	}
	ifs, _ := r["interfaces"].([]Interface)
	found := false
	for _, i := range ifs {
		found = found || i.Name == "lo"
	}
	if !found {
		t.Errorf("loopback not among interfaces: %+v", ifs)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatal(err)
	}
}

func TestApplyByPrefix(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A real program: writes the value it is given to a file named after the key.
	script := filepath.Join(dir, "apply.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = wifi.fail ] && { echo 'radio busy' >&2; exit 2; }\ncat > \""+dir+"/$1\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	var a Applier
	if err := a.Register("wifi.", &Program{Argv: []string{script}}); err != nil {
		t.Fatal(err)
	}
	var level any
	_ = a.Register("agent.log_level", HandlerFunc(func(_ context.Context, _ string, v any) (any, error) { level = v; return v, nil }))
	if err := a.Register("wifi.", &Program{Argv: []string{"true"}}); err == nil {
		t.Fatal("duplicate prefix accepted")
	}
	res := a.Apply(context.Background(), map[string]any{
		"wifi":  map[string]any{"ssid": "lab", "channel": 6.0, "fail": true},
		"agent": map[string]any{"log_level": "debug"},
		"other": 1.0,
	})
	want := map[string]any{"wifi.ssid": "lab", "wifi.channel": 6.0, "agent.log_level": "debug"}
	if !reflect.DeepEqual(res.Reported, want) {
		t.Errorf("reported %v, want %v", res.Reported, want)
	}
	if !strings.Contains(res.Errors["wifi.fail"], "radio busy") || res.Errors["other"] != ErrNoHandler.Error() || len(res.Errors) != 2 {
		t.Errorf("errors %v", res.Errors)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "wifi.ssid")); string(b) != `"lab"` {
		t.Errorf("the program got %q on stdin", b)
	}
	if level != "debug" {
		t.Errorf("built-in handler got %v", level)
	}
	if n := Nest(res.Reported); !reflect.DeepEqual(n["wifi"], map[string]any{"ssid": "lab", "channel": 6.0}) {
		t.Errorf("nest: %v", n)
	}
}

// FuzzFlattenNest: nesting what was flattened gives back the document
// (for documents without dots in keys or empty objects).
func FuzzFlattenNest(f *testing.F) {
	f.Add(`{"a":{"b":1,"c":{"d":"x"}},"e":[1,2]}`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, doc string) {
		var m map[string]any
		if json.Unmarshal([]byte(doc), &m) != nil || strings.Contains(doc, ".") || strings.Contains(doc, "{}") || strings.Contains(doc, `""`) {
			return
		}
		flat := map[string]any{}
		Flatten("", m, flat, 0)
		if !reflect.DeepEqual(Nest(flat), m) && len(m) > 0 {
			t.Fatalf("round trip of %s: %v", doc, Nest(flat))
		}
	})
}
