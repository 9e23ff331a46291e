package services

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	_ "github.com/lastmile-dm/lastmile/internal/grpcbuf" // gRPC buffers sized for bulk streams
	tunnelv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/tunnel/v1"
	"github.com/lastmile-dm/lastmile/tunnel"
	"github.com/lastmile-dm/lastmile/tunnel/relay"
)

// tunnelServer implements TunnelService on the tunnel relay.
type tunnelServer struct {
	tunnelv1.UnimplementedTunnelServiceServer
	relay *relay.Relay
	log   *slog.Logger
}

func tunnelToProto(i relay.Info) *tunnelv1.Tunnel {
	return &tunnelv1.Tunnel{Id: i.ID, DeviceId: i.DeviceID, Target: i.Target, Principal: i.Principal,
		OpenTime: timestamppb.New(i.Opened), Connections: int32(min(i.Streams, 1<<30)), //nolint:gosec // bounded
		BytesIn: i.BytesIn, BytesOut: i.BytesOut}
}

func (s *tunnelServer) OpenTunnel(ctx context.Context, req *tunnelv1.OpenTunnelRequest) (*tunnelv1.Tunnel, error) {
	principal := ""
	if t := callerToken(ctx); t != nil {
		principal = "token:" + t.ID
	}
	sess, err := s.relay.Open(ctx, relay.OpenRequest{DeviceID: req.GetDeviceId(), Target: req.GetTarget(), Principal: principal})
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return tunnelToProto(sess.Info()), nil
}

func (s *tunnelServer) ListTunnels(_ context.Context, req *tunnelv1.ListTunnelsRequest) (*tunnelv1.ListTunnelsResponse, error) {
	size := int(req.GetPageSize())
	if size < 0 || size > 1000 {
		return nil, invalid("page_size must be 0-1000")
	}
	if size == 0 {
		size = 100
	}
	// The page token is an offset into the list, oldest first: tunnels are
	// few and short-lived, and a page may shift as they come and go.
	from := 0
	if t := req.GetPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return nil, invalid("page_token is not one this server returned")
		}
		from = n
	}
	var all []relay.Info
	for _, i := range s.relay.List() {
		if d := req.GetDeviceId(); d == "" || d == i.DeviceID {
			all = append(all, i)
		}
	}
	out := &tunnelv1.ListTunnelsResponse{}
	for i := from; i < len(all) && i < from+size; i++ {
		out.Tunnels = append(out.Tunnels, tunnelToProto(all[i]))
	}
	if from+size < len(all) {
		out.NextPageToken = strconv.Itoa(from + size)
	}
	return out, nil
}

func (s *tunnelServer) CloseTunnel(ctx context.Context, req *tunnelv1.CloseTunnelRequest) (*tunnelv1.CloseTunnelResponse, error) {
	if err := s.relay.Close(req.GetTunnelId()); err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &tunnelv1.CloseTunnelResponse{}, nil
}

func (s *tunnelServer) GetTunnelKey(context.Context, *tunnelv1.GetTunnelKeyRequest) (*tunnelv1.TunnelKey, error) {
	return &tunnelv1.TunnelKey{PublicKey: base64.StdEncoding.EncodeToString(s.relay.PublicKey())}, nil
}

// Connect splices one gRPC stream to one tunnel stream. It returns when
// both directions are done, or with the reason the tunnel stream ended.
func (s *tunnelServer) Connect(gs tunnelv1.TunnelService_ConnectServer) error {
	ctx := gs.Context()
	first, err := gs.Recv()
	if err != nil {
		return err
	}
	if first.GetTunnelId() == "" {
		return invalid("the first message must name tunnel_id")
	}
	sess, err := s.relay.Get(first.GetTunnelId())
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	st, err := sess.Dial(ctx)
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	defer func() { _ = st.Close() }()

	// Client -> device.
	up := make(chan error, 1)
	go func() { up <- s.upload(gs, first, st) }()

	// Device -> client.
	buf := make([]byte, tunnel.DefaultMaxData)
	for {
		n, err := st.Read(buf)
		if n > 0 {
			if serr := gs.Send(&tunnelv1.ConnectResponse{Data: buf[:n]}); serr != nil {
				st.Reset(tunnel.ReasonNormal, "client went away")
				return serr
			}
		}
		if errors.Is(err, io.EOF) {
			if err := gs.Send(&tunnelv1.ConnectResponse{CloseWrite: true}); err != nil {
				return err
			}
			break
		}
		if err != nil {
			return toStatus(ctx, s.log, err)
		}
	}
	select {
	case err := <-up:
		if err != nil {
			return toStatus(ctx, s.log, err)
		}
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// uploadQueue is how many received Connect messages wait for the tunnel
// stream: enough to fill a data frame from lmctl's 64 KiB messages.
const uploadQueue = 4

// upload carries the client's bytes to the device until the client's
// half-close. A receiver goroutine decodes gRPC messages while this one
// publishes, and the messages that queued up during a publish leave
// together in one data frame (up to the frame size): fewer, larger MQTT
// packets, each costing the broker and the device a fixed amount.
func (s *tunnelServer) upload(gs tunnelv1.TunnelService_ConnectServer, first *tunnelv1.ConnectRequest, st *tunnel.Stream) error {
	type msg struct {
		data []byte
		err  error // io.EOF: the client half-closed
	}
	q := make(chan msg, uploadQueue)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		m := first
		for {
			var next msg
			if d := m.GetData(); len(d) > 0 {
				next.data = d
			}
			if m.GetCloseWrite() {
				next.err = io.EOF
			}
			if next.data != nil || next.err != nil {
				select {
				case q <- next:
				case <-stop:
					return
				}
				if next.err != nil {
					return
				}
			}
			var err error
			if m, err = gs.Recv(); err != nil {
				select {
				case q <- msg{err: err}:
				case <-stop:
				}
				return
			}
		}
	}()
	frame := st.Session().MaxData()
	var carry *msg
	for {
		var m msg
		if carry != nil {
			m, carry = *carry, nil
		} else {
			m = <-q
		}
		bufs, size := [][]byte{m.data}, len(m.data)
	batch:
		for m.err == nil && size < frame {
			select {
			case n := <-q:
				if size+len(n.data) > frame {
					carry = &n
					break batch
				}
				bufs, size, m.err = append(bufs, n.data), size+len(n.data), n.err
			default:
				break batch
			}
		}
		if size > 0 {
			held := slices.Clone(bufs) // WriteBuffers consumes bufs
			_, err := st.WriteBuffers(bufs)
			for _, b := range held {
				recycle(b) // decoded by connectCodec into pooled buffers
			}
			if err != nil {
				return err
			}
		}
		switch {
		case m.err == nil:
		case errors.Is(m.err, io.EOF):
			return st.CloseWrite()
		default:
			st.Reset(tunnel.ReasonNormal, "client went away")
			return m.err
		}
	}
}

var _ tunnelv1.TunnelServiceServer = (*tunnelServer)(nil)
