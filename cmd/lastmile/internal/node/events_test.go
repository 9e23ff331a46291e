package node

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/lastmile-dm/lastmile/cmd/lastmile/internal/config"
	"github.com/lastmile-dm/lastmile/dm/topic"
	commandv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/command/v1"
	eventv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/event/v1"
)

// restEvent waits for the next REST stream line that is an event and
// returns it as "type/device" plus the event object.
func restEvent(t *testing.T, lines <-chan map[string]any) (string, map[string]any) {
	t.Helper()
	for {
		select {
		case m, ok := <-lines:
			if !ok {
				t.Fatal("REST stream ended")
			}
			r, _ := m["result"].(map[string]any)
			ev, _ := r["event"].(map[string]any)
			if ev == nil {
				t.Fatalf("REST line without an event: %v", m)
			}
			return fmt.Sprint(ev["type"], "/", ev["device_id"]), ev
		case <-time.After(20 * time.Second):
			t.Fatal("no REST event within 20 s")
		}
	}
}

func restCreated(t *testing.T, lines <-chan map[string]any) {
	t.Helper()
	select {
	case m := <-lines:
		if r, _ := m["result"].(map[string]any); r["created"] != true {
			t.Fatalf("first REST line %v, want created", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("REST watch not created within 20 s")
	}
}

// TestEventStream watches over gRPC (label filter, presence + telemetry)
// and REST (every device) while real MQTT 3.1.1 and 5 devices connect,
// publish telemetry and disconnect, on both stores.
func TestEventStream(t *testing.T) {
	t.Parallel()
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ln := startNode(t, engine, nil)
			n1 := ln.device(t, "n1", map[string]string{"region": "north"})
			s1 := ln.device(t, "s1", map[string]string{"region": "south"})

			gw, err := eventv1.NewEventServiceClient(ln.conn).Watch(ln.ctx(t), &eventv1.WatchRequest{LabelSelector: "region=north",
				Types: []eventv1.EventType{eventv1.EventType_EVENT_TYPE_PRESENCE, eventv1.EventType_EVENT_TYPE_TELEMETRY}})
			if err != nil {
				t.Fatal(err)
			}
			if first, err := gw.Recv(); err != nil || !first.GetCreated() {
				t.Fatalf("first gRPC message %v, %v", first, err)
			}
			rest := ln.restStream(t, "/v1/events:watch?types=EVENT_TYPE_PRESENCE&types=EVENT_TYPE_TELEMETRY&types=EVENT_TYPE_SHADOW_UPDATED")
			restCreated(t, rest)

			// s1 (south, MQTT 3.1.1): REST sees it, the north watcher must not.
			c3 := connectV3(t, ln.mqtt, "s1", s1)
			if tok := c3.Publish("tele/s1/raw", 1, false, "hello"); !tok.WaitTimeout(10e9) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			if got, ev := restEvent(t, rest); got != "EVENT_TYPE_PRESENCE/s1" || ev["presence"].(map[string]any)["connected"] != true {
				t.Fatalf("REST: %s %v", got, ev)
			}
			got, ev := restEvent(t, rest)
			te, _ := ev["telemetry"].(map[string]any)
			if got != "EVENT_TYPE_TELEMETRY/s1" || te["stream"] != "raw" || te["payload"] != "aGVsbG8=" {
				t.Fatalf("REST: %s %v", got, ev)
			}

			// n1 (north, MQTT 5): both watchers see connect, telemetry, disconnect.
			d := connectV5(t, ln.mqtt, "n1", n1, nil)
			d.publish(t, "tele/n1/env/temp", 1, []byte(`{"t":21.5}`))
			_ = d.c.Disconnect(&paho.Disconnect{})
			var last uint64
			for i, want := range []string{"presence/n1/connected", "telemetry/n1/env/temp", "presence/n1/disconnected"} {
				m, err := gw.Recv()
				if err != nil {
					t.Fatalf("gRPC event %d: %v", i, err)
				}
				e := m.GetEvent()
				got := ""
				switch {
				case e.GetPresence() != nil && e.GetPresence().GetConnected():
					got = "presence/" + e.GetDeviceId() + "/connected"
					if e.GetPresence().GetProtocolVersion() != 5 || e.GetPresence().GetNode() != "t1" {
						t.Errorf("presence %v", e)
					}
				case e.GetPresence() != nil:
					got = "presence/" + e.GetDeviceId() + "/disconnected"
					if e.GetPresence().GetReason() == "" {
						t.Errorf("disconnect without a reason: %v", e)
					}
				case e.GetTelemetry() != nil:
					got = "telemetry/" + e.GetDeviceId() + "/" + e.GetTelemetry().GetStream()
					if e.GetTelemetry().GetJson().GetStructValue().AsMap()["t"] != 21.5 {
						t.Errorf("telemetry %v", e)
					}
				}
				if got != want {
					t.Fatalf("gRPC event %d: %s (%v), want %s", i, got, e, want)
				}
				if e.GetSeq() <= last || e.GetTime() == nil {
					t.Fatalf("seq %d after %d", e.GetSeq(), last)
				}
				last = e.GetSeq()
			}
			for _, want := range []string{"EVENT_TYPE_PRESENCE/n1", "EVENT_TYPE_TELEMETRY/n1", "EVENT_TYPE_PRESENCE/n1"} {
				if got, ev := restEvent(t, rest); got != want {
					t.Fatalf("REST: %s %v, want %s", got, ev, want)
				}
			}

			// s1 moves north through the API: the north watcher sees its
			// next telemetry at once (the label cache is told).
			if code, body := ln.rest(t, "PATCH", "/v1/devices/s1", `{"labels":{"region":"north"}}`); code != 200 {
				t.Fatalf("relabel s1: %d %v", code, body)
			}
			if tok := c3.Publish("tele/s1/raw", 1, false, "moved"); !tok.WaitTimeout(10e9) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			if m, err := gw.Recv(); err != nil || m.GetEvent().GetDeviceId() != "s1" || string(m.GetEvent().GetTelemetry().GetPayload()) != "moved" {
				t.Fatalf("after relabelling: %v %v", m, err)
			}
			if got, _ := restEvent(t, rest); got != "EVENT_TYPE_TELEMETRY/s1" {
				t.Fatalf("REST: %s", got)
			}

			// A desired change through the API is a shadow event; REST asked
			// for shadow updates (not deltas), so it sees exactly one.
			if code, body := ln.rest(t, "PATCH", "/v1/devices/n1/shadow", `{"desired":{"fw":"2.1"}}`); code != 200 {
				t.Fatalf("update desired: %d %v", code, body)
			}
			got, ev = restEvent(t, rest)
			sh, _ := ev["shadow"].(map[string]any)
			state, _ := sh["state"].(map[string]any)["state"].(map[string]any)
			if got != "EVENT_TYPE_SHADOW_UPDATED/n1" || sh["version"] != "1" || state["desired"].(map[string]any)["fw"] != "2.1" {
				t.Fatalf("REST shadow: %s %v", got, ev)
			}
			if code, body := ln.rest(t, "DELETE", "/v1/devices/n1/shadow", ""); code != 200 {
				t.Fatalf("delete shadow: %d %v", code, body)
			}
			if got, ev = restEvent(t, rest); got != "EVENT_TYPE_SHADOW_UPDATED/n1" || ev["shadow"].(map[string]any)["deleted"] != true {
				t.Fatalf("REST shadow delete: %s %v", got, ev)
			}
		})
	}
}

