package shadow

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// updateAcceptedRef is the update/accepted payload built the plain way, as
// maps through json.Marshal: the reference UpdateAccepted must match byte
// for byte.
func updateAcceptedRef(u *Update, r *Result) []byte {
	state, meta := map[string]any{}, map[string]any{}
	cur := r.Current
	for _, h := range []struct {
		key   string
		patch Object
		clear bool
		meta  Object
	}{{"desired", u.Desired, u.ClearDesired, cur.Metadata.Desired}, {"reported", u.Reported, u.ClearReported, cur.Metadata.Reported}} {
		switch {
		case h.patch != nil:
			state[h.key] = h.patch
			meta[h.key] = metaFor(h.patch, h.meta)
		case h.clear:
			state[h.key] = nil
		}
	}
	v := map[string]any{"state": state, "metadata": meta, "version": cur.Version, "timestamp": cur.Timestamp}
	if u.ClientToken != "" {
		v["clientToken"] = u.ClientToken
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

var acceptedFixtures = []struct{ prev, update string }{
	{``, `{"state":{"reported":{"seq":1,"temp":21.5,"fw":{"version":"2.1.0"}}},"clientToken":"c1"}`},
	{`{"state":{"desired":{"a":1,"b":{"c":2}}}}`, `{"state":{"desired":{"b":{"c":null,"d":"<x>"},"e":[1,{"f":2}]},"reported":null}}`},
	{`{"state":{"reported":{"a":{"b":1}}}}`, `{"state":{"reported":{"a":{"b":null}},"desired":{"z":true}},"clientToken":"t\u2028&"}`},
	{`{"state":{"desired":{"a":1},"reported":{"a":1}}}`, `{"state":{"desired":null,"reported":null},"version":1}`},
	{``, `{"state":{"desired":{"é":{"x":{}},"k":""}}}`},
}

// checkAccepted applies prev then update (as Service.Update does) and
// compares UpdateAccepted with the reference.
func checkAccepted(t *testing.T, prev, update []byte) {
	t.Helper()
	d := &Document{Version: 3, Timestamp: 1_700_000_000}
	for i, p := range [][]byte{prev, update} {
		if len(p) == 0 {
			continue
		}
		u, err := ParseUpdate(p, lim)
		if err != nil {
			return
		}
		ts := json.Number([]string{"1", "2"}[i])
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
		d.Version++
		d.ClientToken = u.ClientToken
		checkDecodeDocument(t, d)
		if i == 1 {
			r := &Result{Current: d}
			if got, want := UpdateAccepted(u, r), updateAcceptedRef(u, r); !bytes.Equal(got, want) {
				t.Fatalf("prev %s update %s:\ngot  %s\nwant %s", prev, update, got, want)
			}
		}
	}
}

func TestUpdateAcceptedMatchesMarshal(t *testing.T) {
	t.Parallel()
	for _, f := range acceptedFixtures {
		checkAccepted(t, []byte(f.prev), []byte(f.update))
	}
}

func FuzzUpdateAccepted(f *testing.F) {
	for _, x := range acceptedFixtures {
		f.Add([]byte(x.prev), []byte(x.update))
	}
	f.Fuzz(func(t *testing.T, prev, update []byte) { checkAccepted(t, prev, update) })
}

// decodeDocumentRef is DecodeDocument's fallback, encoding/json.
func decodeDocumentRef(b []byte) (*Document, error) {
	var d Document
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	err := dec.Decode(&d)
	return &d, err
}

// checkDecodeDocument: a document as stored takes the fast path and
// decodes to what encoding/json makes of it.
func checkDecodeDocument(t *testing.T, d *Document) {
	t.Helper()
	b, err := d.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := decodeDocumentFast(b)
	if !ok {
		t.Fatalf("stored document %s missed the fast path", b)
	}
	want, err := decodeDocumentRef(b)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\nfast %#v\nref  %#v (%v)", b, got, want, err)
	}
}

// TestDecodeDocumentFallback: what the fast path does not recognise is
// decoded by encoding/json, as before.
func TestDecodeDocumentFallback(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"State":{"Reported":{"a":1}},"Version":3}`,
		`{"state":{"desired":null,"reported":{"a":1.50}},"version":2}`,
		`{"state":{"reported":{"a":1}},"state":{"desired":{"b":2}}}`,
		`{"state":{"reported":{"a":1}},"version":2,"extra":true}`,
		`{"state":{"reported":{"a":1.50,"b":1e2}},"version":2}`, `{"version":1.0}`, `{"version":-1}`,
		`{"version":"x"}`, `[]`, `{"state":`, `{"clientToken":null,"timestamp":1e3}`,
	} {
		checkDecodeDocumentFallback(t, []byte(in))
	}
}

func checkDecodeDocumentFallback(t *testing.T, in []byte) {
	t.Helper()
	got, gerr := DecodeDocument(in)
	want, werr := decodeDocumentRef(in)
	if (gerr != nil) != (werr != nil) || (werr == nil && !reflect.DeepEqual(got, want)) {
		t.Fatalf("%s: got %#v (%v), encoding/json %#v (%v)", in, got, gerr, want, werr)
	}
}

// FuzzDecodeDocument: whatever the bytes, DecodeDocument decodes what
// encoding/json decodes, and fails where it fails.
func FuzzDecodeDocument(f *testing.F) {
	f.Add([]byte(`{"state":{"reported":{"a":1.50,"b":1e2}},"version":2}`))
	f.Add([]byte(`{"state":{"desired":{"x":{"y":[1,"z",null]}},"reported":{}},"metadata":{"desired":{"x":{"y":{"timestamp":1}}}},"version":7,"timestamp":1700000000,"clientToken":"c"}`))
	f.Add([]byte(`{"State":{"Reported":{"a":1}},"state":{"reported":{"b":2}}}`))
	f.Fuzz(func(t *testing.T, in []byte) { checkDecodeDocumentFallback(t, in) })
}
