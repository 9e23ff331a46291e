package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/event/v1"
)

func TestPrintEvent(t *testing.T) {
	t.Parallel()
	at := timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	temp, _ := structpb.NewValue(map[string]any{"t": 21.5})
	evs := []*eventv1.Event{
		{Seq: 1, Type: eventv1.EventType_EVENT_TYPE_PRESENCE, DeviceId: "d1", Time: at,
			Detail: &eventv1.Event_Presence{Presence: &eventv1.PresenceEvent{Connected: true, RemoteAddr: "10.0.0.1:5", ProtocolVersion: 5}}},
		{Seq: 2, Type: eventv1.EventType_EVENT_TYPE_PRESENCE, DeviceId: "d1", Time: at,
			Detail: &eventv1.Event_Presence{Presence: &eventv1.PresenceEvent{Reason: "keepalive timeout"}}},
		{Seq: 3, Type: eventv1.EventType_EVENT_TYPE_TELEMETRY, DeviceId: "d1", Time: at,
			Detail: &eventv1.Event_Telemetry{Telemetry: &eventv1.TelemetryEvent{Stream: "env", Body: &eventv1.TelemetryEvent_Json{Json: temp}}}},
		{Seq: 4, Type: eventv1.EventType_EVENT_TYPE_COMMAND_RESULT, DeviceId: "d1", Time: at,
			Detail: &eventv1.Event_CommandResult{CommandResult: &eventv1.CommandResultEvent{Name: "reboot", Outcome: "replied", Status: 200, Duration: durationpb.New(3 * time.Millisecond)}}},
	}
	var table, js bytes.Buffer
	for _, ev := range evs {
		if err := (&cli{out: &table}).printEvent(ev); err != nil {
			t.Fatal(err)
		}
		if err := (&cli{out: &js, json: true}).printEvent(ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"connected from 10.0.0.1:5 (MQTT 5)", "disconnected: keepalive timeout", `env {"t":21.5}`, "reboot replied status 200 in 3ms", "2026-01-02T03:04:05Z  presence"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table output lacks %q:\n%s", want, table.String())
		}
	}
	lines := strings.Split(strings.TrimSpace(js.String()), "\n")
	if len(lines) != len(evs) {
		t.Fatalf("-o json: %d lines for %d events:\n%s", len(lines), len(evs), js.String())
	}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["device_id"] != "d1" || m["seq"] != fmt.Sprint(i+1) {
			t.Errorf("line %d %q: %v %v", i, l, m, err)
		}
	}
}