func TestEventStreamBadRequests(t *testing.T) {
	t.Parallel()
	ln := startNode(t, engines[0], func(c *config.Config) { c.Events.MaxWatchers = 1 })
	for _, q := range []string{"?device_ids=a/b", "?label_selector=%3D%3D", "?types=EVENT_TYPE_NOPE", "?types=EVENT_TYPE_UNSPECIFIED"} {
		code, body := ln.rest(t, "GET", "/v1/events:watch"+q, "")
		if code != 400 || body["message"] == "" {
			t.Errorf("%s: %d %v", q, code, body)
		}
	}
	s, err := eventv1.NewEventServiceClient(ln.conn).Watch(ln.ctx(t), &eventv1.WatchRequest{DeviceIds: []string{"a b"}})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("gRPC bad device ID: %v", err)
	}
	// One watcher is allowed here; the second gets 429.
	first, err := eventv1.NewEventServiceClient(ln.conn).Watch(ln.ctx(t), &eventv1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := first.Recv(); err != nil || !m.GetCreated() {
		t.Fatalf("first watch: %v %v", m, err)
	}
	if code, body := ln.rest(t, "GET", "/v1/events:watch", ""); code != 429 || body["message"] == "" {
		t.Fatalf("second watch: %d %v", code, body)
	}
}

