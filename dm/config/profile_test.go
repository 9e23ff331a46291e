package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/lastmile-dm/lastmile/dm/config"
)

func TestSchemaValidate(t *testing.T) {
	t.Parallel()
	s := config.Schema{"server.address": "string", "server.port": "integer", "mtu": "number", "ntp": "array", "wan": "object", "debug": "boolean", "note": "any"}
	cases := []struct {
		name, format, doc string
		want              string // "" valid; else a fragment of the error
	}{
		{"json ok", "json", `{"server":{"address":"a","port":1883},"mtu":1492.5,"ntp":[],"wan":{},"debug":false,"note":null}`, ""},
		{"yaml ok", "yaml", "server: {address: a, port: 1883}\nmtu: 1492\nntp: [a]\nwan: {x: 1}\ndebug: true\nnote: 3\n", ""},
		{"missing", "json", `{"server":{"address":"a"},"mtu":1,"ntp":[],"wan":{},"debug":false,"note":1}`, "server.port is missing"},
		{"wrong type", "json", `{"server":{"address":1,"port":1.5},"mtu":"x","ntp":{},"wan":[],"debug":"no","note":1}`,
			"debug must be boolean, not string; mtu must be number, not string; ntp must be array, not object; server.address must be string, not integer; server.port must be integer, not number; wan must be object, not array"},
		{"not an object", "json", `[1,2]`, "server.address is missing"},
		{"bad json", "json", `{"a":`, "not JSON"},
		{"trailing json", "json", `{} {}`, "data after"},
		{"bad yaml", "yaml", "a: [", "not YAML"},
	}
	for _, c := range cases {
		err := s.Validate(c.format, []byte(c.doc))
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if err := s.Validate("json", []byte(`{}`)); !errors.Is(err, config.ErrSchema) {
		t.Errorf("a schema violation is not ErrSchema: %v", err)
	}
	if err := (config.Schema{}).Validate("text", []byte("anything at all {")); err != nil {
		t.Errorf("text: %v", err)
	}
	if err := (config.Schema{}).Validate("json", make([]byte, config.MaxDocumentBytes+1)); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("oversized: %v", err)
	}
}

// FuzzValidate: no document crashes the parser or the schema check, in
// any format.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{`{"a":{"b":1}}`, "a:\n  b: [1, 2]\n", "- 1\n- {x: y}", `"x"`, "&a [*a]", "? [a]\n: b", "{1: 2}"} {
		f.Add(s)
	}
	s := config.Schema{"a.b": "integer", "c": "any"}
	f.Fuzz(func(t *testing.T, doc string) {
		for _, format := range []string{"json", "yaml", "text"} {
			err := s.Validate(format, []byte(doc))
			if err != nil && !errors.Is(err, config.ErrInvalid) && !errors.Is(err, config.ErrSchema) {
				t.Fatalf("%s: unexpected error kind %v", format, err)
			}
		}
	})
}
