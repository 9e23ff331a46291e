package access

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
)

type memStore struct {
	mu    sync.Mutex
	roles map[string]Role
	apps  map[string]Application
}

func newMemStore() *memStore {
	return &memStore{roles: map[string]Role{}, apps: map[string]Application{}}
}

func (m *memStore) PutRole(_ context.Context, r *Role) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.roles[r.Name] = *r
	return nil
}

func (m *memStore) GetRole(_ context.Context, name string) (*Role, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.roles[name]
	if !ok {
		return nil, ErrNotFound
	}
	return &r, nil
}

func (m *memStore) ListRoles(context.Context) ([]*Role, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Role
	for _, k := range slices.Sorted(maps.Keys(m.roles)) {
		r := m.roles[k]
		out = append(out, &r)
	}
	return out, nil
}

func (m *memStore) DeleteRole(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.roles[name]; !ok {
		return ErrNotFound
	}
	delete(m.roles, name)
	return nil
}

func (m *memStore) CreateApplication(_ context.Context, a *Application) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.apps[a.Name]; ok {
		return ErrExists
	}
	m.apps[a.Name] = *a
	return nil
}

func (m *memStore) PutApplication(_ context.Context, a *Application) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.apps[a.Name]; !ok {
		return ErrNotFound
	}
	m.apps[a.Name] = *a
	return nil
}

func (m *memStore) GetApplication(_ context.Context, name string) (*Application, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.apps[name]
	if !ok {
		return nil, ErrNotFound
	}
	return &a, nil
}

func (m *memStore) ListApplications(context.Context) ([]*Application, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Application
	for _, k := range slices.Sorted(maps.Keys(m.apps)) {
		a := m.apps[k]
		out = append(out, &a)
	}
	return out, nil
}

func (m *memStore) DeleteApplication(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.apps[name]; !ok {
		return ErrNotFound
	}
	delete(m.apps, name)
	return nil
}

type kicks struct {
	mu    sync.Mutex
	names []string
}

func (k *kicks) KickApplication(name, reason string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.names = append(k.names, name)
	return 1
}

func (k *kicks) count() int { k.mu.Lock(); defer k.mu.Unlock(); return len(k.names) }

func TestApplications(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := &kicks{}
	s, err := New(Config{
		Store:  newMemStore(),
		Roles:  []Role{{Name: "cfg-reader", Rules: []Rule{{Action: ActionSubscribe, Effect: Allow, Filter: "tele/+/#"}}}},
		Kicker: k,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutRole(ctx, Role{Name: "cfg-reader"}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("config role overwritten: %v", err)
	}
	if _, err := s.PutRole(ctx, Role{Name: "writer", Rules: []Rule{{Action: ActionPublish, Effect: Allow, Filter: "ops/#"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateApplication(ctx, Application{Name: "oss", Role: "nope", Enabled: true}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown role accepted: %v", err)
	}
	if _, _, err := s.CreateApplication(ctx, Application{Name: "bad name", Role: "writer"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name accepted: %v", err)
	}
	_, secret, err := s.CreateApplication(ctx, Application{Name: "oss", Role: "writer", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	_, r, err := s.AuthenticateApplication(ctx, "app:oss:1", "app:oss", []byte(secret))
	if err != nil || !r.MayPublish("ops/x") || r.MayPublish("tele/d/x") {
		t.Fatalf("authenticate: %v", err)
	}
	for _, c := range []struct {
		clientID, user, secret string
		want                   error
	}{
		{"app:oss", "app:oss", "wrong", ErrBadCredentials},
		{"app:ghost", "app:ghost", secret, ErrBadCredentials},
		{"dev1", "app:oss", secret, ErrClientIDInvalid},
		{"app:ossx", "app:oss", secret, ErrClientIDInvalid},
		{"app:oss", "oss", secret, ErrBadCredentials},
	} {
		if _, _, err := s.AuthenticateApplication(ctx, c.clientID, c.user, []byte(c.secret)); !errors.Is(err, c.want) {
			t.Errorf("AuthenticateApplication(%q, %q) = %v, want %v", c.clientID, c.user, err, c.want)
		}
	}
	// A new rule set reaches connected applications by kicking them.
	if _, err := s.PutRole(ctx, Role{Name: "writer", Rules: []Rule{{Action: ActionPublish, Effect: Allow, Filter: "ops2/#"}}}); err != nil {
		t.Fatal(err)
	}
	if k.count() != 1 {
		t.Fatalf("role change kicked %d applications, want 1", k.count())
	}
	if _, r, _ = s.AuthenticateApplication(ctx, "app:oss", "app:oss", []byte(secret)); r.MayPublish("ops/x") || !r.MayPublish("ops2/x") {
		t.Fatal("stale role rules after PutRole")
	}
	if err := s.DeleteRole(ctx, "writer"); !errors.Is(err, ErrInUse) {
		t.Fatalf("delete role in use: %v", err)
	}
	off := false
	if _, err := s.UpdateApplication(ctx, "oss", nil, &off); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AuthenticateApplication(ctx, "app:oss", "app:oss", []byte(secret)); !errors.Is(err, ErrDisabled) {
		t.Fatalf("disabled app: %v", err)
	}
	fresh, err := s.RotateApplicationSecret(ctx, "oss")
	if err != nil || fresh == secret {
		t.Fatalf("rotate: %v", err)
	}
	if _, err := s.AnonymousRole(); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("anonymous must be off by default: %v", err)
	}
}
