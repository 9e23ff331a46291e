package services

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lastmile-dm/lastmile/dm/credential"
	"github.com/lastmile-dm/lastmile/dm/event"
	"github.com/lastmile-dm/lastmile/dm/registry"
	devicev1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/device/v1"
)

// deviceServer implements DeviceService on the registry.
type deviceServer struct {
	devicev1.UnimplementedDeviceServiceServer
	reg *registry.Service
	log *slog.Logger
	// events caches labels for label-filtered watches; told of changes.
	events *event.Bus
}

func ts(t interface{ IsZero() bool }) bool { return !t.IsZero() }

func deviceToProto(d *registry.Device, p registry.Presence) *devicev1.Device {
	out := &devicev1.Device{
		Id: d.ID, Name: d.Name, Labels: d.Labels, Groups: d.Groups,
		Enabled: proto.Bool(d.Enabled), Banned: d.Banned,
		CreateTime: timestamppb.New(d.CreatedAt), UpdateTime: timestamppb.New(d.UpdatedAt),
		Etag:        strconv.FormatUint(d.Revision, 10),
		Credentials: &devicev1.Credentials{CertificateFingerprint: d.CertFingerprint},
		Presence: &devicev1.Presence{
			Online: p.Online, ClientId: p.ClientID, RemoteAddr: p.RemoteAddr, Listener: p.Listener,
			ProtocolVersion: uint32(p.ProtocolVersion), KeepaliveSeconds: uint32(p.Keepalive),
			LastDisconnectReason: p.DisconnectReason,
		},
	}
	switch credential.KindOf(d.PasswordHash) {
	case credential.KindGenerated:
		out.Credentials.PasswordKind = devicev1.PasswordKind_PASSWORD_KIND_GENERATED
	case credential.KindChosen:
		out.Credentials.PasswordKind = devicev1.PasswordKind_PASSWORD_KIND_CHOSEN
	}
	if ts(d.PasswordSetAt) {
		out.Credentials.PasswordSetTime = timestamppb.New(d.PasswordSetAt)
	}
	if ts(p.ConnectedAt) {
		out.Presence.LastConnectTime = timestamppb.New(p.ConnectedAt)
	}
	if ts(p.DisconnectedAt) {
		out.Presence.LastDisconnectTime = timestamppb.New(p.DisconnectedAt)
	}
	return out
}

func (s *deviceServer) CreateDevice(ctx context.Context, req *devicev1.CreateDeviceRequest) (*devicev1.CreateDeviceResponse, error) {
	in := req.GetDevice()
	if in == nil {
		return nil, invalid("device is required")
	}
	d := registry.Device{ID: in.GetId(), Name: in.GetName(), Labels: in.GetLabels(), Groups: in.GetGroups(),
		Enabled: in.Enabled == nil || in.GetEnabled(), Banned: in.GetBanned(),
		CertFingerprint: in.GetCredentials().GetCertificateFingerprint()}
	out, secret, err := s.reg.Create(ctx, d, registry.Secret{Password: req.GetPassword(), Generate: req.GetGenerateSecret()})
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &devicev1.CreateDeviceResponse{Device: deviceToProto(out, registry.Presence{}), Secret: secret}, nil
}

