package services

import (
	"context"
	"fmt"
	"log/slog"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lastmile-dm/lastmile/dm/access"
	accessv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/access/v1"
)

// accessServer implements AccessService: roles and MQTT applications.
type accessServer struct {
	accessv1.UnimplementedAccessServiceServer
	access *access.Service
	log    *slog.Logger
}

var (
	actionToProto = map[access.Action]accessv1.Action{access.ActionPublish: accessv1.Action_ACTION_PUBLISH, access.ActionSubscribe: accessv1.Action_ACTION_SUBSCRIBE, access.ActionAll: accessv1.Action_ACTION_ALL}
	effectToProto = map[access.Effect]accessv1.Effect{access.Allow: accessv1.Effect_EFFECT_ALLOW, access.Deny: accessv1.Effect_EFFECT_DENY}
)

func roleToProto(r *access.Role) *accessv1.Role {
	out := &accessv1.Role{Name: r.Name, Source: r.Source}
	if !r.UpdatedAt.IsZero() {
		out.UpdateTime = timestamppb.New(r.UpdatedAt)
	}
	for _, x := range r.Rules {
		out.Rules = append(out.Rules, &accessv1.TopicRule{Action: actionToProto[x.Action], Effect: effectToProto[x.Effect], Filter: x.Filter})
	}
	return out
}

func roleFromProto(r *accessv1.Role) (access.Role, error) {
	out := access.Role{Name: r.GetName()}
	for i, x := range r.GetRules() {
		var rule access.Rule
		for a, p := range actionToProto {
			if p == x.GetAction() {
				rule.Action = a
			}
		}
		for e, p := range effectToProto {
			if p == x.GetEffect() {
				rule.Effect = e
			}
		}
		if rule.Action == "" {
			return out, invalid(fmt.Sprintf("role.rules[%d].action must be ACTION_PUBLISH, ACTION_SUBSCRIBE or ACTION_ALL", i))
		}
		if rule.Effect == "" {
			return out, invalid(fmt.Sprintf("role.rules[%d].effect must be EFFECT_ALLOW or EFFECT_DENY", i))
		}
		rule.Filter = x.GetFilter()
		out.Rules = append(out.Rules, rule)
	}
	return out, nil
}

func appToProto(a *access.Application) *accessv1.Application {
	return &accessv1.Application{Name: a.Name, Role: a.Role, Enabled: proto.Bool(a.Enabled),
		CreateTime: timestamppb.New(a.CreatedAt), UpdateTime: timestamppb.New(a.UpdatedAt)}
}

func (s *accessServer) PutRole(ctx context.Context, req *accessv1.PutRoleRequest) (*accessv1.Role, error) {
	if req.GetRole() == nil {
		return nil, invalid("role is required")
	}
	r, err := roleFromProto(req.GetRole())
	if err != nil {
		return nil, err
	}
	out, err := s.access.PutRole(ctx, r)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return roleToProto(out), nil
}

func (s *accessServer) GetRole(ctx context.Context, req *accessv1.GetRoleRequest) (*accessv1.Role, error) {
	r, err := s.access.Role(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return roleToProto(r), nil
}

func (s *accessServer) ListRoles(ctx context.Context, _ *accessv1.ListRolesRequest) (*accessv1.ListRolesResponse, error) {
	rs, err := s.access.ListRoles(ctx)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out := &accessv1.ListRolesResponse{}
	for _, r := range rs {
		out.Roles = append(out.Roles, roleToProto(r))
	}
	return out, nil
}

func (s *accessServer) DeleteRole(ctx context.Context, req *accessv1.DeleteRoleRequest) (*accessv1.DeleteRoleResponse, error) {
	if err := s.access.DeleteRole(ctx, req.GetName()); err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &accessv1.DeleteRoleResponse{}, nil
}

func (s *accessServer) CreateApplication(ctx context.Context, req *accessv1.CreateApplicationRequest) (*accessv1.CreateApplicationResponse, error) {
	in := req.GetApplication()
	if in == nil {
		return nil, invalid("application is required")
	}
	a, secret, err := s.access.CreateApplication(ctx, access.Application{Name: in.GetName(), Role: in.GetRole(), Enabled: in.Enabled == nil || in.GetEnabled()})
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &accessv1.CreateApplicationResponse{Application: appToProto(a), Secret: secret}, nil
}

func (s *accessServer) GetApplication(ctx context.Context, req *accessv1.GetApplicationRequest) (*accessv1.Application, error) {
	a, err := s.access.GetApplication(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return appToProto(a), nil
}

func (s *accessServer) ListApplications(ctx context.Context, _ *accessv1.ListApplicationsRequest) (*accessv1.ListApplicationsResponse, error) {
	as, err := s.access.ListApplications(ctx)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out := &accessv1.ListApplicationsResponse{}
	for _, a := range as {
		out.Applications = append(out.Applications, appToProto(a))
	}
	return out, nil
}

func (s *accessServer) UpdateApplication(ctx context.Context, req *accessv1.UpdateApplicationRequest) (*accessv1.Application, error) {
	in := req.GetApplication()
	if in.GetName() == "" {
		return nil, invalid("application.name is required")
	}
	var role *string
	if in.GetRole() != "" {
		role = proto.String(in.GetRole())
	}
	a, err := s.access.UpdateApplication(ctx, in.GetName(), role, in.Enabled)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return appToProto(a), nil
}

func (s *accessServer) DeleteApplication(ctx context.Context, req *accessv1.DeleteApplicationRequest) (*accessv1.DeleteApplicationResponse, error) {
	if err := s.access.DeleteApplication(ctx, req.GetName()); err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &accessv1.DeleteApplicationResponse{}, nil
}

func (s *accessServer) RotateApplicationSecret(ctx context.Context, req *accessv1.RotateApplicationSecretRequest) (*accessv1.RotateApplicationSecretResponse, error) {
	secret, err := s.access.RotateApplicationSecret(ctx, req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &accessv1.RotateApplicationSecretResponse{Secret: secret}, nil
}
