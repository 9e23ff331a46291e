package main

import (
	"encoding/json"

	"github.com/lastmile-dm/lastmile/agent/conn"
	"github.com/lastmile-dm/lastmile/agent/state"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

func init() {
	shadowContract = topicShadow{}
}

// applyErrorsKey is the reported key under which the agent lists the
// desired keys it could not apply (docs/shadows.md, "Keys the agent
// reports"). Like agent_version and agent_buffer it starts with "agent_":
// the agent owns it. Its value mirrors the desired keys
// ({"wifi": {"ssid": "reason"}}), so a fleet query can select devices by
// it: reported.agent_apply_errors.wifi.ssid EXISTS.
const applyErrorsKey = "agent_apply_errors"

// topicShadow binds the classic shadow to dm/topic/shadow.go. The platform
// publishes the delta when the device subscribes to it, so no get is needed.
type topicShadow struct{}

func (topicShadow) DeltaFilters(id string) []string { return []string{topic.ShadowDeltaTopic(id, "")} }

func (topicShadow) SyncRequest(string) (conn.Outgoing, bool) { return conn.Outgoing{}, false }

func (topicShadow) DecodeDelta(_ string, m conn.Message) (map[string]any, bool, error) {
	var d struct {
		State map[string]any `json:"state"`
	}
	if err := json.Unmarshal(m.Payload, &d); err != nil {
		return nil, false, err
	}
	return d.State, len(d.State) > 0, nil
}

// EncodeReport reports the applied keys and, after a delta, the apply
// errors: null when every key applied (clearing earlier errors); else the
// failed keys with their reason, and null for the keys that did apply now
// (clearing their earlier errors).
func (topicShadow) EncodeReport(id string, reported map[string]any, errs map[string]string) (conn.Outgoing, error) {
	switch {
	case errs == nil: // a full report on connecting: errors stay as they are
	case len(errs) == 0:
		reported[applyErrorsKey] = nil
	default:
		flat := map[string]any{}
		state.Flatten("", reported, flat, 0)
		e := make(map[string]any, len(flat)+len(errs))
		for k := range flat {
			e[k] = nil
		}
		for k, v := range errs {
			e[k] = v
		}
		reported[applyErrorsKey] = state.Nest(e)
	}
	b, err := json.Marshal(map[string]any{"state": map[string]any{"reported": reported}})
	return conn.Outgoing{Topic: topic.ShadowRequest(id, "", topic.ShadowUpdate), Payload: b, QoS: 1}, err
}
