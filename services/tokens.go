package services

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lastmile-dm/lastmile/dm/token"
	accessv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/access/v1"
)

// tokenServer implements TokenService.
type tokenServer struct {
	accessv1.UnimplementedTokenServiceServer
	tokens *token.Service
	log    *slog.Logger
}

func tokenToProto(t *token.Token) *accessv1.Token {
	out := &accessv1.Token{Id: t.ID, Name: t.Name, Permissions: t.Permissions, CreateTime: timestamppb.New(t.CreatedAt)}
	if !t.ExpiresAt.IsZero() {
		out.ExpireTime = timestamppb.New(t.ExpiresAt)
	}
	if !t.RevokedAt.IsZero() {
		out.RevokeTime = timestamppb.New(t.RevokedAt)
	}
	return out
}

func (s *tokenServer) CreateToken(ctx context.Context, req *accessv1.CreateTokenRequest) (*accessv1.CreateTokenResponse, error) {
	if req.GetTtlSeconds() < 0 {
		return nil, invalid("ttl_seconds must not be negative")
	}
	t, bearer, err := s.tokens.Create(ctx, req.GetName(), req.GetPermissions(), time.Duration(req.GetTtlSeconds())*time.Second)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	if caller := callerToken(ctx); caller != nil {
		s.log.Info("token created", "token", t.ID, "name", t.Name, "by", caller.ID)
	}
	return &accessv1.CreateTokenResponse{Token: tokenToProto(t), Secret: bearer}, nil
}

func (s *tokenServer) ListTokens(ctx context.Context, req *accessv1.ListTokensRequest) (*accessv1.ListTokensResponse, error) {
	if req.GetPageSize() < 0 || req.GetPageSize() > 1000 {
		return nil, invalid("page_size must be 0-1000")
	}
	ts, next, err := s.tokens.List(ctx, req.GetPageToken(), int(req.GetPageSize()), req.GetShowInactive())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out := &accessv1.ListTokensResponse{NextPageToken: next}
	for _, t := range ts {
		out.Tokens = append(out.Tokens, tokenToProto(t))
	}
	return out, nil
}

func (s *tokenServer) RevokeToken(ctx context.Context, req *accessv1.RevokeTokenRequest) (*accessv1.Token, error) {
	if req.GetTokenId() == "" {
		return nil, invalid("token_id is required")
	}
	t, err := s.tokens.Revoke(ctx, req.GetTokenId())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return tokenToProto(t), nil
}
