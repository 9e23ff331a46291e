package shadow

import (
	"encoding/json"
	"strconv"
	"testing"
)

// The per-update CPU of the domain, without store or broker: the pieces a
// device's reported-state update costs (see docs/performance.md, "Shadow
// updates"). Run:
//
//	go test -run '^$' -bench . -benchmem ./dm/shadow/
var benchUpdate = []byte(`{"state":{"reported":{"seq":12345,"temp":21.5,"fw":{"version":"2.1.0"}}},"clientToken":"12345"}`)

func BenchmarkParseUpdate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseUpdate(benchUpdate, Limits{MaxDocumentBytes: DefaultMaxDocumentBytes, MaxDepth: DefaultMaxDepth}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMergeEncode is what Service.Update does between reading the
// cached document and writing the new one, plus the accepted payload.
func BenchmarkMergeEncode(b *testing.B) {
	u, err := ParseUpdate(benchUpdate, Limits{MaxDocumentBytes: DefaultMaxDocumentBytes, MaxDepth: DefaultMaxDepth})
	if err != nil {
		b.Fatal(err)
	}
	prev := &Document{Version: 7}
	prev.State.Desired = Object{"fw": Object{"version": "2.1.0"}, "interval": json.Number("30")}
	prev.Metadata.Desired = Object{"fw": Object{"version": Object{"timestamp": json.Number("1")}}, "interval": Object{"timestamp": json.Number("1")}}
	prev.State.Reported, prev.Metadata.Reported = merge(nil, nil, u.Reported, "1")
	ts := json.Number(strconv.FormatInt(1_700_000_000, 10))
	b.ReportAllocs()
	for b.Loop() {
		cur := *prev
		cur.State.Reported, cur.Metadata.Reported = merge(cur.State.Reported, cur.Metadata.Reported, u.Reported, ts)
		cur.Version++
		raw, _, err := cur.encode()
		if err != nil {
			b.Fatal(err)
		}
		delta, dmeta := cur.Delta()
		_ = UpdateAccepted(u, &Result{Previous: prev, Current: &cur, Delta: delta, DeltaMeta: dmeta, currentRaw: raw})
	}
}

func BenchmarkUpdateAccepted(b *testing.B) {
	u, err := ParseUpdate(benchUpdate, Limits{MaxDocumentBytes: DefaultMaxDocumentBytes, MaxDepth: DefaultMaxDepth})
	if err != nil {
		b.Fatal(err)
	}
	cur := &Document{Version: 8, Timestamp: 1_700_000_000}
	cur.State.Reported, cur.Metadata.Reported = merge(nil, nil, u.Reported, "1700000000")
	b.ReportAllocs()
	for b.Loop() {
		_ = UpdateAccepted(u, &Result{Current: cur})
	}
}

// BenchmarkDecodeDocument is the read of a stored document when the
// service's write cache misses (fleets larger than the cache, gets).
func BenchmarkDecodeDocument(b *testing.B) {
	raw := []byte(`{"state":{"desired":{"fw":{"version":"2.1.0"},"interval":30},"reported":{"fw":{"version":"2.1.0"},"seq":12345,"temp":21.5}},"metadata":{"desired":{"fw":{"version":{"timestamp":1700000000}},"interval":{"timestamp":1700000000}},"reported":{"fw":{"version":{"timestamp":1700000001}},"seq":{"timestamp":1700000001},"temp":{"timestamp":1700000001}}},"version":8,"timestamp":1700000001,"clientToken":"12345"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeDocument(raw); err != nil {
			b.Fatal(err)
		}
	}
}
