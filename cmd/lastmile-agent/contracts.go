package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/lastmile-dm/lastmile/agent"
	"github.com/lastmile-dm/lastmile/agent/command"
	"github.com/lastmile-dm/lastmile/agent/conn"
	"github.com/lastmile-dm/lastmile/agent/state"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

func init() {
	commandContract = topicCommands{}
	shadowContract = topicShadow{}
}

// topicCommands binds the agent's commands to dm/topic/command.go.
type topicCommands struct{}

func (topicCommands) RequestFilter(id string) string { return topic.CommandSubscription(id) }

func (topicCommands) DecodeRequest(id string, m conn.Message) (command.Request, agent.Reply, error) {
	reply := agent.Reply{Topic: m.ResponseTopic, CorrelationData: m.CorrelationData}
	rest, ok := strings.CutPrefix(m.Topic, topic.Platform(id, topic.CommandLevel)+"/")
	if !ok {
		return command.Request{}, reply, fmt.Errorf("%s is not a command topic", m.Topic)
	}
	name, reqID, v3 := strings.Cut(rest, "/") // 3.1.1: .../cmd/{name}/{requestId}
	if reply.Topic == "" && v3 && topic.ValidCommandName(name) && topic.ValidRequestID(reqID) {
		reply.Topic = topic.CommandReply(id, name, reqID)
	}
	if !topic.ValidCommandName(name) {
		return command.Request{}, reply, fmt.Errorf("bad command name %q", name)
	}
	if reply.Topic == "" {
		return command.Request{}, reply, errors.New("no response topic and no request ID")
	}
	return command.Request{Name: name, Args: m.Payload}, reply, nil
}

// replyStatus maps a response to the contract's HTTP-like status.
var replyStatus = map[string]int{
	command.CodeBadRequest: 400, command.CodeNotAllowed: 403, command.CodeUnknownCommand: 404, command.CodeFailed: 500,
}

func (topicCommands) EncodeResponse(_ string, r agent.Reply, resp command.Response) (conn.Outgoing, error) {
	status, body := 200, any(resp.Result)
	if resp.Status != command.StatusOK {
		status, body = replyStatus[resp.Code], map[string]string{"code": resp.Code, "error": resp.Error}
		if status == 0 {
			status = 500
		}
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return conn.Outgoing{}, err
	}
	b, err := json.Marshal(topic.Reply{Status: status, Payload: payload})
	return conn.Outgoing{Topic: r.Topic, Payload: b, QoS: 1, CorrelationData: r.CorrelationData}, err
}

// applyErrorsKey is the reported key under which the agent lists the
// desired keys it could not apply (docs/shadows.md, "Keys the agent
// reports"). Like agent_version and agent_buffer it starts with "agent_":
// the agent owns it. Its value mirrors the desired keys
// ({"wifi": {"ssid": "reason"}}), so a fleet query can select devices by
// it: reported.agent_apply_errors.wifi.ssid != null.
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