// TestShutdownEndsWatchesAndCommands: stopping a node ends open watches and
// pending commands at once with UNAVAILABLE, rather than waiting for them.
func TestShutdownEndsWatchesAndCommands(t *testing.T) {
	t.Parallel()
	ln := startNode(t, engines[0], nil)
	d := connectV5(t, ln.mqtt, "d1", ln.device(t, "d1", nil), nil)
	d.subscribe(t, topic.CommandSubscription("d1"))
	w, err := eventv1.NewEventServiceClient(ln.conn).Watch(ln.ctx(t), &eventv1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || !m.GetCreated() {
		t.Fatalf("watch: %v %v", m, err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := commandv1.NewCommandServiceClient(ln.conn).InvokeCommand(ln.ctx(t),
			&commandv1.InvokeCommandRequest{DeviceId: "d1", Name: "wait", Timeout: durationpb.New(300e9)})
		errc <- err
	}()
	<-d.got // pending now
	ln.stop()
	if err := <-errc; status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("pending command: %v", err)
	}
	for {
		_, err := w.Recv()
		if err == nil {
			continue // events published before the end (presence)
		}
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "stopping") {
			t.Fatalf("watch: %v", err)
		}
		break
	}
}

// TestSlowWatcher: a gRPC watcher that stops reading does not slow the
// device (every QoS 1 publish is acknowledged) nor a watcher that keeps up
// (it gets every event); its own stream ends with RESOURCE_EXHAUSTED and
// the number of events it missed.
func TestSlowWatcher(t *testing.T) {
	t.Parallel()
	const buffer = 64
	ln := startNode(t, engines[0], func(c *config.Config) { c.Events.WatcherBuffer = buffer })
	secret := ln.device(t, "d1", nil)

	// A fixed 64 KiB flow-control window: what the slow client does not
	// read piles up on the server, as with any client that stops reading.
	conn, err := grpc.NewClient(ln.conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	slow, err := eventv1.NewEventServiceClient(conn).Watch(ln.ctx(t), &eventv1.WatchRequest{
		DeviceIds: []string{"d1"}, Types: []eventv1.EventType{eventv1.EventType_EVENT_TYPE_TELEMETRY}})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := slow.Recv(); err != nil || !m.GetCreated() {
		t.Fatalf("slow watch: %v %v", m, err)
	}
	fast := ln.restStream(t, "/v1/events:watch?types=EVENT_TYPE_TELEMETRY")
	restCreated(t, fast)

	d := connectV5(t, ln.mqtt, "d1", secret, nil)
	payload := bytes.Repeat([]byte("x"), 4096)
	overflowed := func() bool {
		mfs, _ := ln.n.metrics.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "lastmile_events_dropped_total" {
				return mf.GetMetric()[0].GetCounter().GetValue() >= 1
			}
		}
		return false
	}
	published := 0
	for !overflowed() {
		if published == 5000 {
			t.Fatal("the slow watcher never overflowed")
		}
		// The device is never held up: each QoS 1 publish is acknowledged.
		d.publish(t, "tele/d1/bulk/"+strconv.Itoa(published), 1, payload)
		published++
		// The fast watcher keeps up and gets every event, in order.
		if got, ev := restEvent(t, fast); got != "EVENT_TYPE_TELEMETRY/d1" || !strings.HasSuffix(ev["telemetry"].(map[string]any)["stream"].(string), "/"+strconv.Itoa(published-1)) {
			t.Fatalf("fast watcher: %s %v after %d", got, ev, published)
		}
	}
	// The slow client now reads: some events, then the end of its stream.
	received := 0
	for {
		_, err = slow.Recv()
		if err != nil {
			break
		}
		received++
	}
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "dropped") {
		t.Fatalf("slow watcher ended with %v", err)
	}
	var dropped uint64
	for _, det := range st.Details() {
		if info, ok := det.(*errdetails.ErrorInfo); ok && info.GetReason() == "WATCHER_OVERFLOW" {
			dropped, _ = strconv.ParseUint(info.GetMetadata()["dropped_events"], 10, 64)
		}
	}
	if dropped == 0 || received == 0 || received+int(dropped) > published {
		t.Fatalf("received %d, dropped %d, published %d", received, dropped, published)
	}
	t.Logf("published %d, slow watcher received %d and was told %d were dropped", published, received, dropped)
}
