package services

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/lastmile-dm/lastmile/dm/command"
	commandv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/command/v1"
)

// commandServer implements CommandService on package command.
type commandServer struct {
	commandv1.UnimplementedCommandServiceServer
	cmds *command.Service
	log  *slog.Logger
}

func (s *commandServer) InvokeCommand(ctx context.Context, req *commandv1.InvokeCommandRequest) (*commandv1.InvokeCommandResponse, error) {
	if s.cmds == nil {
		return nil, status.Error(codes.Unimplemented, "commands are not enabled on this server")
	}
	if req.GetDeviceId() == "" || req.GetName() == "" {
		return nil, invalid("device_id and name are required")
	}
	r := command.Request{DeviceID: req.GetDeviceId(), Name: req.GetName()}
	if req.Payload != nil {
		b, err := protojson.Marshal(req.GetPayload())
		if err != nil {
			return nil, invalid("payload: " + err.Error())
		}
		r.Payload = b
	}
	if req.Timeout != nil {
		if err := req.GetTimeout().CheckValid(); err != nil {
			return nil, invalid("timeout: " + err.Error())
		}
		// An explicit zero is a mistake, not "the default".
		if r.Timeout = req.GetTimeout().AsDuration(); r.Timeout <= 0 {
			return nil, invalid("timeout must be " + command.MinTimeout.String() + "-" + command.MaxTimeout.String())
		}
	}
	res, err := s.cmds.Invoke(ctx, r)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out := &commandv1.InvokeCommandResponse{RequestId: res.RequestID, Status: int32(res.Status), Duration: durationpb.New(res.Duration)}
	out.Payload = jsonValue(res.Payload)
	return out, nil
}

// jsonValue converts JSON to a protobuf Value; nil for none or non-JSON.
func jsonValue(b json.RawMessage) *structpb.Value {
	if len(b) == 0 {
		return nil
	}
	v := &structpb.Value{}
	if err := protojson.Unmarshal(b, v); err != nil {
		return nil
	}
	return v
}

func durationOf(d time.Duration) *durationpb.Duration { return durationpb.New(d) }
