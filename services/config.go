package services

import (
	"context"
	"log/slog"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lastmile-dm/lastmile/dm/config"
	configv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/config/v1"
)

// configServer implements ConfigService on config push.
type configServer struct {
	configv1.UnimplementedConfigServiceServer
	svc *config.Service
	log *slog.Logger
}

func profileToProto(p *config.Profile, latest int64) *configv1.Profile {
	return &configv1.Profile{Name: p.Name, Format: p.Format, Description: p.Description, Schema: p.Schema,
		CreateTime: timestamppb.New(p.CreatedAt), LatestVersion: latest}
}

func versionToProto(v *config.Version, content bool) *configv1.Version {
	out := &configv1.Version{Profile: v.Profile, Version: v.Version, Hash: v.Hash, Comment: v.Comment, CreateTime: timestamppb.New(v.CreatedAt)}
	if content {
		out.Content = string(v.Content)
	}
	return out
}

func rolloutToProto(r *config.Rollout) *configv1.Rollout {
	return &configv1.Rollout{Id: r.ID, Profile: r.Profile, Version: r.Version, Hash: r.Hash,
		Target: &configv1.Target{DeviceId: r.Target.DeviceID, Group: r.Target.Group, Query: r.Target.Query},
		Rate:   int32(r.Rate), Devices: int32(r.Devices), State: r.State, CreateTime: timestamppb.New(r.CreatedAt)} //nolint:gosec // bounded by MaxRate and MaxRolloutDevices
}

func (s *configServer) CreateProfile(ctx context.Context, req *configv1.CreateProfileRequest) (*configv1.Profile, error) {
	p := req.GetProfile()
	if p == nil {
		return nil, invalid("profile is required")
	}
	out, err := s.svc.CreateProfile(ctx, config.Profile{Name: p.GetName(), Format: p.GetFormat(), Description: p.GetDescription(), Schema: p.GetSchema()})
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return profileToProto(out, 0), nil
}

func (s *configServer) GetProfile(ctx context.Context, req *configv1.GetProfileRequest) (*configv1.Profile, error) {
	p, latest, err := s.svc.GetProfile(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return profileToProto(p, latest), nil
}

func (s *configServer) CreateVersion(ctx context.Context, req *configv1.CreateVersionRequest) (*configv1.CreateVersionResponse, error) {
	if req.GetContent() == "" {
		return nil, invalid("content is required")
	}
	v, created, err := s.svc.CreateVersion(ctx, req.GetProfile(), []byte(req.GetContent()), req.GetComment())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &configv1.CreateVersionResponse{Version: versionToProto(v, true), Created: created}, nil
}

func (s *configServer) ListVersions(ctx context.Context, req *configv1.ListVersionsRequest) (*configv1.ListVersionsResponse, error) {
	vs, next, err := s.svc.ListVersions(ctx, req.GetProfile(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out := &configv1.ListVersionsResponse{NextPageToken: next}
	for _, v := range vs {
		out.Versions = append(out.Versions, versionToProto(v, req.GetWithContent()))
	}
	return out, nil
}

func (s *configServer) Assign(ctx context.Context, req *configv1.AssignRequest) (*configv1.Rollout, error) {
	t := req.GetTarget()
	if t == nil {
		return nil, invalid("target is required")
	}
	r, err := s.svc.Assign(ctx, req.GetProfile(), req.GetVersion(),
		config.Target{DeviceID: t.GetDeviceId(), Group: t.GetGroup(), Query: t.GetQuery()}, int(req.GetRate()))
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return rolloutToProto(r), nil
}

func (s *configServer) ListRollouts(ctx context.Context, req *configv1.ListRolloutsRequest) (*configv1.ListRolloutsResponse, error) {
	rs, next, err := s.svc.ListRollouts(ctx, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out := &configv1.ListRolloutsResponse{NextPageToken: next}
	for _, r := range rs {
		out.Rollouts = append(out.Rollouts, rolloutToProto(r))
	}
	return out, nil
}

func (s *configServer) GetRolloutStatus(ctx context.Context, req *configv1.GetRolloutStatusRequest) (*configv1.RolloutStatus, error) {
	st, err := s.svc.GetRolloutStatus(ctx, req.GetRolloutId(), int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out := &configv1.RolloutStatus{Rollout: rolloutToProto(st.Rollout), Totals: map[string]int32{}, NextPageToken: st.NextToken}
	for k, v := range st.Totals {
		out.Totals[k] = int32(v) //nolint:gosec // bounded by MaxRolloutDevices
	}
	for _, d := range st.Devices {
		out.Devices = append(out.Devices, &configv1.DeviceStatus{DeviceId: d.DeviceID, State: d.State, Reason: d.Reason,
			Released: d.Released, UpdateTime: timestamppb.New(d.UpdatedAt)})
	}
	return out, nil
}
