// Package storetest is the contract every lastmile store engine passes. An
// engine's test calls Run with a function that opens a fresh, empty store;
// the suite then checks the semantics the domain relies on: not-found and
// exists sentinels, compare-and-set on revisions, ordering and paging,
// stale-disconnect handling, and atomic, ordered session batches.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/broker/persist"
	"github.com/lastmile-dm/lastmile/dm/access"
	"github.com/lastmile-dm/lastmile/dm/config"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/shadow"
	"github.com/lastmile-dm/lastmile/dm/token"
)

// Store is what an engine implements.
type Store interface {
	registry.Store
	registry.PresenceStore
	access.Store
	token.Store
	persist.Store
	shadow.Store
	config.Store
}

// Opener opens a fresh, empty store; the engine's test cleans it up.
type Opener func(t *testing.T) Store

// Run runs the whole contract against stores from open.
func Run(t *testing.T, open Opener) {
	t.Run("Devices", func(t *testing.T) { t.Parallel(); testDevices(t, open(t)) })
	t.Run("DeviceCAS", func(t *testing.T) { t.Parallel(); testDeviceCAS(t, open(t)) })
	t.Run("DeviceList", func(t *testing.T) { t.Parallel(); testDeviceList(t, open(t)) })
	t.Run("Presence", func(t *testing.T) { t.Parallel(); testPresence(t, open(t)) })
	t.Run("Access", func(t *testing.T) { t.Parallel(); testAccess(t, open(t)) })
	t.Run("Tokens", func(t *testing.T) { t.Parallel(); testTokens(t, open(t)) })
	t.Run("Sessions", func(t *testing.T) { t.Parallel(); testSessions(t, open(t)) })
	t.Run("SessionsConcurrent", func(t *testing.T) { t.Parallel(); testSessionsConcurrent(t, open(t)) })
	t.Run("Shadows", func(t *testing.T) { t.Parallel(); testShadows(t, open(t)) })
	t.Run("ShadowCAS", func(t *testing.T) { t.Parallel(); testShadowCAS(t, open(t)) })
	t.Run("Config", func(t *testing.T) { t.Parallel(); testConfig(t, open(t)) })
	t.Run("Lease", func(t *testing.T) { t.Parallel(); testLease(t, open(t)) })
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func device(id string) *registry.Device {
	return &registry.Device{
		ID: id, Name: "name " + id, Labels: map[string]string{"region": "north"}, Groups: []string{"g1"},
		Enabled: true, PasswordHash: "h$" + id, PasswordSetAt: t0, CertFingerprint: "ab",
		CreatedAt: t0, UpdatedAt: t0, Revision: 1,
	}
}

func testDevices(t *testing.T, s Store) {
	ctx := context.Background()
	if _, err := s.GetDevice(ctx, "d1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}
	d := device("d1")
	if err := s.CreateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDevice(ctx, device("d1")); !errors.Is(err, registry.ErrExists) {
		t.Fatalf("create twice: %v, want ErrExists", err)
	}
	got, err := s.GetDevice(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(*got) != fmt.Sprint(*d) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", *got, *d)
	}
	if err := s.SetOnline(ctx, registry.Presence{DeviceID: "d1", Online: true, Conn: "c1", Node: "n"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDevice(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDevice(ctx, "d1"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("delete twice: %v, want ErrNotFound", err)
	}
	if p, _ := s.GetPresence(ctx, []string{"d1"}); len(p) != 0 {
		t.Fatalf("presence survives delete: %+v", p)
	}
	if err := s.UpdateDevice(ctx, device("d1"), 1); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("update missing: %v, want ErrNotFound", err)
	}
}

func testDeviceCAS(t *testing.T, s Store) {
	ctx := context.Background()
	if err := s.CreateDevice(ctx, device("d1")); err != nil {
		t.Fatal(err)
	}
	// Many writers race from revision 1; exactly one wins each round.
	for round := uint64(1); round <= 5; round++ {
		var wins sync.WaitGroup
		var mu sync.Mutex
		won := 0
		for w := range 8 {
			wins.Add(1)
			go func() {
				defer wins.Done()
				d := device("d1")
				d.Revision = round + 1
				d.Name = fmt.Sprint("writer ", w)
				err := s.UpdateDevice(ctx, d, round)
				switch {
				case err == nil:
					mu.Lock()
					won++
					mu.Unlock()
				case !errors.Is(err, registry.ErrConflict):
					t.Errorf("update: %v, want nil or ErrConflict", err)
				}
			}()
		}
		wins.Wait()
		if won != 1 {
			t.Fatalf("round %d: %d writers won, want exactly 1", round, won)
		}
	}
	got, err := s.GetDevice(ctx, "d1")
	if err != nil || got.Revision != 6 {
		t.Fatalf("after 5 rounds: %+v %v, want revision 6", got, err)
	}
}

func testDeviceList(t *testing.T, s Store) {
	ctx := context.Background()
	var want []string
	for i := range 25 {
		id := fmt.Sprintf("dev-%02d", 24-i) // insert out of order
		want = append(want, id)
		if err := s.CreateDevice(ctx, device(id)); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(want)
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		page, err := s.ListDevices(ctx, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 10 {
			t.Fatalf("page of %d, limit 10", len(page))
		}
		for _, d := range page {
			got = append(got, d.ID)
		}
		if len(page) < 10 {
			break
		}
		after = page[len(page)-1].ID
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listed %v\nwant %v", got, want)
	}
	page, err := s.ListDevices(ctx, "dev-23", 10)
	if err != nil || len(page) != 1 || page[0].ID != "dev-24" {
		t.Fatalf("after dev-23: %v %v", page, err)
	}
}

func testPresence(t *testing.T, s Store) {
	ctx := context.Background()
	p1 := registry.Presence{DeviceID: "d1", Online: true, Conn: "n1/b/1", Node: "n1", ClientID: "d1",
		RemoteAddr: "127.0.0.1:5000", Listener: "tcp", ProtocolVersion: 5, Keepalive: 60, ConnectedAt: t0}
	if err := s.SetOnline(ctx, p1); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetPresence(ctx, []string{"d1", "never"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || fmt.Sprint(got["d1"]) != fmt.Sprint(p1) {
		t.Fatalf("presence: %+v, want only d1 = %+v", got, p1)
	}
	// Takeover: a newer connection, then the old one's late disconnect.
	p2 := p1
	p2.Conn, p2.ConnectedAt = "n1/b/2", t0.Add(time.Second)
	if err := s.SetOnline(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.SetOffline(ctx, "d1", "n1/b/1", t0.Add(2*time.Second), "taken over"); err != nil || ok {
		t.Fatalf("stale SetOffline = %v, %v; want false, nil", ok, err)
	}
	if got, _ := s.GetPresence(ctx, []string{"d1"}); !got["d1"].Online || got["d1"].Conn != "n1/b/2" {
		t.Fatalf("stale disconnect changed presence: %+v", got["d1"])
	}
	at := t0.Add(3 * time.Second)
	if ok, err := s.SetOffline(ctx, "d1", "n1/b/2", at, "client disconnected"); err != nil || !ok {
		t.Fatalf("SetOffline = %v, %v; want true, nil", ok, err)
	}
	got, _ = s.GetPresence(ctx, []string{"d1"})
	if p := got["d1"]; p.Online || !p.DisconnectedAt.Equal(at) || p.DisconnectReason != "client disconnected" || p.RemoteAddr != p1.RemoteAddr {
		t.Fatalf("offline presence: %+v", p)
	}
	if ok, err := s.SetOffline(ctx, "nobody", "x", at, "r"); err != nil || ok {
		t.Fatalf("SetOffline of unknown device = %v, %v", ok, err)
	}

	// ResetNode touches only that node's online devices.
	for i, node := range []string{"n1", "n1", "n2"} {
		p := registry.Presence{DeviceID: fmt.Sprint("r", i), Online: true, Conn: fmt.Sprint(node, "/b/", i), Node: node, ConnectedAt: t0}
		if err := s.SetOnline(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ResetNode(ctx, "n1", at, "node restarted"); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetPresence(ctx, []string{"r0", "r1", "r2", "d1"})
	if got["r0"].Online || got["r1"].Online || got["r0"].DisconnectReason != "node restarted" || !got["r2"].Online {
		t.Fatalf("after ResetNode(n1): %+v", got)
	}
	if got["d1"].DisconnectReason != "client disconnected" {
		t.Fatalf("ResetNode rewrote an offline device: %+v", got["d1"])
	}
}

func testAccess(t *testing.T, s Store) {
	ctx := context.Background()
	if _, err := s.GetRole(ctx, "r"); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("get missing role: %v", err)
	}
	for _, n := range []string{"zeta", "alpha"} {
		r := &access.Role{Name: n, Rules: []access.Rule{{Action: access.ActionSubscribe, Effect: access.Allow, Filter: "tele/+/#"}}}
		if err := s.PutRole(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	r := &access.Role{Name: "alpha", Rules: []access.Rule{{Action: access.ActionAll, Effect: access.Deny, Filter: "#"}}}
	if err := s.PutRole(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetRole(ctx, "alpha")
	if err != nil || len(got.Rules) != 1 || got.Rules[0].Effect != access.Deny {
		t.Fatalf("replaced role: %+v %v", got, err)
	}
	roles, err := s.ListRoles(ctx)
	if err != nil || len(roles) != 2 || roles[0].Name != "alpha" || roles[1].Name != "zeta" {
		t.Fatalf("ListRoles: %v %v", roles, err)
	}
	if err := s.DeleteRole(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRole(ctx, "alpha"); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("delete role twice: %v", err)
	}

	a := &access.Application{Name: "oss", Role: "zeta", Enabled: true, SecretHash: "h", CreatedAt: t0, UpdatedAt: t0}
	if err := s.PutApplication(ctx, a); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("put missing application: %v", err)
	}
	if err := s.CreateApplication(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateApplication(ctx, a); !errors.Is(err, access.ErrExists) {
		t.Fatalf("create application twice: %v", err)
	}
	a2 := *a
	a2.Enabled = false
	if err := s.PutApplication(ctx, &a2); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetApplication(ctx, "oss"); err != nil || got.Enabled || fmt.Sprint(*got) != fmt.Sprint(a2) {
		t.Fatalf("application: %+v %v", got, err)
	}
	if err := s.CreateApplication(ctx, &access.Application{Name: "noc", Role: "zeta"}); err != nil {
		t.Fatal(err)
	}
	apps, err := s.ListApplications(ctx)
	if err != nil || len(apps) != 2 || apps[0].Name != "noc" {
		t.Fatalf("ListApplications: %v %v", apps, err)
	}
	if err := s.DeleteApplication(ctx, "oss"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetApplication(ctx, "oss"); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("get deleted application: %v", err)
	}
	if err := s.DeleteApplication(ctx, "oss"); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("delete application twice: %v", err)
	}
}

func testTokens(t *testing.T, s Store) {
	ctx := context.Background()
	if _, err := s.GetToken(ctx, "x"); !errors.Is(err, token.ErrNotFound) {
		t.Fatalf("get missing token: %v", err)
	}
	tok := &token.Token{ID: "b", Name: "ci", Permissions: []string{"devices:read"}, SecretHash: "h", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, tok); !errors.Is(err, token.ErrExists) {
		t.Fatalf("create token twice: %v", err)
	}
	if err := s.CreateToken(ctx, &token.Token{ID: "a", Name: "first"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, &token.Token{ID: "c", Name: "third"}); err != nil {
		t.Fatal(err)
	}
	revoked := *tok
	revoked.RevokedAt = t0.Add(time.Minute)
	if err := s.PutToken(ctx, &revoked); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetToken(ctx, "b"); err != nil || fmt.Sprint(*got) != fmt.Sprint(revoked) {
		t.Fatalf("token: %+v %v, want %+v", got, err, revoked)
	}
	if err := s.PutToken(ctx, &token.Token{ID: "zz"}); !errors.Is(err, token.ErrNotFound) {
		t.Fatalf("put missing token: %v", err)
	}
	page, err := s.ListTokens(ctx, "", 2)
	if err != nil || len(page) != 2 || page[0].ID != "a" || page[1].ID != "b" {
		t.Fatalf("ListTokens page 1: %v %v", page, err)
	}
	page, err = s.ListTokens(ctx, "b", 2)
	if err != nil || len(page) != 1 || page[0].ID != "c" {
		t.Fatalf("ListTokens page 2: %v %v", page, err)
	}
}

func scan(t *testing.T, s Store, bucket, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	var keys []string
	err := s.Scan(context.Background(), bucket, prefix, func(k string, v []byte) error {
		keys = append(keys, k)
		out[k] = string(v)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(keys) {
		t.Fatalf("scan order %q is not ascending", keys)
	}
	return out
}

func testSessions(t *testing.T, s Store) {
	ctx := context.Background()
	err := s.Apply(ctx, []persist.Op{
		{Bucket: persist.BucketSubs, Key: "c1\x00tele/#", Value: []byte("1")},
		{Bucket: persist.BucketSubs, Key: "c1\x00a/b", Value: []byte("2")},
		{Bucket: persist.BucketSubs, Key: "c10\x00x", Value: []byte("3")},
		{Bucket: persist.BucketRetained, Key: "c1\x00tele/#", Value: []byte("other bucket")},
		{Bucket: persist.BucketSubs, Key: "c2\x00y", Value: []byte("4")},
		{Bucket: persist.BucketSubs, Key: "c2\x00y", Delete: true}, // ordered: last op wins
		{Bucket: persist.BucketSubs, Key: "bin\x00\xff\x01", Value: []byte{0, 1, 2, 255}},
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	got := scan(t, s, persist.BucketSubs, "c1\x00")
	if len(got) != 2 || got["c1\x00tele/#"] != "1" || got["c1\x00a/b"] != "2" {
		t.Fatalf("scan c1: %q", got)
	}
	if all := scan(t, s, persist.BucketSubs, ""); len(all) != 4 {
		t.Fatalf("scan all subs: %q", all)
	}
	if got := scan(t, s, persist.BucketSubs, "bin\x00"); got["bin\x00\xff\x01"] != string([]byte{0, 1, 2, 255}) {
		t.Fatalf("binary key/value: %q", got)
	}
	if err := s.Apply(ctx, []persist.Op{{Bucket: persist.BucketSubs, Key: "c1\x00a/b", Delete: true}, {Bucket: persist.BucketSubs, Key: "nope", Delete: true}}, false); err != nil {
		t.Fatal(err)
	}
	if got := scan(t, s, persist.BucketSubs, "c1\x00"); len(got) != 1 {
		t.Fatalf("after delete: %q", got)
	}
	stop := errors.New("stop")
	n := 0
	err = s.Scan(ctx, persist.BucketSubs, "", func(string, []byte) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("scan stop: n=%d err=%v", n, err)
	}
	if err := s.Apply(ctx, nil, true); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
}

// testSessionsConcurrent checks that concurrent batches are each atomic:
// a batch writes the same value under two keys, so a reader never sees them
// differ after all writers finish, and no write is lost.
func testSessionsConcurrent(t *testing.T, s Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				v := []byte(fmt.Sprint(w, "-", i))
				err := s.Apply(ctx, []persist.Op{
					{Bucket: persist.BucketInflight, Key: fmt.Sprintf("w%d\x00%03d", w, i), Value: v},
					{Bucket: persist.BucketWAL, Key: fmt.Sprintf("w%d-%03d", w, i), Value: v},
				}, i%2 == 0)
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := scan(t, s, persist.BucketInflight, ""); len(got) != 400 {
		t.Fatalf("inflight has %d keys, want 400", len(got))
	}
	if got := scan(t, s, persist.BucketWAL, ""); len(got) != 400 {
		t.Fatalf("wal has %d keys, want 400", len(got))
	}
}