func (s *deviceServer) GetDevice(ctx context.Context, req *devicev1.GetDeviceRequest) (*devicev1.Device, error) {
	if req.GetDeviceId() == "" {
		return nil, invalid("device_id is required")
	}
	d, p, err := s.reg.Get(ctx, req.GetDeviceId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return deviceToProto(d, p), nil
}

func (s *deviceServer) ListDevices(ctx context.Context, req *devicev1.ListDevicesRequest) (*devicev1.ListDevicesResponse, error) {
	if req.GetPageSize() < 0 || req.GetPageSize() > registry.MaxPageSize {
		return nil, invalid(fmt.Sprintf("page_size must be 0-%d", registry.MaxPageSize))
	}
	sel, err := registry.ParseSelector(req.GetLabelSelector())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	q := registry.Query{PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken(), Selector: sel, Group: req.GetGroup()}
	switch req.GetOnline() {
	case devicev1.OnlineFilter_ONLINE_FILTER_ONLINE:
		q.Online = proto.Bool(true)
	case devicev1.OnlineFilter_ONLINE_FILTER_OFFLINE:
		q.Online = proto.Bool(false)
	}
	page, err := s.reg.List(ctx, q)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out := &devicev1.ListDevicesResponse{NextPageToken: page.NextToken, Devices: make([]*devicev1.Device, 0, len(page.Devices))}
	for _, d := range page.Devices {
		out.Devices = append(out.Devices, deviceToProto(d, page.Presence[d.ID]))
	}
	return out, nil
}

func (s *deviceServer) UpdateDevice(ctx context.Context, req *devicev1.UpdateDeviceRequest) (*devicev1.Device, error) {
	in := req.GetDevice()
	if in.GetId() == "" {
		return nil, invalid("device.id is required")
	}
	var p registry.Patch
	if in.GetEtag() != "" {
		rev, err := strconv.ParseUint(in.GetEtag(), 10, 64)
		if err != nil {
			return nil, invalid(fmt.Sprintf("device.etag %q is not an etag this server issued", in.GetEtag()))
		}
		p.ExpectRevision = rev
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		// No mask: update the fields the request sets.
		if in.GetName() != "" {
			paths = append(paths, "name")
		}
		if in.Labels != nil {
			paths = append(paths, "labels")
		}
		if in.Groups != nil {
			paths = append(paths, "groups")
		}
		if in.Enabled != nil {
			paths = append(paths, "enabled")
		}
	}
	if len(paths) == 0 {
		return nil, invalid("nothing to update: set update_mask or fields of device")
	}
	for _, f := range paths {
		switch f {
		case "name":
			p.Name = proto.String(in.GetName())
		case "labels":
			l := in.GetLabels()
			p.Labels = &l
		case "groups":
			g := in.GetGroups()
			p.Groups = &g
		case "enabled":
			p.Enabled = proto.Bool(in.GetEnabled())
		case "banned":
			p.Banned = proto.Bool(in.GetBanned())
		default:
			return nil, invalid(fmt.Sprintf("update_mask: field %q cannot be updated (name, labels, groups, enabled, banned)", f))
		}
	}
	d, err := s.reg.Update(ctx, in.GetId(), p)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	s.events.ForgetLabels(d.ID)
	_, pr, err := s.reg.Get(ctx, d.ID)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return deviceToProto(d, pr), nil
}

func (s *deviceServer) DeleteDevice(ctx context.Context, req *devicev1.DeleteDeviceRequest) (*devicev1.DeleteDeviceResponse, error) {
	if req.GetDeviceId() == "" {
		return nil, invalid("device_id is required")
	}
	if err := s.reg.Delete(ctx, req.GetDeviceId(), req.GetAllowMissing()); err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &devicev1.DeleteDeviceResponse{}, nil
}

func (s *deviceServer) SetDeviceCredentials(ctx context.Context, req *devicev1.SetDeviceCredentialsRequest) (*devicev1.SetDeviceCredentialsResponse, error) {
	if req.GetDeviceId() == "" {
		return nil, invalid("device_id is required")
	}
	c := registry.CredentialChange{
		Secret:        registry.Secret{Password: req.GetPassword(), Generate: req.GetGenerateSecret()},
		ClearPassword: req.GetClearPassword(),
		Disconnect:    req.GetDisconnect(),
	}
	if req.GetCertificateFingerprint() != "" {
		c.CertFingerprint = proto.String(req.GetCertificateFingerprint())
	}
	d, secret, err := s.reg.SetCredentials(ctx, req.GetDeviceId(), c)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	_, pr, err := s.reg.Get(ctx, d.ID)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &devicev1.SetDeviceCredentialsResponse{Device: deviceToProto(d, pr), Secret: secret}, nil
}

func (s *deviceServer) DisconnectDevice(ctx context.Context, req *devicev1.DisconnectDeviceRequest) (*devicev1.DisconnectDeviceResponse, error) {
	if req.GetDeviceId() == "" {
		return nil, invalid("device_id is required")
	}
	was, err := s.reg.Disconnect(ctx, req.GetDeviceId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &devicev1.DisconnectDeviceResponse{WasConnected: was}, nil
}
