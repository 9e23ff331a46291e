package node

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/lastmile-dm/lastmile/cmd/lastmile/internal/config"
	"github.com/lastmile-dm/lastmile/dm/access"
	"github.com/lastmile-dm/lastmile/dm/topic"
	commandv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/command/v1"
)

// answer is what the test devices reply: the command "fail" fails with the
// device's own 500, everything else echoes the request with 200.
func answer(name string, request []byte) []byte {
	if name == "fail" {
		return []byte(`{"status":500,"payload":{"error":"disk full"}}`)
	}
	if len(request) == 0 {
		request = []byte("null")
	}
	return []byte(fmt.Sprintf(`{"status":200,"payload":{"command":%q,"request":%s}}`, name, request))
}

// TestCommands runs commands on a real MQTT 5 device (reply to the response
// topic with the correlation data) and a real MQTT 3.1.1 device (request ID
// in the topic, reply topic derived), over gRPC and REST, on both stores;
// and the offline, timeout, unknown-device and bad-timeout outcomes.
func TestCommands(t *testing.T) {
	t.Parallel()
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ln := startNode(t, engine, nil)
			cmds := commandv1.NewCommandServiceClient(ln.conn)

			// MQTT 5 device: one subscription, replies as MQTT 5 intends.
			d5 := connectV5(t, ln.mqtt, "d5", ln.device(t, "d5", nil), func(c *paho.Client, p *paho.Publish) {
				name := strings.TrimPrefix(p.Topic, "$dm/d5/cmd/")
				_, _ = c.Publish(t.Context(), &paho.Publish{Topic: p.Properties.ResponseTopic, QoS: 1, Payload: answer(name, p.Payload),
					Properties: &paho.PublishProperties{CorrelationData: p.Properties.CorrelationData}})
			})
			d5.subscribe(t, topic.CommandSubscription("d5"))

			// MQTT 3.1.1 device: the same subscription; the reply topic is
			// the request topic with cmd -> cmdreply.
			d3 := connectV3(t, ln.mqtt, "d3", ln.device(t, "d3", nil))
			if tok := d3.Subscribe(topic.CommandSubscription("d3"), 1, func(c paho3.Client, m paho3.Message) {
				levels := strings.Split(m.Topic(), "/") // $dm/d3/cmd/{name}/{requestId}
				if len(levels) != 5 {
					t.Errorf("3.1.1 device got a request on %q", m.Topic())
					return
				}
				reply := strings.Replace(m.Topic(), "/cmd/", "/cmdreply/", 1)
				go c.Publish(reply, 1, false, answer(levels[3], m.Payload()))
			}); !tok.WaitTimeout(10e9) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}

			// A device that never answers.
			silent := connectV5(t, ln.mqtt, "silent", ln.device(t, "silent", nil), nil)
			silent.subscribe(t, topic.CommandSubscription("silent"))
			ln.device(t, "off", nil)

			// gRPC round trips.
			for _, dev := range []string{"d5", "d3"} {
				payload, _ := structpb.NewValue(map[string]any{"delay": 5.0})
				res, err := cmds.InvokeCommand(ln.ctx(t), &commandv1.InvokeCommandRequest{DeviceId: dev, Name: "reboot", Payload: payload,
					Timeout: durationpb.New(10e9)})
				if err != nil {
					t.Fatalf("%s: %v", dev, err)
				}
				got := res.GetPayload().GetStructValue().AsMap()
				if res.GetStatus() != 200 || got["command"] != "reboot" || got["request"].(map[string]any)["delay"] != 5.0 || res.GetRequestId() == "" {
					t.Fatalf("%s: %v", dev, res)
				}
				res, err = cmds.InvokeCommand(ln.ctx(t), &commandv1.InvokeCommandRequest{DeviceId: dev, Name: "fail"})
				if err != nil || res.GetStatus() != 500 || res.GetPayload().GetStructValue().AsMap()["error"] != "disk full" {
					t.Fatalf("%s: device's own failure: %v %v", dev, res, err)
				}
			}

			// REST round trips and outcomes.
			for _, dev := range []string{"d5", "d3"} {
				code, body := ln.rest(t, http.MethodPost, "/v1/devices/"+dev+"/commands/set.led:invoke", `{"payload":{"on":true},"timeout":"5s"}`)
				if code != http.StatusOK || body["status"] != 200.0 {
					t.Fatalf("REST %s: %d %v", dev, code, body)
				}
				if p := body["payload"].(map[string]any); p["command"] != "set.led" || p["request"].(map[string]any)["on"] != true {
					t.Fatalf("REST %s payload: %v", dev, body)
				}
			}
			outcomes := []struct {
				what, path, body string
				http             int
				grpc             codes.Code
				req              *commandv1.InvokeCommandRequest
			}{
				{"offline", "/v1/devices/off/commands/reboot:invoke", `{}`, http.StatusServiceUnavailable, codes.Unavailable,
					&commandv1.InvokeCommandRequest{DeviceId: "off", Name: "reboot"}},
				{"timeout", "/v1/devices/silent/commands/reboot:invoke", `{"timeout":"1s"}`, http.StatusGatewayTimeout, codes.DeadlineExceeded,
					&commandv1.InvokeCommandRequest{DeviceId: "silent", Name: "reboot", Timeout: durationpb.New(1e9)}},
				{"unknown device", "/v1/devices/nope/commands/reboot:invoke", `{}`, http.StatusNotFound, codes.NotFound,
					&commandv1.InvokeCommandRequest{DeviceId: "nope", Name: "reboot"}},
				{"timeout too short", "/v1/devices/d5/commands/reboot:invoke", `{"timeout":"0.5s"}`, http.StatusBadRequest, codes.InvalidArgument,
					&commandv1.InvokeCommandRequest{DeviceId: "d5", Name: "reboot", Timeout: durationpb.New(5e8)}},
				{"timeout too long", "/v1/devices/d5/commands/reboot:invoke", `{"timeout":"301s"}`, http.StatusBadRequest, codes.InvalidArgument,
					&commandv1.InvokeCommandRequest{DeviceId: "d5", Name: "reboot", Timeout: durationpb.New(301e9)}},
				{"zero timeout", "/v1/devices/d5/commands/reboot:invoke", `{"timeout":"0s"}`, http.StatusBadRequest, codes.InvalidArgument,
					&commandv1.InvokeCommandRequest{DeviceId: "d5", Name: "reboot", Timeout: durationpb.New(0)}},
				{"bad name", "/v1/devices/d5/commands/re%2Bboot:invoke", `{}`, http.StatusBadRequest, codes.InvalidArgument,
					&commandv1.InvokeCommandRequest{DeviceId: "d5", Name: "re+boot"}},
			}
			for _, o := range outcomes {
				code, body := ln.rest(t, http.MethodPost, o.path, o.body)
				if code != o.http || body["message"] == "" {
					t.Errorf("REST %s: %d %v, want %d", o.what, code, body, o.http)
				}
				_, err := cmds.InvokeCommand(ln.ctx(t), o.req)
				if status.Code(err) != o.grpc {
					t.Errorf("gRPC %s: %v, want %v", o.what, err, o.grpc)
				}
			}
			// The silent device's timed-out requests were not answered late;
			// nothing is left pending.
			if p := ln.n.commands.Pending(); p != 0 {
				t.Fatalf("%d invocations still pending", p)
			}
		})
	}
}

