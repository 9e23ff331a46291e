package shadow

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func obj(t testing.TB, s string) Object {
	t.Helper()
	o, err := decodeObject([]byte(s), Limits{MaxDocumentBytes: 1 << 20})
	if err != nil {
		t.Fatalf("fixture %s: %v", s, err)
	}
	return o
}

func TestMergeAndDelta(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                string
		desired, reported   string // stored before
		patchD, patchR      string // "" for none
		wantD, wantR, delta string
	}{
		{"create", `{}`, `{}`, `{"a":1}`, ``, `{"a":1}`, `{}`, `{"a":1}`},
		{"deep merge", `{"a":{"b":1,"c":2}}`, `{}`, `{"a":{"c":3,"d":4}}`, ``, `{"a":{"b":1,"c":3,"d":4}}`, `{}`, `{"a":{"b":1,"c":3,"d":4}}`},
		{"null deletes", `{"a":{"b":1,"c":2},"x":1}`, `{}`, `{"a":{"b":null},"x":null}`, ``, `{"a":{"c":2}}`, `{}`, `{"a":{"c":2}}`},
		{"emptied object removed", `{"a":{"b":1}}`, `{}`, `{"a":{"b":null}}`, ``, `{}`, `{}`, `{}`},
		{"leaf replaced by object", `{"a":1}`, `{}`, `{"a":{"b":2}}`, ``, `{"a":{"b":2}}`, `{}`, `{"a":{"b":2}}`},
		{"object replaced by leaf", `{"a":{"b":2}}`, `{}`, `{"a":"x"}`, ``, `{"a":"x"}`, `{}`, `{"a":"x"}`},
		{"reported satisfies", `{"fw":"2.1.0","cfg":{"x":1,"y":[1,2]}}`, `{}`, ``, `{"fw":"2.1.0","cfg":{"x":1,"y":[1,2]}}`,
			`{"fw":"2.1.0","cfg":{"x":1,"y":[1,2]}}`, `{"fw":"2.1.0","cfg":{"x":1,"y":[1,2]}}`, `{}`},
		{"partial", `{"fw":"2.1.0","cfg":{"x":1,"y":2}}`, `{"fw":"2.0.0","cfg":{"x":1}}`, ``, ``,
			`{"fw":"2.1.0","cfg":{"x":1,"y":2}}`, `{"fw":"2.0.0","cfg":{"x":1}}`, `{"fw":"2.1.0","cfg":{"y":2}}`},
		{"numbers canonical", `{"n":1}`, `{}`, ``, `{"n":1.0}`, `{"n":1}`, `{"n":1}`, `{}`},
		{"arrays whole", `{"l":[1,2,3]}`, `{"l":[1,2]}`, ``, ``, `{"l":[1,2,3]}`, `{"l":[1,2]}`, `{"l":[1,2,3]}`},
		{"object vs leaf in reported", `{"a":{"b":1}}`, `{"a":5}`, ``, ``, `{"a":{"b":1}}`, `{"a":5}`, `{"a":{"b":1}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := &Document{}
			d.State.Desired, d.Metadata.Desired = merge(nil, nil, obj(t, c.desired), "1")
			d.State.Reported, d.Metadata.Reported = merge(nil, nil, obj(t, c.reported), "1")
			if c.patchD != "" {
				d.State.Desired, d.Metadata.Desired = merge(d.State.Desired, d.Metadata.Desired, obj(t, c.patchD), "2")
			}
			if c.patchR != "" {
				d.State.Reported, d.Metadata.Reported = merge(d.State.Reported, d.Metadata.Reported, obj(t, c.patchR), "2")
			}
			if !reflect.DeepEqual(d.State.Desired, obj(t, c.wantD)) {
				t.Errorf("desired = %v, want %s", d.State.Desired, c.wantD)
			}
			if !reflect.DeepEqual(d.State.Reported, obj(t, c.wantR)) {
				t.Errorf("reported = %v, want %s", d.State.Reported, c.wantR)
			}
			delta, _ := d.Delta()
			if want := obj(t, c.delta); !(len(delta) == 0 && len(want) == 0) && !reflect.DeepEqual(delta, want) {
				t.Errorf("delta = %v, want %s", delta, c.delta)
			}
			checkInvariants(t, d)
		})
	}
}

func TestMetadataTimestamps(t *testing.T) {
	t.Parallel()
	d := &Document{}
	d.State.Reported, d.Metadata.Reported = merge(nil, nil, obj(t, `{"a":{"b":1,"c":2},"l":[1]}`), "100")
	d.State.Reported, d.Metadata.Reported = merge(d.State.Reported, d.Metadata.Reported, obj(t, `{"a":{"c":3}}`), "200")
	want := obj(t, `{"a":{"b":{"timestamp":100},"c":{"timestamp":200}},"l":{"timestamp":100}}`)
	if !reflect.DeepEqual(d.Metadata.Reported, want) {
		t.Fatalf("metadata = %v, want %v", d.Metadata.Reported, want)
	}
}

// checkInvariants: no nulls or empty objects are stored, metadata mirrors
// state leaf for leaf, the delta is part of desired, and the document
// survives an encode/decode round trip.
func checkInvariants(t testing.TB, d *Document) {
	t.Helper()
	for _, h := range []struct {
		state, meta Object
	}{{d.State.Desired, d.Metadata.Desired}, {d.State.Reported, d.Metadata.Reported}} {
		mirror(t, h.state, h.meta, "")
	}
	delta, _ := d.Delta()
	if !subset(delta, d.State.Desired) {
		t.Fatalf("delta %v is not part of desired %v", delta, d.State.Desired)
	}
	b, err := d.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeDocument(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(norm(back.State.Desired), norm(d.State.Desired)) || !reflect.DeepEqual(norm(back.State.Reported), norm(d.State.Reported)) {
		t.Fatalf("round trip changed the state:\n%v\n%v", d.State, back.State)
	}
}

func mirror(t testing.TB, state, meta Object, path string) {
	t.Helper()
	if len(state) != len(meta) {
		t.Fatalf("at %q: %d state keys but %d metadata keys: %v / %v", path, len(state), len(meta), state, meta)
	}
	for k, v := range state {
		m, ok := meta[k].(Object)
		if !ok {
			t.Fatalf("at %q.%s: no metadata object", path, k)
		}
		switch x := v.(type) {
		case nil:
			t.Fatalf("at %q.%s: null stored", path, k)
		case Object:
			if len(x) == 0 {
				t.Fatalf("at %q.%s: empty object stored", path, k)
			}
			mirror(t, x, m, path+"."+k)
		default:
			if _, ok := m["timestamp"].(json.Number); !ok || len(m) != 1 {
				t.Fatalf("at %q.%s: leaf metadata %v", path, k, m)
			}
		}
	}
}

func subset(sub, of Object) bool {
	for k, v := range sub {
		w, ok := of[k]
		if !ok {
			return false
		}
		if so, ok := v.(Object); ok {
			if wo, ok := w.(Object); ok {
				if !subset(so, wo) {
					return false
				}
				continue
			}
		}
		if !reflect.DeepEqual(v, w) {
			return false
		}
	}
	return true
}

var lim = Limits{MaxDocumentBytes: 1024, MaxDepth: 4}

func TestParseUpdate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		payload string
		code    int // 0: accepted
		token   string
	}{
		{`{"state":{"reported":{"a":1}}}`, 0, ""},
		{`{"state":{"desired":{"a":{"b":{"c":{"d":1}}}}},"clientToken":"t1","version":3}`, 0, "t1"},
		{`{"state":{"desired":null,"reported":{"x":true}}}`, 0, ""},
		{` {"state":{"reported":{"a":[1,{"b":2}]}}} `, 0, ""},
		{`{"state":{"desired":{"a":{"b":{"c":{"d":{"e":1}}}}}},"clientToken":"t2"}`, 400, "t2"}, // too deep
		{`{"state":{"reported":{"a":[[[[1]]]]}}}`, 400, ""},                                     // too deep through arrays
		{`{"state":{"reported":{"a":1}}`, 400, ""},                                              // bad JSON
		{`not json`, 400, ""},
		{``, 400, ""},
		{`[]`, 400, ""},
		{`{"state":{"reported":1}}`, 400, ""},
		{`{"clientToken":"t3"}`, 400, "t3"}, // missing state
		{`{"state":null}`, 400, ""},
		{`{"state":{}}`, 400, ""},
		{`{"state":{"delta":{"a":1}}}`, 400, ""},
		{`{"state":{"reported":{"a":1}},"version":-1}`, 400, ""},
		{`{"state":{"reported":{"a":1}},"version":"3"}`, 400, ""},
		{`{"state":{"reported":{"a":1}},"clientToken":7}`, 400, ""},
		{`{"state":{"reported":{"a":1}},"clientToken":"` + strings.Repeat("x", 65) + `"}`, 400, ""},
		{`{"state":{"reported":{"a":1}},"metadata":{}}`, 400, ""},
		{`{"state":{"reported":{"a":1}}} {}`, 400, ""},
		{`{"state":{"reported":{"a":1e999}}}`, 400, ""},
		{"{\"state\":{\"reported\":{\"a\":\"\xff\"}}}", 400, ""},
		{`{"state":{"reported":{"a":"` + strings.Repeat("x", 1024) + `"}}}`, 413, ""},
	}
	for _, c := range cases {
		u, err := ParseUpdate([]byte(c.payload), lim)
		code := 0
		if err != nil {
			code, _ = Code(err)
		}
		if code != c.code {
			t.Errorf("ParseUpdate(%.60q): code %d (%v), want %d", c.payload, code, err, c.code)
		}
		if u == nil || u.ClientToken != c.token {
			t.Errorf("ParseUpdate(%.60q): token %+v, want %q", c.payload, u, c.token)
		}
	}
}

func TestParseRequest(t *testing.T) {
	t.Parallel()
	for payload, code := range map[string]int{
		``: 0, `  `: 0, `{}`: 0, `{"clientToken":"x"}`: 0, `{"version":2}`: 0,
		`{"state":{}}`: 400, `x`: 400, `{"version":1.5}`: 400,
	} {
		_, err := ParseRequest([]byte(payload), lim)
		got := 0
		if err != nil {
			got, _ = Code(err)
		}
		if got != code {
			t.Errorf("ParseRequest(%q): %d (%v), want %d", payload, got, err, code)
		}
	}
}

func TestCode(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]int{ErrInvalid: 400, ErrNotFound: 404, ErrConflict: 409, ErrTooLarge: 413,
		ErrTooManyRequests: 429, errors.New("disk on fire"): 500} {
		code, msg := Code(err)
		if code != want {
			t.Errorf("Code(%v) = %d, want %d", err, code, want)
		}
		if code == 500 && strings.Contains(msg, "fire") {
			t.Errorf("internal error leaks its message: %q", msg)
		}
	}
}

// FuzzParseAndMerge parses two update payloads and applies them in turn:
// parsing never panics, and whatever is accepted leaves a well-formed
// document (see checkInvariants).
func FuzzParseAndMerge(f *testing.F) {
	f.Add([]byte(`{"state":{"desired":{"a":{"b":1}}}}`), []byte(`{"state":{"reported":{"a":{"b":1,"c":null}}}}`))
	f.Add([]byte(`{"state":{"desired":{"a":1,"l":[1,{"x":null}]}}}`), []byte(`{"state":{"desired":{"a":null}}}`))
	f.Add([]byte(`{"state":{"desired":null,"reported":{"a":{}}}}`), []byte(`{"state":{"reported":{"a":{"b":{}}}}}`))
	f.Add([]byte(`{"state":{"reported":{"n":1.50,"m":-0,"k":1e3}}}`), []byte(`{"version":1,"state":{"desired":{"n":1.5}}}`))
	f.Fuzz(func(t *testing.T, p1, p2 []byte) {
		d := &Document{}
		for i, p := range [][]byte{p1, p2} {
			u, err := ParseUpdate(p, lim)
			if err != nil {
				if code, _ := Code(err); code != 400 && code != 413 {
					t.Fatalf("parse error with code %d: %v", code, err)
				}
				continue
			}
			ts := json.Number(string(rune('1' + i)))
			// The document a version is built from must stay intact (it is
			// cached and may be read concurrently).
			before := d.clone()
			beforeJSON, _ := before.Encode()
			old := d
			d = d.clone()
			d.State, d.Metadata = old.State, old.Metadata // share, as the service does
			if u.ClearDesired {
				d.State.Desired, d.Metadata.Desired = nil, nil
			}
			if u.ClearReported {
				d.State.Reported, d.Metadata.Reported = nil, nil
			}
			if u.Desired != nil {
				d.State.Desired, d.Metadata.Desired = merge(d.State.Desired, d.Metadata.Desired, u.Desired, ts)
			}
			if u.Reported != nil {
				d.State.Reported, d.Metadata.Reported = merge(d.State.Reported, d.Metadata.Reported, u.Reported, ts)
			}
			checkInvariants(t, d)
			_ = GetAccepted(d, u.ClientToken)
			if afterJSON, _ := old.Encode(); string(afterJSON) != string(beforeJSON) {
				t.Fatalf("merge modified the previous document:\nbefore %s\nafter  %s", beforeJSON, afterJSON)
			}
		}
	})
}

func norm(o Object) Object {
	if len(o) == 0 {
		return nil
	}
	return o
}
