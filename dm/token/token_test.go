package token

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type memStore struct {
	mu     sync.Mutex
	tokens map[string]Token
}

func (m *memStore) CreateToken(_ context.Context, t *Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tokens[t.ID]; ok {
		return ErrExists
	}
	m.tokens[t.ID] = *t
	return nil
}

func (m *memStore) GetToken(_ context.Context, id string) (*Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[id]
	if !ok {
		return nil, ErrNotFound
	}
	return &t, nil
}

func (m *memStore) PutToken(_ context.Context, t *Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tokens[t.ID] = *t
	return nil
}

func (m *memStore) ListTokens(_ context.Context, after string, limit int) ([]*Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Token
	for _, id := range slices.Sorted(maps.Keys(m.tokens)) {
		if id > after && len(out) < limit {
			t := m.tokens[id]
			out = append(out, &t)
		}
	}
	return out, nil
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newService(t *testing.T) (*Service, *clock) {
	t.Helper()
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, err := New(Config{Store: &memStore{tokens: map[string]Token{}}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s, clk
}

func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clk := newService(t)
	boot, err := s.Bootstrap(ctx)
	if err != nil || !strings.HasPrefix(boot, Prefix) {
		t.Fatalf("bootstrap: %q %v", boot, err)
	}
	if again, err := s.Bootstrap(ctx); err != nil || again != "" {
		t.Fatalf("second bootstrap must not mint a token: %q %v", again, err)
	}
	tok, bearer, err := s.Create(ctx, "oss", []string{PermDevicesWrite}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Authenticate(ctx, bearer)
	if err != nil || got.ID != tok.ID {
		t.Fatalf("authenticate: %v", err)
	}
	if !got.Allows(PermDevicesRead) || !got.Allows(PermDevicesWrite) || got.Allows(PermTokensAdmin) {
		t.Fatalf("permissions wrong: %v", got.Permissions)
	}
	for _, bad := range []string{"", "lmt_", "Bearer x", bearer + "x", strings.Replace(bearer, tok.ID, "aaaaaaaaaaaa", 1)} {
		if _, err := s.Authenticate(ctx, bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate(%q) = %v, want ErrUnauthenticated", bad, err)
		}
	}
	if _, err := s.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	// Revocation must take effect at once on this node, cache or not.
	if _, err := s.Authenticate(ctx, bearer); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked token still works: %v", err)
	}
	_, short, err := s.Create(ctx, "short", nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, short); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Minute)
	if _, err := s.Authenticate(ctx, short); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("expired token still works: %v", err)
	}
	active, _, err := s.List(ctx, "", 10, false)
	if err != nil || len(active) != 1 || active[0].Name != "bootstrap" {
		t.Fatalf("active tokens: %v %v", active, err)
	}
	all, _, err := s.List(ctx, "", 10, true)
	if err != nil || len(all) != 3 {
		t.Fatalf("all tokens: %d %v", len(all), err)
	}
}

func TestCreateRejects(t *testing.T) {
	t.Parallel()
	s, _ := newService(t)
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		perms []string
		ttl   time.Duration
	}{
		{"", nil, 0},
		{strings.Repeat("n", 129), nil, 0},
		{"x", []string{"devices:delete"}, 0},
		{"x", nil, -time.Second},
	} {
		if _, _, err := s.Create(ctx, c.name, c.perms, c.ttl); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%q, %v, %v) = %v, want ErrInvalid", c.name, c.perms, c.ttl, err)
		}
	}
}
