package services

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lastmile-dm/lastmile/dm/shadow"
	shadowv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/shadow/v1"
)

// shadowServer implements ShadowService on the shadow service.
type shadowServer struct {
	shadowv1.UnimplementedShadowServiceServer
	svc *shadow.Service
	log *slog.Logger
}

// toStruct converts a shadow object (canonical JSON numbers) to a Struct.
func toStruct(o shadow.Object) (*structpb.Struct, error) {
	if o == nil {
		return nil, nil
	}
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	s := &structpb.Struct{}
	return s, protojson.Unmarshal(b, s)
}

func shadowToProto(id, name string, d *shadow.Document) (*shadowv1.ShadowDocument, error) {
	out := &shadowv1.ShadowDocument{DeviceId: id, ShadowName: name, Version: d.Version,
		UpdateTime: timestamppb.New(time.Unix(d.Timestamp, 0))}
	delta, _ := d.Delta()
	meta := shadow.Object{}
	if d.Metadata.Desired != nil {
		meta["desired"] = d.Metadata.Desired
	}
	if d.Metadata.Reported != nil {
		meta["reported"] = d.Metadata.Reported
	}
	var err error
	for _, f := range []struct {
		dst **structpb.Struct
		src shadow.Object
	}{{&out.Desired, d.State.Desired}, {&out.Reported, d.State.Reported}, {&out.Delta, delta}, {&out.Metadata, meta}} {
		if *f.dst, err = toStruct(f.src); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func needDevice(id string) error {
	if id == "" {
		return invalid("device_id is required")
	}
	return nil
}

func (s *shadowServer) GetShadow(ctx context.Context, req *shadowv1.GetShadowRequest) (*shadowv1.ShadowDocument, error) {
	if err := needDevice(req.GetDeviceId()); err != nil {
		return nil, err
	}
	d, err := s.svc.Get(ctx, req.GetDeviceId(), req.GetShadowName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out, err := shadowToProto(req.GetDeviceId(), req.GetShadowName(), d)
	return out, toStatus(ctx, s.log, err)
}

func (s *shadowServer) UpdateDesired(ctx context.Context, req *shadowv1.UpdateDesiredRequest) (*shadowv1.ShadowDocument, error) {
	if err := needDevice(req.GetDeviceId()); err != nil {
		return nil, err
	}
	if req.GetDesired() == nil && !req.GetClearDesired() {
		return nil, invalid("desired is required (or clear_desired)")
	}
	if err := s.svc.CheckDevice(ctx, req.GetDeviceId()); err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	// Build the same request a device would send, so the API and MQTT share
	// one parser with the same limits.
	var b strings.Builder
	b.WriteString(`{"state":{"desired":`)
	if req.GetDesired() != nil {
		desired, err := protojson.Marshal(req.GetDesired())
		if err != nil {
			return nil, invalid("desired: " + err.Error())
		}
		b.Write(desired)
	} else {
		b.WriteString(`null`)
	}
	b.WriteString(`}`)
	if req.ExpectedVersion != nil {
		b.WriteString(`,"version":`)
		b.WriteString(jsonUint(req.GetExpectedVersion()))
	}
	if req.GetClientToken() != "" {
		tok, _ := json.Marshal(req.GetClientToken())
		b.WriteString(`,"clientToken":`)
		b.Write(tok)
	}
	b.WriteString(`}`)
	u, err := shadow.ParseUpdate([]byte(b.String()), s.svc.Limits())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	// Clear, then merge, in one update (one version).
	u.ClearDesired = u.ClearDesired || req.GetClearDesired()
	res, err := s.svc.Update(ctx, req.GetDeviceId(), req.GetShadowName(), u)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out, err := shadowToProto(req.GetDeviceId(), req.GetShadowName(), res.Current)
	return out, toStatus(ctx, s.log, err)
}

func jsonUint(v uint64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func (s *shadowServer) DeleteShadow(ctx context.Context, req *shadowv1.DeleteShadowRequest) (*shadowv1.DeleteShadowResponse, error) {
	if err := needDevice(req.GetDeviceId()); err != nil {
		return nil, err
	}
	d, err := s.svc.Delete(ctx, req.GetDeviceId(), req.GetShadowName(), req.ExpectedVersion)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &shadowv1.DeleteShadowResponse{Version: d.Version}, nil
}

func (s *shadowServer) ListNamedShadows(ctx context.Context, req *shadowv1.ListNamedShadowsRequest) (*shadowv1.ListNamedShadowsResponse, error) {
	if err := needDevice(req.GetDeviceId()); err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, invalid("page_size must not be negative")
	case size == 0:
		size = shadow.DefaultFleetPageSize
	case size > shadow.MaxFleetPageSize:
		size = shadow.MaxFleetPageSize
	}
	after, err := base64.RawURLEncoding.DecodeString(req.GetPageToken())
	if err != nil {
		return nil, invalid("page_token is not one this server issued")
	}
	names, err := s.svc.List(ctx, req.GetDeviceId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out := &shadowv1.ListNamedShadowsResponse{}
	for _, n := range names {
		if n == "" {
			out.Classic = true
			continue
		}
		if n <= string(after) {
			continue
		}
		if len(out.Names) == size {
			out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(out.Names[size-1]))
			break
		}
		out.Names = append(out.Names, n)
	}
	return out, nil
}

func (s *shadowServer) QueryDevices(ctx context.Context, req *shadowv1.QueryDevicesRequest) (*shadowv1.QueryDevicesResponse, error) {
	f, err := shadow.ParseFilter(req.GetFilter())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	page, err := s.svc.QueryDevices(ctx, shadow.FleetQuery{Filter: f, Shadow: req.GetShadowName(),
		PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken()})
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out := &shadowv1.QueryDevicesResponse{NextPageToken: page.NextToken}
	for _, m := range page.Matches {
		dm := &shadowv1.DeviceMatch{DeviceId: m.Device.ID, Labels: m.Device.Labels}
		if m.Document != nil {
			if dm.Shadow, err = shadowToProto(m.Device.ID, req.GetShadowName(), m.Document); err != nil {
				return nil, toStatus(ctx, s.log, err)
			}
		}
		out.Devices = append(out.Devices, dm)
	}
	return out, nil
}