// TestCommandReplyAfterReconnect: a device that loses its connection while
// a command is pending may reply from its next connection, within the
// timeout (what a device on a flaky link, or mosquitto_sub + mosquitto_pub,
// does).
func TestCommandReplyAfterReconnect(t *testing.T) {
	t.Parallel()
	ln := startNode(t, engines[0], nil)
	secret := ln.device(t, "d1", nil)
	d := connectV5(t, ln.mqtt, "d1", secret, nil)
	d.subscribe(t, topic.CommandSubscription("d1"))
	type result struct {
		res *commandv1.InvokeCommandResponse
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := commandv1.NewCommandServiceClient(ln.conn).InvokeCommand(ln.ctx(t),
			&commandv1.InvokeCommandRequest{DeviceId: "d1", Name: "reboot", Timeout: durationpb.New(20e9)})
		done <- result{res, err}
	}()
	req := <-d.got // the device received the request ...
	if req.Topic != "$dm/d1/cmd/reboot" || req.Properties.ResponseTopic == "" || len(req.Properties.CorrelationData) == 0 {
		t.Fatalf("request %+v", req)
	}
	_ = d.c.Disconnect(&paho.Disconnect{}) // ... loses its connection ...
	eventually(t, "d1 offline", func() bool { return !ln.n.broker.Connected("d1") })
	again := connectV5(t, ln.mqtt, "d1", secret, nil) // ... and replies from the next one.
	again.publish(t, req.Properties.ResponseTopic, 1, []byte(`{"status":202}`))
	r := <-done
	if r.err != nil || r.res.GetStatus() != 202 {
		t.Fatalf("got %v %v", r.res, r.err)
	}
}

