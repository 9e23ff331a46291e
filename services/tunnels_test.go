package services

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"log/slog"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tunnelv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/tunnel/v1"
	"github.com/lastmile-dm/lastmile/tunnel"
	"github.com/lastmile-dm/lastmile/tunnel/relay"
)

var discard = slog.New(slog.DiscardHandler)

func TestTunnelRequestsValidated(t *testing.T) {
	t.Parallel()
	r := newRelay(t)
	s := &tunnelServer{relay: r, log: discard}
	ctx := context.Background()
	for _, req := range []*tunnelv1.ListTunnelsRequest{{PageSize: -1}, {PageSize: 1001}, {PageToken: "x"}, {PageToken: "-3"}} {
		if _, err := s.ListTunnels(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("ListTunnels(%v) = %v, want InvalidArgument", req, err)
		}
	}
	if resp, err := s.ListTunnels(ctx, &tunnelv1.ListTunnelsRequest{}); err != nil || len(resp.GetTunnels()) != 0 {
		t.Fatalf("empty list: %v %v", resp, err)
	}
	cases := []struct {
		req  *tunnelv1.OpenTunnelRequest
		code codes.Code
	}{
		{&tunnelv1.OpenTunnelRequest{DeviceId: "d/1", Target: "127.0.0.1:22"}, codes.InvalidArgument},
		{&tunnelv1.OpenTunnelRequest{DeviceId: "d1", Target: "127.0.0.1"}, codes.InvalidArgument},
		{&tunnelv1.OpenTunnelRequest{DeviceId: "d1", Target: "127.0.0.1:22"}, codes.Unavailable}, // no such device online
	}
	for _, c := range cases {
		if _, err := s.OpenTunnel(ctx, c.req); status.Code(err) != c.code {
			t.Errorf("OpenTunnel(%v) = %v, want %v", c.req, err, c.code)
		}
	}
	if _, err := s.CloseTunnel(ctx, &tunnelv1.CloseTunnelRequest{TunnelId: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("CloseTunnel of an unknown tunnel: %v", err)
	}
	k, err := s.GetTunnelKey(ctx, &tunnelv1.GetTunnelKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := base64.StdEncoding.DecodeString(k.GetPublicKey()); !ed25519.PublicKey(b).Equal(r.PublicKey()) {
		t.Fatalf("key %q", k.GetPublicKey())
	}
}

func TestTunnelReasonsMapToCodes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		code codes.Code
	}{
		{&tunnel.ReasonError{Reason: tunnel.ReasonNotAllowed}, codes.FailedPrecondition},
		{&tunnel.ReasonError{Reason: tunnel.ReasonDialFailed}, codes.FailedPrecondition},
		{&tunnel.ReasonError{Reason: tunnel.ReasonTooMany}, codes.ResourceExhausted},
		{&tunnel.ReasonError{Reason: tunnel.ReasonIdle}, codes.Aborted},
		{&tunnel.ReasonError{Reason: tunnel.ReasonLost}, codes.Unavailable},
		{relay.ErrRejected, codes.FailedPrecondition},
		{relay.ErrNoAnswer, codes.Unavailable},
	}
	for _, c := range cases {
		if got := status.Code(toStatus(context.Background(), discard, c.err)); got != c.code {
			t.Errorf("%v -> %v, want %v", c.err, got, c.code)
		}
	}
}
