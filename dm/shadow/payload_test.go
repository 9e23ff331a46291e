package shadow

import (
	"bytes"
	"encoding/json"
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
