package shadow

import (
	"bytes"
	"encoding/json"
	"testing"
)

var appendJSONFixtures = []string{
	`null`, `true`, `false`, `0`, `-1.5e+10`, `12345678901234567890`, `""`,
	`"plain"`, `"<a href=\"x\">&amp;</a>"`, `"tab\tnl\ncr\rbs\\q\"bell\u0007\b\f"`,
	`"\u2028\u2029 é ☃ 😀"`, `"\ud800"`, `[]`, `[1,"a",null,[true],{}]`,
	`{"b":1,"a":{"z":[1,2],"y":{"x":"<>"}},"":"empty","é":1,"A":2}`,
	`{"state":{"reported":{"seq":1,"temp":21.5,"fw":{"version":"2.1.0"}}},"clientToken":"c1"}`,
}

// TestAppendJSONMatchesMarshal: the fast encoder writes what json.Marshal
// writes, for decoded documents and for the Go values payloads are built
// from.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	t.Parallel()
	for _, f := range appendJSONFixtures {
		checkAppendJSON(t, []byte(f))
	}
	for _, v := range []any{
		uint64(1 << 63), int64(-7), 42, map[string]any{"v": uint64(3), "m": map[string]any{}, "n": nil},
		[]any(nil), map[string]any(nil), 1.5, json.Number(""), string([]byte{0xff, 'a', 0xc0}),
		struct{ A int }{1},
	} {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendJSON(nil, v)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%#v: got %s (%v), want %s", v, got, err, want)
		}
	}
	if _, err := appendJSON(nil, json.Number("1x")); err == nil {
		t.Error("an invalid json.Number was encoded")
	}
}

func checkAppendJSON(t *testing.T, in []byte) {
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return
	}
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: json.Marshal: %v", in, err)
	}
	got, err := appendJSON([]byte("prefix"), v)
	if err != nil || !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("%s:\ngot  %s (%v)\nwant prefix%s", in, got, err, want)
	}
}

func FuzzAppendJSON(f *testing.F) {
	for _, s := range appendJSONFixtures {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkAppendJSON(t, in)
		var s string
		if json.Unmarshal(in, &s) == nil {
			want, _ := json.Marshal(s)
			if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
				t.Fatalf("%q: got %s want %s", s, got, want)
			}
		}
		// Raw bytes as a string, invalid UTF-8 included.
		want, _ := json.Marshal(string(in))
		if got := appendJSONString(nil, string(in)); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s want %s", in, got, want)
		}
	})
}

// TestDocumentEncodeMatchesMarshal: the stored form is what json.Marshal
// makes of the Document, and the state length is that of its state.
func TestDocumentEncodeMatchesMarshal(t *testing.T) {
	t.Parallel()
	for _, d := range []*Document{
		{},
		{Version: 3, Timestamp: 1764012345, ClientToken: "<tok>"},
		{State: State{Reported: Object{"a": json.Number("1")}}, Metadata: State{Reported: Object{"a": Object{"timestamp": json.Number("5")}}}, Version: 1},
		{State: State{Desired: Object{"x": []any{"y", nil}}, Reported: Object{"x": Object{}}}, Metadata: State{Desired: Object{}, Reported: Object{"q": true}}, Version: 9, Timestamp: -1},
	} {
		want, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		state, _ := json.Marshal(d.State)
		got, n, err := d.encode()
		if err != nil || !bytes.Equal(got, want) || n != len(state) {
			t.Errorf("got %s (state %d, %v)\nwant %s (state %d)", got, n, err, want, len(state))
		}
	}
}
