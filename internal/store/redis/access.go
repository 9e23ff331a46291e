package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lastmile-dm/lastmile/dm/access"
	"github.com/lastmile-dm/lastmile/dm/token"
)

var (
	_ access.Store = (*Store)(nil)
	_ token.Store  = (*Store)(nil)
)

// PutRole creates or replaces a role.
func (s *Store) PutRole(ctx context.Context, r *access.Role) error {
	defer s.observe("put_role", time.Now())
	if ok, err := s.replace(ctx, s.p+"role:"+r.Name, r); err != nil || ok {
		return err
	}
	_, err := s.create(ctx, s.p+"role:"+r.Name, s.p+"roles", r.Name, r)
	return err
}

// GetRole returns a role or access.ErrNotFound.
func (s *Store) GetRole(ctx context.Context, name string) (*access.Role, error) {
	defer s.observe("get_role", time.Now())
	var r access.Role
	ok, err := s.getJSON(ctx, s.p+"role:"+name, &r)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("role %s: %w", name, access.ErrNotFound)
	}
	return &r, nil
}

// ListRoles returns every role in name order.
func (s *Store) ListRoles(ctx context.Context) ([]*access.Role, error) {
	defer s.observe("list_roles", time.Now())
	names, err := s.rdb.ZRangeArgs(ctx, goredis.ZRangeArgs{Key: s.p + "roles", Start: "-", Stop: "+", ByLex: true}).Result()
	if err != nil {
		return nil, err
	}
	return loadAll[access.Role](ctx, s, s.p+"role:", names)
}

// DeleteRole removes a role or returns access.ErrNotFound.
func (s *Store) DeleteRole(ctx context.Context, name string) error {
	defer s.observe("delete_role", time.Now())
	ok, err := s.remove(ctx, s.p+"role:"+name, s.p+"roles", name)
	if err == nil && !ok {
		err = fmt.Errorf("role %s: %w", name, access.ErrNotFound)
	}
	return err
}

// CreateApplication stores a new application or returns access.ErrExists.
func (s *Store) CreateApplication(ctx context.Context, a *access.Application) error {
	defer s.observe("create_application", time.Now())
	ok, err := s.create(ctx, s.p+"app:"+a.Name, s.p+"apps", a.Name, a)
	if err == nil && !ok {
		err = fmt.Errorf("application %s: %w", a.Name, access.ErrExists)
	}
	return err
}

// PutApplication replaces an existing application or returns access.ErrNotFound.
func (s *Store) PutApplication(ctx context.Context, a *access.Application) error {
	defer s.observe("put_application", time.Now())
	ok, err := s.replace(ctx, s.p+"app:"+a.Name, a)
	if err == nil && !ok {
		err = fmt.Errorf("application %s: %w", a.Name, access.ErrNotFound)
	}
	return err
}

// GetApplication returns an application or access.ErrNotFound.
func (s *Store) GetApplication(ctx context.Context, name string) (*access.Application, error) {
	defer s.observe("get_application", time.Now())
	var a access.Application
	ok, err := s.getJSON(ctx, s.p+"app:"+name, &a)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("application %s: %w", name, access.ErrNotFound)
	}
	return &a, nil
}

// ListApplications returns every application in name order.
func (s *Store) ListApplications(ctx context.Context) ([]*access.Application, error) {
	defer s.observe("list_applications", time.Now())
	names, err := s.rdb.ZRangeArgs(ctx, goredis.ZRangeArgs{Key: s.p + "apps", Start: "-", Stop: "+", ByLex: true}).Result()
	if err != nil {
		return nil, err
	}
	return loadAll[access.Application](ctx, s, s.p+"app:", names)
}

// DeleteApplication removes an application or returns access.ErrNotFound.
func (s *Store) DeleteApplication(ctx context.Context, name string) error {
	defer s.observe("delete_application", time.Now())
	ok, err := s.remove(ctx, s.p+"app:"+name, s.p+"apps", name)
	if err == nil && !ok {
		err = fmt.Errorf("application %s: %w", name, access.ErrNotFound)
	}
	return err
}

// CreateToken stores a new token or returns token.ErrExists.
func (s *Store) CreateToken(ctx context.Context, t *token.Token) error {
	defer s.observe("create_token", time.Now())
	ok, err := s.create(ctx, s.p+"tok:"+t.ID, s.p+"toks", t.ID, t)
	if err == nil && !ok {
		err = fmt.Errorf("token %s: %w", t.ID, token.ErrExists)
	}
	return err
}

// GetToken returns a token or token.ErrNotFound.
func (s *Store) GetToken(ctx context.Context, id string) (*token.Token, error) {
	defer s.observe("get_token", time.Now())
	var t token.Token
	ok, err := s.getJSON(ctx, s.p+"tok:"+id, &t)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("token %s: %w", id, token.ErrNotFound)
	}
	return &t, nil
}

// PutToken replaces an existing token or returns token.ErrNotFound.
func (s *Store) PutToken(ctx context.Context, t *token.Token) error {
	defer s.observe("put_token", time.Now())
	ok, err := s.replace(ctx, s.p+"tok:"+t.ID, t)
	if err == nil && !ok {
		err = fmt.Errorf("token %s: %w", t.ID, token.ErrNotFound)
	}
	return err
}

// ListTokens returns up to limit tokens with IDs after after, by ID.
func (s *Store) ListTokens(ctx context.Context, after string, limit int) ([]*token.Token, error) {
	defer s.observe("list_tokens", time.Now())
	ids, err := s.page(ctx, s.p+"toks", after, limit)
	if err != nil {
		return nil, err
	}
	return loadAll[token.Token](ctx, s, s.p+"tok:", ids)
}
