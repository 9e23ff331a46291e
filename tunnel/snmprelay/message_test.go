package snmprelay

import (
	"errors"
	"reflect"
	"testing"

	"github.com/gosnmp/gosnmp"
)

// messages: fixtures shared by the decode tests and the fuzz seeds.
var messages = []struct {
	name, kind, json string
	ok               bool
}{
	{"get", "req", `{"id":"a1","op":"get","vars":[{"oid":".1.3.6.1.2.1.1.6.0","type":5}]}`, true},
	{"bulk", "req", `{"id":"a1","op":"getbulk","non_repeaters":1,"max_repetitions":20,"vars":[{"oid":"1.3.6","type":5},{"oid":"1.3.7","type":5}]}`, true},
	{"set", "req", `{"id":"a1","op":"set","vars":[{"oid":"1.3.6.1.2.1.1.4.0","type":4,"bytes":"bm9j"},{"oid":"1.3.6.1.4.1.1.0","type":2,"int":-5},{"oid":"1.3.6.1.4.1.2.0","type":64,"str":"10.0.0.1"}]}`, true},
	{"no id", "req", `{"op":"get","vars":[{"oid":"1.3.6","type":5}]}`, false},
	{"long id", "req", `{"id":"` + string(make([]byte, 65)) + `","op":"get","vars":[{"oid":"1.3.6","type":5}]}`, false},
	{"bad op", "req", `{"id":"a","op":"walk","vars":[{"oid":"1.3.6","type":5}]}`, false},
	{"no vars", "req", `{"id":"a","op":"get","vars":[]}`, false},
	{"name OID", "req", `{"id":"a","op":"get","vars":[{"oid":"sysName.0","type":5}]}`, false},
	{"first arc 3", "req", `{"id":"a","op":"get","vars":[{"oid":"3.1","type":5}]}`, false},
	{"unknown type", "req", `{"id":"a","op":"get","vars":[{"oid":"1.3.6","type":99}]}`, false},
	{"int range", "req", `{"id":"a","op":"set","vars":[{"oid":"1.3.6","type":2,"int":4294967296}]}`, false},
	{"counter range", "req", `{"id":"a","op":"set","vars":[{"oid":"1.3.6","type":65,"uint":4294967296}]}`, false},
	{"bad ip", "req", `{"id":"a","op":"set","vars":[{"oid":"1.3.6","type":64,"str":"::1"}]}`, false},
	{"negative bulk", "req", `{"id":"a","op":"getbulk","max_repetitions":-1,"vars":[{"oid":"1.3.6","type":5}]}`, false},
	{"not json", "req", `{"id":`, false},
	{"answer", "resp", `{"id":"a","vars":[{"oid":"1.3.6.1.2.1.1.3.0","type":67,"uint":12345},{"oid":"1.3.6.2","type":128},{"oid":"1.3.6.3","type":130}]}`, true},
	{"error answer", "resp", `{"id":"a","error_status":17,"error_index":1,"vars":[{"oid":"1.3.6","type":5}]}`, true},
	{"timeout", "resp", `{"id":"a","error":"request timeout (after 1 retries)"}`, true},
	{"status range", "resp", `{"id":"a","error_status":256}`, false},
	{"trap", "trap", `{"seq":7,"ts":"2026-01-01T00:00:00Z","source":"127.0.0.1:5000","vars":[{"oid":"1.3.6.1.2.1.1.3.0","type":67,"uint":1},{"oid":"1.3.6.1.6.3.1.1.4.1.0","type":6,"str":"1.3.6.1.6.3.1.1.5.1"}]}`, true},
	{"empty trap", "trap", `{"ts":"x","vars":[]}`, false},
}

func decodeKind(kind string, b []byte) (any, error) {
	switch kind {
	case "req":
		return DecodeRequest(b)
	case "resp":
		return DecodeResponse(b)
	default:
		return DecodeTrap(b)
	}
}

func TestDecodeFixtures(t *testing.T) {
	t.Parallel()
	for _, m := range messages {
		v, err := decodeKind(m.kind, []byte(m.json))
		if (err == nil) != m.ok {
			t.Errorf("%s: err %v, want ok %v", m.name, err, m.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrBadMessage) {
				t.Errorf("%s: %v is not ErrBadMessage", m.name, err)
			}
			continue
		}
		// Round trip.
		b, err := Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeKind(m.kind, b)
		if err != nil || !reflect.DeepEqual(v, again) {
			t.Errorf("%s: round trip %+v -> %+v (%v)", m.name, v, again, err)
		}
	}
}

// TestPDURoundTrip: every varbind type survives Var -> gosnmp -> Var.
func TestPDURoundTrip(t *testing.T) {
	t.Parallel()
	for _, v := range []Var{
		{OID: ".1.3.1", Type: byte(gosnmp.Integer), Int: -7},
		{OID: ".1.3.2", Type: byte(gosnmp.Counter32), Uint: 4294967295},
		{OID: ".1.3.3", Type: byte(gosnmp.Gauge32), Uint: 5},
		{OID: ".1.3.4", Type: byte(gosnmp.TimeTicks), Uint: 100},
		{OID: ".1.3.5", Type: byte(gosnmp.Counter64), Uint: 1 << 60},
		{OID: ".1.3.6", Type: byte(gosnmp.OctetString), Bytes: []byte{0, 1, 255}},
		{OID: ".1.3.7", Type: byte(gosnmp.ObjectIdentifier), Str: ".1.3.6.1"},
		{OID: ".1.3.8", Type: byte(gosnmp.IPAddress), Str: "192.168.1.1"},
		{OID: ".1.3.9", Type: byte(gosnmp.Null)},
		{OID: ".1.3.10", Type: byte(gosnmp.NoSuchObject)},
		{OID: ".1.3.11", Type: byte(gosnmp.EndOfMibView)},
	} {
		got, err := FromPDU(v.PDU())
		if err != nil || !reflect.DeepEqual(got, v) {
			t.Errorf("%+v -> %+v (%v)", v, got, err)
		}
	}
}

// FuzzDecode: no input makes a decoder panic, and what one accepts
// encodes and decodes to the same message.
func FuzzDecode(f *testing.F) {
	for _, m := range messages {
		f.Add(m.kind, []byte(m.json))
	}
	f.Fuzz(func(t *testing.T, kind string, b []byte) {
		for _, k := range []string{"req", "resp", "trap"} {
			v, err := decodeKind(k, b)
			if err != nil {
				continue
			}
			out, err := Encode(v)
			if err != nil {
				t.Fatalf("%s: accepted message does not encode: %v", k, err)
			}
			again, err := decodeKind(k, out)
			if err != nil || !reflect.DeepEqual(v, again) {
				t.Fatalf("%s: round trip %+v -> %+v (%v)", k, v, again, err)
			}
			for _, pv := range varsOf(v) {
				_ = pv.PDU()
			}
		}
	})
}

func varsOf(v any) []Var {
	switch m := v.(type) {
	case Request:
		return m.Vars
	case Response:
		return m.Vars
	case Trap:
		return m.Vars
	}
	return nil
}
