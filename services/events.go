package services

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lastmile-dm/lastmile/dm/event"
	"github.com/lastmile-dm/lastmile/dm/registry"
	eventv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/event/v1"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay"
)

// eventServer implements EventService on the event bus.
type eventServer struct {
	eventv1.UnimplementedEventServiceServer
	bus *event.Bus
	log *slog.Logger
}

var eventTypes = map[eventv1.EventType]event.Type{
	eventv1.EventType_EVENT_TYPE_PRESENCE:       event.TypePresence,
	eventv1.EventType_EVENT_TYPE_TELEMETRY:      event.TypeTelemetry,
	eventv1.EventType_EVENT_TYPE_SHADOW_UPDATED: event.TypeShadowUpdated,
	eventv1.EventType_EVENT_TYPE_SHADOW_DELTA:   event.TypeShadowDelta,
	eventv1.EventType_EVENT_TYPE_COMMAND_RESULT: event.TypeCommandResult,
	eventv1.EventType_EVENT_TYPE_JOB_PROGRESS:   event.TypeJobProgress,
	eventv1.EventType_EVENT_TYPE_TRAP:           event.TypeTrap,
}

var protoEventTypes = func() map[event.Type]eventv1.EventType {
	m := make(map[event.Type]eventv1.EventType, len(eventTypes))
	for k, v := range eventTypes {
		m[v] = k
	}
	return m
}()

func (s *eventServer) Watch(req *eventv1.WatchRequest, stream grpc.ServerStreamingServer[eventv1.WatchResponse]) error {
	ctx := stream.Context()
	if s.bus == nil {
		return status.Error(codes.Unimplemented, "the event stream is not enabled on this server")
	}
	sel, err := registry.ParseSelector(req.GetLabelSelector())
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	f := event.Filter{DeviceIDs: req.GetDeviceIds(), Selector: sel}
	for _, t := range req.GetTypes() {
		et, ok := eventTypes[t]
		if !ok {
			return invalid(fmt.Sprintf("types: %v is not an event type", t))
		}
		f.Types = append(f.Types, et)
	}
	w, err := s.bus.Watch(f)
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	defer w.Close()
	if err := stream.Send(&eventv1.WatchResponse{Created: true}); err != nil {
		return err
	}
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			return toStatus(ctx, s.log, err)
		}
		if err := stream.Send(&eventv1.WatchResponse{Event: eventToProto(ev)}); err != nil {
			return err
		}
	}
}

func eventToProto(ev event.Event) *eventv1.Event {
	out := &eventv1.Event{Seq: ev.Seq, Type: protoEventTypes[ev.Type], DeviceId: ev.DeviceID, Time: timestamppb.New(ev.Time)}
	switch {
	case ev.Presence != nil:
		p := ev.Presence
		out.Detail = &eventv1.Event_Presence{Presence: &eventv1.PresenceEvent{Connected: p.Connected, Reason: p.Reason,
			ClientId: p.ClientID, RemoteAddr: p.RemoteAddr, ProtocolVersion: uint32(p.ProtocolVersion), Node: p.Node}}
	case ev.Telemetry != nil:
		te := &eventv1.TelemetryEvent{Stream: ev.Telemetry.Stream, ContentType: ev.Telemetry.ContentType}
		if v := jsonValue(ev.Telemetry.Payload); v != nil && json.Valid(ev.Telemetry.Payload) {
			te.Body = &eventv1.TelemetryEvent_Json{Json: v}
		} else {
			te.Body = &eventv1.TelemetryEvent_Payload{Payload: ev.Telemetry.Payload}
		}
		out.Detail = &eventv1.Event_Telemetry{Telemetry: te}
	case ev.Shadow != nil:
		out.Detail = &eventv1.Event_Shadow{Shadow: &eventv1.ShadowEvent{Name: ev.Shadow.Name, Version: ev.Shadow.Version, State: jsonValue(ev.Shadow.State), Deleted: ev.Shadow.Deleted}}
	case ev.Command != nil:
		c := ev.Command
		out.Detail = &eventv1.Event_CommandResult{CommandResult: &eventv1.CommandResultEvent{RequestId: c.RequestID, Name: c.Name,
			Outcome: c.Outcome, Status: int32(c.Status), Payload: jsonValue(c.Payload), Duration: durationOf(c.Duration)}}
	case ev.Job != nil:
		j := ev.Job
		out.Detail = &eventv1.Event_JobProgress{JobProgress: &eventv1.JobProgressEvent{Kind: j.Kind, JobId: j.ID, State: j.State,
			Reason: j.Reason, Profile: j.Profile, Version: j.Version}}
	case ev.Trap != nil:
		te := &eventv1.TrapEvent{Source: ev.Trap.Source}
		for _, v := range ev.Trap.Vars {
			te.Varbinds = append(te.Varbinds, varbindToProto(snmprelay.Var(v)))
		}
		out.Detail = &eventv1.Event_Trap{Trap: te}
	}
	return out
}
