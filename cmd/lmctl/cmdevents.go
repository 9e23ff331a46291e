package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	commandv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/command/v1"
	eventv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/event/v1"
)

func init() {
	commands["cmd invoke"] = cmdInvoke
	commands["events watch"] = eventsWatch
}

// cmdInvoke runs a command on a device. The global --timeout is the
// command's timeout (1s-300s); the call itself may take a little longer.
func cmdInvoke(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("cmd invoke", stderr)
	payload := fs.String("payload", "", `JSON payload, e.g. '{"delay": 5}'`)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: lmctl cmd invoke DEVICE NAME [--payload JSON] [--timeout 30s]\n\n--timeout (global) is how long the device has to reply: 1s-300s.")
		fs.PrintDefaults()
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("want DEVICE and NAME, got %d arguments", len(pos))
	}
	req := &commandv1.InvokeCommandRequest{DeviceId: pos[0], Name: pos[1], Timeout: durationpb.New(c.timout)}
	if *payload != "" {
		req.Payload = &structpb.Value{}
		if err := protojson.Unmarshal([]byte(*payload), req.Payload); err != nil {
			return usagef("--payload is not JSON: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timout+10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
	res, err := commandv1.NewCommandServiceClient(c.conn).InvokeCommand(ctx, req)
	if err != nil {
		return err
	}
	body := "-"
	if res.GetPayload() != nil {
		b, err := protojson.Marshal(res.GetPayload())
		if err != nil {
			return err
		}
		body = compactJSON(b)
	}
	return c.emit(res, []string{"STATUS", "DURATION", "REQUEST", "PAYLOAD"},
		[][]string{{fmt.Sprint(res.GetStatus()), res.GetDuration().AsDuration().Round(time.Millisecond).String(), res.GetRequestId(), body}})
}

// compactJSON normalises protojson's deliberately unstable whitespace.
func compactJSON(b []byte) string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

var eventTypeNames = map[string]eventv1.EventType{
	"presence":       eventv1.EventType_EVENT_TYPE_PRESENCE,
	"telemetry":      eventv1.EventType_EVENT_TYPE_TELEMETRY,
	"shadow.updated": eventv1.EventType_EVENT_TYPE_SHADOW_UPDATED,
	"shadow.delta":   eventv1.EventType_EVENT_TYPE_SHADOW_DELTA,
	"command.result": eventv1.EventType_EVENT_TYPE_COMMAND_RESULT,
	"job.progress":   eventv1.EventType_EVENT_TYPE_JOB_PROGRESS,
	"trap":           eventv1.EventType_EVENT_TYPE_TRAP,
}

// eventsWatch prints events as they happen until interrupted: a line per
// event, or with -o json one JSON object per line.
func eventsWatch(c *cli, args []string, stderr io.Writer) error {
	fs := verbFlags("events watch", stderr)
	var devices, labelReqs, types multi
	fs.Var(&devices, "device", "only this device (repeatable)")
	fs.Var(&labelReqs, "label", "only devices with label k=v (repeatable; or any selector like region!=south)")
	fs.Var(&types, "type", "presence, telemetry, shadow.updated, shadow.delta, command.result, job.progress (repeatable; default all but telemetry)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("unexpected arguments %q", pos)
	}
	req := &eventv1.WatchRequest{DeviceIds: devices, LabelSelector: strings.Join(labelReqs, ",")}
	for _, t := range types {
		et, ok := eventTypeNames[strings.ToLower(t)]
		if !ok {
			return usagef("--type %q: want presence, telemetry, shadow.updated, shadow.delta or command.result", t)
		}
		req.Types = append(req.Types, et)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
	stream, err := eventv1.NewEventServiceClient(c.conn).Watch(ctx, req)
	if err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted
			}
			return err
		}
		if m.GetCreated() {
			fmt.Fprintln(stderr, "lmctl: watching events; Ctrl-C to stop")
			continue
		}
		ev := m.GetEvent()
		if ev == nil {
			continue
		}
		if err := c.printEvent(ev); err != nil {
			return err
		}
	}
}

func (c *cli) printEvent(ev *eventv1.Event) error {
	if c.json {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(c.out, compactJSON(b))
		return err
	}
	detail := ""
	switch {
	case ev.GetPresence() != nil:
		p := ev.GetPresence()
		if p.GetConnected() {
			detail = fmt.Sprintf("connected from %s (MQTT %d)", orDash(p.GetRemoteAddr()), p.GetProtocolVersion())
		} else {
			detail = "disconnected: " + orDash(p.GetReason())
		}
	case ev.GetTelemetry() != nil:
		te := ev.GetTelemetry()
		body := fmt.Sprintf("%d bytes", len(te.GetPayload()))
		if te.GetJson() != nil {
			b, _ := protojson.Marshal(te.GetJson())
			body = compactJSON(b)
		}
		detail = te.GetStream() + " " + body
	case ev.GetShadow() != nil:
		detail = fmt.Sprintf("shadow %q version %d", ev.GetShadow().GetName(), ev.GetShadow().GetVersion())
	case ev.GetCommandResult() != nil:
		r := ev.GetCommandResult()
		detail = fmt.Sprintf("%s %s status %d in %s", r.GetName(), r.GetOutcome(), r.GetStatus(), r.GetDuration().AsDuration().Round(time.Millisecond))
	case ev.GetJobProgress() != nil:
		j := ev.GetJobProgress()
		detail = fmt.Sprintf("%s %s %s v%d: %s", j.GetKind(), j.GetJobId(), j.GetProfile(), j.GetVersion(), j.GetState())
		if j.GetReason() != "" {
			detail += " (" + j.GetReason() + ")"
		}
	}
	typ := strings.ToLower(strings.TrimPrefix(ev.GetType().String(), "EVENT_TYPE_"))
	_, err := fmt.Fprintf(c.out, "%s  %-14s  %-20s  %s\n", ts(ev.GetTime()), typ, ev.GetDeviceId(), detail)
	return err
}