// TestCommandReplyOnlyFromTheDevice: an application whose role lets it
// publish anywhere under $dm cannot answer for a device; its reply is
// dropped and counted, and the invocation times out.
func TestCommandReplyOnlyFromTheDevice(t *testing.T) {
	t.Parallel()
	ln := startNode(t, engines[0], func(c *config.Config) {
		c.Access.Roles = []config.RoleConfig{{Name: "dm-writer", Rules: []config.RuleConfig{{Action: "publish", Effect: "allow", Topics: []string{"$dm/#"}}}}}
	})
	_, appSecret, err := ln.n.access.CreateApplication(t.Context(), access.Application{Name: "forger", Role: "dm-writer", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	app := connectV5(t, ln.mqtt, "app:forger", appSecret, nil)
	d := connectV5(t, ln.mqtt, "d1", ln.device(t, "d1", nil), nil)
	d.subscribe(t, topic.CommandSubscription("d1"))
	errc := make(chan error, 1)
	go func() {
		_, err := commandv1.NewCommandServiceClient(ln.conn).InvokeCommand(ln.ctx(t),
			&commandv1.InvokeCommandRequest{DeviceId: "d1", Name: "unlock", Timeout: durationpb.New(2e9)})
		errc <- err
	}()
	req := <-d.got
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := app.c.Publish(ctx, &paho.Publish{Topic: req.Properties.ResponseTopic, QoS: 1, Payload: []byte(`{"status":200}`),
		Properties: &paho.PublishProperties{CorrelationData: req.Properties.CorrelationData}}); err != nil {
		t.Fatalf("the application's publish was refused by its role: %v", err)
	}
	if err := <-errc; status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DEADLINE_EXCEEDED", err)
	}
	mfs, _ := ln.n.metrics.Gather()
	foreign := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "lastmile_commands_replies_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetValue() == "foreign" {
						foreign = m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if foreign != 1 {
		t.Fatalf("foreign replies counted: %v", foreign)
	}
}

// TestCommandOnAnotherNode: two nodes share a Redis store; a command sent
// through the node that does not hold the device answers UNAVAILABLE and
// names the node that does.
func TestCommandOnAnotherNode(t *testing.T) {
	t.Parallel()
	a := startNode(t, config.EngineRedis, nil)
	b := startNode(t, config.EngineRedis, func(c *config.Config) {
		c.NodeName = "t2"
		c.Store.Redis.Addr = a.n.cfg.Store.Redis.Addr
	})
	d := connectV5(t, a.mqtt, "d1", a.device(t, "d1", nil), nil)
	d.subscribe(t, topic.CommandSubscription("d1"))
	_, err := commandv1.NewCommandServiceClient(b.conn).InvokeCommand(b.ctx(t), &commandv1.InvokeCommandRequest{DeviceId: "d1", Name: "reboot"})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "connected to node t1") {
		t.Fatalf("through the other node: %v", err)
	}
}
