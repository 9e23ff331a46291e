package node

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// TestConfigPushOverMQTT: a device (paho, MQTT 5) gets its document on
// release and on asking, is confirmed when it reports awaiting_confirm,
// and its outcome shows in the rollout status and on the event stream;
// group and fleet-query targets resolve through the registry and the
// shadows. On both stores.
func TestConfigPushOverMQTT(t *testing.T) {
	t.Parallel()
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			ln := startNode(t, engine, nil)
			for _, id := range []string{"cp1", "cp2", "cp3"} {
				lab := "lab"
				if id == "cp3" {
					lab = "field"
				}
				if _, _, err := ln.n.registry.Create(t.Context(), registry.Device{ID: id, Enabled: true, Groups: []string{"g"},
					Labels: map[string]string{"site": lab}}, registry.Secret{Password: "password-" + id}); err != nil {
					t.Fatal(err)
				}
			}
			events := ln.restStream(t, "/v1/events:watch?types=EVENT_TYPE_JOB_PROGRESS")
			if first := <-events; first["result"] == nil {
				t.Fatalf("first line %v", first)
			}
			d := connectV5(t, ln.mqtt, "cp1", "password-cp1", nil)
			d.subscribe(t, topic.ConfigDeviceFilter("cp1"))

			if code, body := ln.rest(t, "POST", "/v1/config/profiles", `{"profile": {"name": "wan", "format": "json", "schema": {"mtu": "integer"}}}`); code != 200 {
				t.Fatalf("create profile: %d %v", code, body)
			}
			content := `{"mtu": 1492}`
			if code, body := ln.rest(t, "POST", "/v1/config/profiles/wan/versions", fmt.Sprintf(`{"content": %q}`, content)); code != 200 {
				t.Fatalf("create version: %d %v", code, body)
			}
			code, body := ln.rest(t, "POST", "/v1/config/rollouts", `{"profile": "wan", "version": 1, "target": {"device_id": "cp1"}}`)
			rid, _ := body["id"].(string)
			if code != 200 || rid == "" {
				t.Fatalf("assign: %d %v", code, body)
			}
			next := func(kind string) *paho.Publish {
				t.Helper()
				for {
					select {
					case p := <-d.got:
						if _, k, _ := topic.ParseConfigTopic(p.Topic); k == kind {
							return p
						}
					case <-time.After(20 * time.Second):
						t.Fatalf("no %s", kind)
						return nil
					}
				}
			}
			doc, err := topic.ParseConfigDocument(next(topic.ConfigDocument).Payload)
			if err != nil || doc.Content != content || doc.Hash != topic.ConfigHash([]byte(content)) || doc.Rollout != rid || doc.Format != "json" {
				t.Fatalf("released document %+v %v", doc, err)
			}
			// Asking again (as on every connection) gets it again.
			d.publish(t, topic.ConfigTopic("cp1", topic.ConfigGet), 1, []byte("{}"))
			if again, _ := topic.ParseConfigDocument(next(topic.ConfigDocument).Payload); again.Hash != doc.Hash {
				t.Fatalf("asked: %+v", again)
			}
			status := func(state, reason string) {
				b, _ := json.Marshal(topic.ConfigStatusPayload{ConfigRef: doc.ConfigRef, State: state, Reason: reason})
				d.publish(t, topic.ConfigTopic("cp1", topic.ConfigStatus), 1, b)
			}
			status(topic.ConfigAwaitingConfirm, "")
			if c, err := topic.ParseConfigConfirm(next(topic.ConfigConfirm).Payload); err != nil || c.Hash != doc.Hash {
				t.Fatalf("confirm %+v %v", c, err)
			}
			status(topic.ConfigApplied, "")
			eventually(t, "applied in the rollout status", func() bool {
				_, st := ln.rest(t, "GET", "/v1/config/rollouts/"+rid, "")
				tot, _ := st["totals"].(map[string]any)
				return tot["applied"] == float64(1)
			})
			var seen []string
			eventually(t, "job.progress events up to applied", func() bool {
				select {
				case m := <-events:
					ev, _ := m["result"].(map[string]any)["event"].(map[string]any)
					jp, _ := ev["job_progress"].(map[string]any)
					if jp["job_id"] == rid && ev["device_id"] == "cp1" {
						seen = append(seen, jp["state"].(string))
					}
				default:
				}
				return len(seen) > 0 && seen[len(seen)-1] == "applied"
			})
			if strings.Join(seen, ",") != "pending,delivered,applied" {
				t.Errorf("events %v", seen)
			}

			// Another device cannot report for cp1: the ACL refuses it.
			other := connectV5(t, ln.mqtt, "cp2", "password-cp2", nil)
			b, _ := json.Marshal(topic.ConfigStatusPayload{ConfigRef: doc.ConfigRef, State: topic.ConfigRolledBack, Reason: "forged"})
			ctx := ln.ctx(t)
			if pr, err := other.c.Publish(ctx, &paho.Publish{Topic: topic.ConfigTopic("cp1", topic.ConfigStatus), QoS: 1, Payload: b}); err == nil && pr.ReasonCode < 0x80 {
				t.Errorf("cp2 published on cp1's status topic: %v", pr)
			}

			// Group and query targets.
			code, body = ln.rest(t, "POST", "/v1/config/rollouts", `{"profile": "wan", "version": 1, "target": {"group": "g"}, "rate": 100}`)
			if code != 200 || body["devices"] != float64(3) {
				t.Errorf("group rollout: %d %v", code, body)
			}
			code, body = ln.rest(t, "POST", "/v1/config/rollouts", `{"profile": "wan", "version": 1, "target": {"query": "labels.site = \"lab\""}}`)
			if code != 200 || body["devices"] != float64(2) {
				t.Errorf("query rollout: %d %v", code, body)
			}
			if code, body = ln.rest(t, "POST", "/v1/config/rollouts", `{"profile": "wan", "version": 1, "target": {"query": "reported.x ~ 1"}}`); code != 400 {
				t.Errorf("bad query: %d %v", code, body)
			}
		})
	}
}
