package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// memStore is an in-memory Store and PresenceStore for the domain tests; the
// real engines run the contract suite in internal/store/storetest.
type memStore struct {
	mu       sync.Mutex
	devices  map[string]Device
	presence map[string]Presence
}

func newMemStore() *memStore {
	return &memStore{devices: map[string]Device{}, presence: map[string]Presence{}}
}

func (m *memStore) CreateDevice(_ context.Context, d *Device) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.devices[d.ID]; ok {
		return ErrExists
	}
	m.devices[d.ID] = *d
	return nil
}

func (m *memStore) GetDevice(_ context.Context, id string) (*Device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.devices[id]
	if !ok {
		return nil, ErrNotFound
	}
	d.Labels = maps.Clone(d.Labels)
	return &d, nil
}

func (m *memStore) UpdateDevice(_ context.Context, d *Device, expect uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.devices[d.ID]
	if !ok {
		return ErrNotFound
	}
	if old.Revision != expect {
		return ErrConflict
	}
	m.devices[d.ID] = *d
	return nil
}

func (m *memStore) DeleteDevice(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.devices[id]; !ok {
		return ErrNotFound
	}
	delete(m.devices, id)
	delete(m.presence, id)
	return nil
}

func (m *memStore) ListDevices(_ context.Context, after string, limit int) ([]*Device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := slices.Sorted(maps.Keys(m.devices))
	var out []*Device
	for _, id := range ids {
		if id > after && len(out) < limit {
			d := m.devices[id]
			out = append(out, &d)
		}
	}
	return out, nil
}

func (m *memStore) SetOnline(_ context.Context, p Presence) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.presence[p.DeviceID] = p
	return nil
}

func (m *memStore) SetOffline(_ context.Context, id, conn string, at time.Time, reason string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.presence[id]
	if !ok || p.Conn != conn {
		return false, nil
	}
	p.Online, p.DisconnectedAt, p.DisconnectReason = false, at, reason
	m.presence[id] = p
	return true, nil
}

func (m *memStore) GetPresence(_ context.Context, ids []string) (map[string]Presence, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Presence{}
	for _, id := range ids {
		if p, ok := m.presence[id]; ok {
			out[id] = p
		}
	}
	return out, nil
}

func (m *memStore) ResetNode(context.Context, string, time.Time, string) error { return nil }

type kicks struct {
	mu  sync.Mutex
	ids []string
}

func (k *kicks) Kick(id, reason string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.ids = append(k.ids, id)
	return true
}

func (k *kicks) got() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.ids)
}

func newService(t *testing.T) (*Service, *kicks) {
	t.Helper()
	st := newMemStore()
	k := &kicks{}
	s, err := New(Config{Store: st, Presence: st, Kicker: k})
	if err != nil {
		t.Fatal(err)
	}
	return s, k
}

func TestAuthenticateOutcomes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newService(t)
	_, secret, err := s.Create(ctx, Device{ID: "dev1", Enabled: true}, Secret{Generate: true})
	if err != nil || secret == "" {
		t.Fatalf("create: %v, secret %q", err, secret)
	}
	if _, _, err := s.Create(ctx, Device{ID: "off", Enabled: false}, Secret{Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(ctx, Device{ID: "bad", Enabled: true, Banned: true}, Secret{Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		req  AuthRequest
		want error
	}{
		{"ok", AuthRequest{ClientID: "dev1", Username: "dev1", Password: []byte(secret)}, nil},
		{"wrong password", AuthRequest{ClientID: "dev1", Username: "dev1", Password: []byte("nope")}, ErrBadCredentials},
		{"unknown device", AuthRequest{ClientID: "ghost", Username: "ghost", Password: []byte(secret)}, ErrBadCredentials},
		{"no username", AuthRequest{ClientID: "dev1"}, ErrBadCredentials},
		{"client id mismatch", AuthRequest{ClientID: "other", Username: "dev1", Password: []byte(secret)}, ErrClientIDMismatch},
		{"disabled", AuthRequest{ClientID: "off", Username: "off", Password: []byte("correct horse battery")}, ErrDisabled},
		// A stranger must not learn that a device is disabled or banned.
		{"disabled wrong password", AuthRequest{ClientID: "off", Username: "off", Password: []byte("x")}, ErrBadCredentials},
		{"banned", AuthRequest{ClientID: "bad", Username: "bad", Password: []byte("correct horse battery")}, ErrBanned},
		{"banned wrong password", AuthRequest{ClientID: "bad", Username: "bad", Password: []byte("x")}, ErrBadCredentials},
	}
	for _, c := range cases {
		_, err := s.Authenticate(ctx, c.req)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), string(c.req.Password)) && len(c.req.Password) > 3 {
			t.Errorf("%s: error leaks the password: %v", c.name, err)
		}
	}
}

func TestCreateRejectsBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newService(t)
	for _, d := range []Device{
		{ID: ""},
		{ID: "a/b"},
		{ID: "ok", Labels: map[string]string{"bad key": "v"}},
		{ID: "ok", Name: strings.Repeat("n", MaxNameLen+1)},
	} {
		if _, _, err := s.Create(ctx, d, Secret{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%+v) = %v, want ErrInvalid", d, err)
		}
	}
	if _, _, err := s.Create(ctx, Device{ID: "x"}, Secret{Password: "p", Generate: true}); !errors.Is(err, ErrInvalid) {
		t.Errorf("password and generate: %v", err)
	}
	if _, _, err := s.Create(ctx, Device{ID: "dup"}, Secret{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(ctx, Device{ID: "dup"}, Secret{}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
}

func TestUpdateEtagAndKick(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, k := newService(t)
	d, _, err := s.Create(ctx, Device{ID: "dev1", Enabled: true}, Secret{})
	if err != nil {
		t.Fatal(err)
	}
	name := "gw-1"
	d2, err := s.Update(ctx, "dev1", Patch{Name: &name, ExpectRevision: d.Revision})
	if err != nil || d2.Name != name || d2.Revision != d.Revision+1 {
		t.Fatalf("update: %+v %v", d2, err)
	}
	if _, err := s.Update(ctx, "dev1", Patch{Name: &name, ExpectRevision: d.Revision}); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale etag: %v", err)
	}
	if len(k.got()) != 0 {
		t.Fatalf("rename kicked the device: %v", k.got())
	}
	off := false
	if _, err := s.Update(ctx, "dev1", Patch{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	if got := k.got(); !slices.Equal(got, []string{"dev1"}) {
		t.Fatalf("disable kicks: %v", got)
	}
	if _, err := s.Update(ctx, "ghost", Patch{Name: &name}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if err := s.Delete(ctx, "dev1", false); err != nil {
		t.Fatal(err)
	}
	if got := k.got(); len(got) != 2 {
		t.Fatalf("delete did not kick: %v", got)
	}
	if err := s.Delete(ctx, "dev1", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.Delete(ctx, "dev1", true); err != nil {
		t.Fatalf("allow_missing delete: %v", err)
	}
}

func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newService(t)
	if _, _, err := s.Create(ctx, Device{ID: "dev1"}, Secret{}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			labels := map[string]string{fmt.Sprint("k", i): "v"}
			if _, err := s.Update(ctx, "dev1", Patch{Labels: &labels}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	d, _, err := s.Get(ctx, "dev1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Revision != n+1 {
		t.Fatalf("revision %d after %d updates, want %d", d.Revision, n, n+1)
	}
}

func TestListPagesAndFilters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newService(t)
	for i := range 25 {
		region := "north"
		if i%5 == 0 {
			region = "south"
		}
		d := Device{ID: fmt.Sprintf("dev%02d", i), Labels: map[string]string{"region": region}}
		if _, _, err := s.Create(ctx, d, Secret{}); err != nil {
			t.Fatal(err)
		}
	}
	s.Connected(ctx, Presence{DeviceID: "dev03", Conn: "c1"})
	var all []string
	tok := ""
	for range 10 {
		p, err := s.List(ctx, Query{PageSize: 7, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range p.Devices {
			all = append(all, d.ID)
		}
		if p.NextToken == "" {
			break
		}
		tok = p.NextToken
	}
	if len(all) != 25 || !slices.IsSorted(all) {
		t.Fatalf("paged through %d devices (sorted %v): %v", len(all), slices.IsSorted(all), all)
	}
	sel, _ := ParseSelector("region=south")
	p, err := s.List(ctx, Query{Selector: sel})
	if err != nil || len(p.Devices) != 5 {
		t.Fatalf("selector: %d devices, %v", len(p.Devices), err)
	}
	online := true
	p, err = s.List(ctx, Query{Online: &online})
	if err != nil || len(p.Devices) != 1 || p.Devices[0].ID != "dev03" || !p.Presence["dev03"].Online {
		t.Fatalf("online filter: %+v %v", p, err)
	}
	if _, err := s.List(ctx, Query{PageToken: "!!not-base64"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad token: %v", err)
	}
}

func TestStaleDisconnectIgnored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newService(t)
	if _, _, err := s.Create(ctx, Device{ID: "dev1"}, Secret{}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.Connected(ctx, Presence{DeviceID: "dev1", Conn: "old"})
	s.Connected(ctx, Presence{DeviceID: "dev1", Conn: "new"}) // takeover
	s.Disconnected(ctx, "dev1", "old", now, "taken over")
	_, p, err := s.Get(ctx, "dev1")
	if err != nil || !p.Online || p.Conn != "new" {
		t.Fatalf("after stale disconnect: %+v %v", p, err)
	}
	s.Disconnected(ctx, "dev1", "new", now, "keepalive timeout")
	if _, p, _ = s.Get(ctx, "dev1"); p.Online || p.DisconnectReason != "keepalive timeout" {
		t.Fatalf("after disconnect: %+v", p)
	}
}

func TestSetCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, k := newService(t)
	_, old, err := s.Create(ctx, Device{ID: "dev1", Enabled: true}, Secret{Generate: true})
	if err != nil {
		t.Fatal(err)
	}
	_, fresh, err := s.SetCredentials(ctx, "dev1", CredentialChange{Secret: Secret{Generate: true}, Disconnect: true})
	if err != nil || fresh == "" || fresh == old {
		t.Fatalf("rotate: %v", err)
	}
	if len(k.got()) != 1 {
		t.Fatalf("rotate with disconnect did not kick")
	}
	if _, err := s.Authenticate(ctx, AuthRequest{ClientID: "dev1", Username: "dev1", Password: []byte(old)}); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old secret still works: %v", err)
	}
	if _, err := s.Authenticate(ctx, AuthRequest{ClientID: "dev1", Username: "dev1", Password: []byte(fresh)}); err != nil {
		t.Fatalf("new secret: %v", err)
	}
	if _, _, err := s.SetCredentials(ctx, "dev1", CredentialChange{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty change: %v", err)
	}
	if _, _, err := s.SetCredentials(ctx, "dev1", CredentialChange{ClearPassword: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, AuthRequest{ClientID: "dev1", Username: "dev1", Password: []byte(fresh)}); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("cleared password still works: %v", err)
	}
	bad := "zz"
	if _, _, err := s.SetCredentials(ctx, "dev1", CredentialChange{CertFingerprint: &bad}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad fingerprint: %v", err)
	}
}
