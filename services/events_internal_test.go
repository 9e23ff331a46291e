package services

import (
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/lastmile-dm/lastmile/dm/event"
)

// FuzzTelemetryEvent feeds device payloads (outside input) through the
// conversion every watcher applies: JSON payloads become a JSON value,
// anything else is passed as bytes, and the result always marshals for
// REST.
func FuzzTelemetryEvent(f *testing.F) {
	for _, s := range []string{`{"t":21.5}`, `[1,2]`, `"x"`, `12e999`, `{"a":1,"a":2}`, "\xff", ``, `null`, `{"a":`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		ev := event.Event{Seq: 1, Type: event.TypeTelemetry, DeviceID: "d1", Time: time.Unix(0, 0),
			Telemetry: &event.Telemetry{Stream: "s", Payload: payload}}
		p := eventToProto(ev)
		te := p.GetTelemetry()
		if te.GetJson() == nil && string(te.GetPayload()) != string(payload) {
			t.Fatalf("payload %q became %q", payload, te.GetPayload())
		}
		if te.GetJson() != nil && !json.Valid(payload) {
			t.Fatalf("non-JSON %q became a JSON value", payload)
		}
		if _, err := protojson.Marshal(p); err != nil {
			t.Fatalf("event for %q does not marshal: %v", payload, err)
		}
	})
}

func TestEventToProto(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := map[string]event.Event{
		`{"seq":"1","type":"EVENT_TYPE_PRESENCE","device_id":"d1","time":"2026-01-02T03:04:05Z","presence":{"connected":true,"client_id":"d1","protocol_version":5,"node":"n1"}}`: {
			Seq: 1, Type: event.TypePresence, DeviceID: "d1", Time: at, Presence: &event.Presence{Connected: true, ClientID: "d1", ProtocolVersion: 5, Node: "n1"}},
		`{"seq":"2","type":"EVENT_TYPE_TELEMETRY","device_id":"d1","time":"2026-01-02T03:04:05Z","telemetry":{"stream":"a/b","payload":"AQI="}}`: {
			Seq: 2, Type: event.TypeTelemetry, DeviceID: "d1", Time: at, Telemetry: &event.Telemetry{Stream: "a/b", Payload: []byte{1, 2}}},
		`{"seq":"3","type":"EVENT_TYPE_SHADOW_DELTA","device_id":"d1","time":"2026-01-02T03:04:05Z","shadow":{"name":"net","version":"4","state":{"x":1}}}`: {
			Seq: 3, Type: event.TypeShadowDelta, DeviceID: "d1", Time: at, Shadow: &event.Shadow{Name: "net", Version: 4, State: json.RawMessage(`{"x":1}`)}},
		`{"seq":"4","type":"EVENT_TYPE_COMMAND_RESULT","device_id":"d1","time":"2026-01-02T03:04:05Z","command_result":{"request_id":"r","name":"reboot","outcome":"timeout","duration":"1s"}}`: {
			Seq: 4, Type: event.TypeCommandResult, DeviceID: "d1", Time: at, Command: &event.Command{RequestID: "r", Name: "reboot", Outcome: event.OutcomeTimeout, Duration: time.Second}},
	}
	for want, ev := range cases {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(eventToProto(ev))
		if err != nil {
			t.Fatal(err)
		}
		var got, exp any
		_ = json.Unmarshal(b, &got)
		_ = json.Unmarshal([]byte(want), &exp)
		gb, _ := json.Marshal(got)
		eb, _ := json.Marshal(exp)
		if string(gb) != string(eb) {
			t.Errorf("got %s\nwant %s", gb, eb)
		}
	}
	// Every domain type has a wire type.
	for _, typ := range event.Types {
		if _, ok := protoEventTypes[typ]; !ok {
			t.Errorf("event type %s has no EventType", typ)
		}
	}
}
