package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/lastmile-dm/lastmile/dm/access"
	"github.com/lastmile-dm/lastmile/dm/token"
)

var (
	_ access.Store = (*Store)(nil)
	_ token.Store  = (*Store)(nil)
)

const (
	prefixRole  = "r/"
	prefixApp   = "a/"
	prefixToken = "t/"
)

// PutRole creates or replaces a role.
func (s *Store) PutRole(_ context.Context, r *access.Role) error {
	defer s.observe("put_role", time.Now())
	return s.putJSON(prefixRole+r.Name, r, true)
}

// GetRole returns a role or access.ErrNotFound.
func (s *Store) GetRole(_ context.Context, name string) (*access.Role, error) {
	defer s.observe("get_role", time.Now())
	var r access.Role
	ok, err := s.getJSON(prefixRole+name, &r)
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
	return listAll[access.Role](ctx, s, prefixRole)
}

// DeleteRole removes a role or returns access.ErrNotFound.
func (s *Store) DeleteRole(_ context.Context, name string) error {
	defer s.observe("delete_role", time.Now())
	return s.deleteExisting(prefixRole+name, fmt.Errorf("role %s: %w", name, access.ErrNotFound))
}

// CreateApplication stores a new application or returns access.ErrExists.
func (s *Store) CreateApplication(_ context.Context, a *access.Application) error {
	defer s.observe("create_application", time.Now())
	return s.create(prefixApp+a.Name, a, fmt.Errorf("application %s: %w", a.Name, access.ErrExists))
}

// PutApplication replaces an existing application or returns access.ErrNotFound.
func (s *Store) PutApplication(_ context.Context, a *access.Application) error {
	defer s.observe("put_application", time.Now())
	return s.replace(prefixApp+a.Name, a, fmt.Errorf("application %s: %w", a.Name, access.ErrNotFound))
}

// GetApplication returns an application or access.ErrNotFound.
func (s *Store) GetApplication(_ context.Context, name string) (*access.Application, error) {
	defer s.observe("get_application", time.Now())
	var a access.Application
	ok, err := s.getJSON(prefixApp+name, &a)
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
	return listAll[access.Application](ctx, s, prefixApp)
}

// DeleteApplication removes an application or returns access.ErrNotFound.
func (s *Store) DeleteApplication(_ context.Context, name string) error {
	defer s.observe("delete_application", time.Now())
	return s.deleteExisting(prefixApp+name, fmt.Errorf("application %s: %w", name, access.ErrNotFound))
}

// CreateToken stores a new token or returns token.ErrExists.
func (s *Store) CreateToken(_ context.Context, t *token.Token) error {
	defer s.observe("create_token", time.Now())
	return s.create(prefixToken+t.ID, t, fmt.Errorf("token %s: %w", t.ID, token.ErrExists))
}

// GetToken returns a token or token.ErrNotFound.
func (s *Store) GetToken(_ context.Context, id string) (*token.Token, error) {
	defer s.observe("get_token", time.Now())
	var t token.Token
	ok, err := s.getJSON(prefixToken+id, &t)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("token %s: %w", id, token.ErrNotFound)
	}
	return &t, nil
}

// PutToken replaces an existing token or returns token.ErrNotFound.
func (s *Store) PutToken(_ context.Context, t *token.Token) error {
	defer s.observe("put_token", time.Now())
	return s.replace(prefixToken+t.ID, t, fmt.Errorf("token %s: %w", t.ID, token.ErrNotFound))
}

// ListTokens returns up to limit tokens with IDs after after, by ID.
func (s *Store) ListTokens(ctx context.Context, after string, limit int) ([]*token.Token, error) {
	defer s.observe("list_tokens", time.Now())
	lower := ""
	if after != "" {
		lower = after + "\x00"
	}
	var out []*token.Token
	errFull := fmt.Errorf("full")
	err := s.scan(ctx, prefixToken, lower, func(_ string, v []byte) error {
		if len(out) >= limit {
			return errFull
		}
		var t token.Token
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		out = append(out, &t)
		return nil
	})
	if err != nil && err != errFull { //nolint:errorlint // our own sentinel, never wrapped
		return nil, err
	}
	return out, nil
}

func listAll[T any](ctx context.Context, s *Store, prefix string) ([]*T, error) {
	var out []*T
	err := s.scan(ctx, prefix, "", func(_ string, v []byte) error {
		x := new(T)
		if err := json.Unmarshal(v, x); err != nil {
			return err
		}
		out = append(out, x)
		return nil
	})
	return out, err
}

func (s *Store) create(key string, v any, exists error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok, err := s.get(key); err != nil {
		return err
	} else if ok {
		return exists
	}
	return s.putJSON(key, v, true)
}

func (s *Store) replace(key string, v any, notFound error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok, err := s.get(key); err != nil {
		return err
	} else if !ok {
		return notFound
	}
	return s.putJSON(key, v, true)
}

func (s *Store) deleteExisting(key string, notFound error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok, err := s.get(key); err != nil {
		return err
	} else if !ok {
		return notFound
	}
	return s.db.Delete([]byte(key), pebble.Sync)
}
