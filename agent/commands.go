package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/lastmile-dm/lastmile/agent/command"
	"github.com/lastmile-dm/lastmile/agent/conn"
)

// Reply says where the answer to a request goes.
type Reply struct {
	Topic           string
	CorrelationData []byte
}

// CommandContract is how commands travel on the topic contract
// (dm/topic/command.go): the filter that carries requests, how to read one
// and how to address its answer. Implementations are pure functions of
// their arguments.
type CommandContract interface {
	// RequestFilter is the filter the device subscribes to for requests.
	RequestFilter(deviceID string) string
	// DecodeRequest reads a request. When it fails but the reply is known,
	// the agent still answers, with a bad_request error.
	DecodeRequest(deviceID string, m conn.Message) (command.Request, Reply, error)
	// EncodeResponse builds the message that answers a request.
	EncodeResponse(deviceID string, reply Reply, resp command.Response) (conn.Outgoing, error)
}

// Commands is the capability that runs the platform's commands through a
// command.Dispatcher.
type Commands struct {
	DeviceID   string
	Contract   CommandContract
	Dispatcher *command.Dispatcher
	// Timeout bounds one command. Default 5m.
	Timeout time.Duration
	Logger  *slog.Logger
}

var _ Capability = (*Commands)(nil)

// Filters subscribes to the request filter.
func (c *Commands) Filters(deviceID string) []string {
	return []string{c.Contract.RequestFilter(deviceID)}
}

// Connected does nothing: commands wait for requests.
func (c *Commands) Connected(context.Context, Publisher, conn.Protocol) {}

// Handle runs one request and publishes the answer.
func (c *Commands) Handle(ctx context.Context, m conn.Message, p Publisher) {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	req, reply, err := c.Contract.DecodeRequest(c.DeviceID, m)
	var resp command.Response
	if err != nil {
		if reply.Topic == "" {
			log.Warn("unreadable command request without a reply address; ignored", "topic", m.Topic, "err", err)
			return
		}
		resp = command.Response{Status: command.StatusError, Code: command.CodeBadRequest, Error: fmt.Sprintf("bad request: %v", err)}
	} else {
		timeout := c.Timeout
		if timeout == 0 {
			timeout = 5 * time.Minute
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		resp = c.Dispatcher.Dispatch(cctx, req)
		cancel()
		log.Info("command", "name", req.Name, "status", resp.Status, "code", resp.Code)
	}
	out, err := c.Contract.EncodeResponse(c.DeviceID, reply, resp)
	if err != nil {
		log.Error("encode command response", "err", err)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Publish(pctx, out); err != nil {
		log.Warn("command response not delivered", "name", req.Name, "err", err)
	}
}
