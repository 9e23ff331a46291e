package services

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lastmile-dm/lastmile/dm/token"
)

// authenticator checks the bearer token of every call against the
// permission table.
type authenticator struct {
	tokens *token.Service
}

type tokenKey struct{}

// callerToken returns the authenticated token of a call.
func callerToken(ctx context.Context) *token.Token {
	t, _ := ctx.Value(tokenKey{}).(*token.Token)
	return t
}

func (a *authenticator) check(ctx context.Context, method string) (context.Context, error) {
	if strings.HasPrefix(method, "/grpc.reflection.") {
		// Reflection describes the API (as /openapi.json does) and returns no data.
		return ctx, nil
	}
	perm, ok := permissions[method]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "method %s has no permission rule", method)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return nil, status.Error(codes.Unauthenticated, "missing bearer token: send 'authorization: Bearer lmt_...'")
	}
	bearer, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok {
		bearer, ok = strings.CutPrefix(vals[0], "bearer ")
	}
	if !ok || bearer == "" {
		return nil, status.Error(codes.Unauthenticated, "malformed authorization header: want 'Bearer lmt_...'")
	}
	t, err := a.tokens.Authenticate(ctx, strings.TrimSpace(bearer))
	if errors.Is(err, token.ErrUnauthenticated) {
		return nil, status.Error(codes.Unauthenticated, "invalid, expired or revoked token")
	}
	if err != nil {
		return nil, status.Error(codes.Unavailable, "cannot check the token now; retry")
	}
	if !t.Allows(perm) {
		return nil, status.Errorf(codes.PermissionDenied, "token %s (%s) lacks permission %q", t.ID, t.Name, perm)
	}
	return context.WithValue(ctx, tokenKey{}, t), nil
}

func (a *authenticator) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := a.check(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (a *authenticator) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := a.check(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return h(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }
