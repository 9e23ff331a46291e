package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// parseJSONRef is what parseJSON replaces: encoding/json with UseNumber,
// nothing but whitespace after the value, then canonical numbers.
func parseJSONRef(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data")
	}
	return canonical(v)
}

var parseJSONFixtures = []string{
	`{}`, ` {"a" : 1 , "b":[ ]} `, `{"a":1,"a":{"b":2}}`, `[1,-0,-0.0,0.5e1,1E400,1e-400,12345678901234567890]`,
	`123456789012345678`, `-123456789012345678`, `1234567890123456789`, `9007199254740993.0`, `-1.5e+10`,
	`"\u00e9\ud83d\ude00\ud800\udc00\ud800x\udc00\ud800\u0041\/\b\f\n\r\t\"\\"`, `"\ud800\ud800"`,
	`"é☃😀"`, "\"\xff\"", "\"a\x01\"", `"\x"`, `"\u12"`, `"\u12G4"`, `"abc`, `"abc\`,
	`true`, `false`, `null`, `tru`, `nul`, `nulll`, `{"a":1}x`, `{"a":1}}`, `{"a":1,}`, `[1,]`, `{,}`,
	`{"a" 1}`, `{a:1}`, `[1 2]`, `01`, `-`, `-a`, `1.`, `1.e5`, `1e`, `1e+`, `.5`, `+1`, `NaN`, ``, ` `,
	`{"state":{"reported":{"seq":1,"temp":21.5,"fw":{"version":"2.1.0"}}},"clientToken":"c1"}`,
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001), strings.Repeat("[", 100) + strings.Repeat("]", 100),
}

func checkParseJSON(t *testing.T, in []byte) {
	t.Helper()
	want, werr := parseJSONRef(in)
	got, gerr := parseJSON(in)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%.80q: error %v, encoding/json says %v", in, gerr, werr)
	}
	if werr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%.80q:\ngot  %#v\nwant %#v", in, got, want)
	}
}

// TestParseJSONMatchesEncodingJSON: the hand-written decoder accepts what
// encoding/json accepts and yields the same values.
func TestParseJSONMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, f := range parseJSONFixtures {
		checkParseJSON(t, []byte(f))
	}
	for _, f := range appendJSONFixtures {
		checkParseJSON(t, []byte(f))
	}
}

func FuzzParseJSON(f *testing.F) {
	for _, s := range parseJSONFixtures {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) { checkParseJSON(t, in) })
}
