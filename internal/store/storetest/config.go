package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/dm/config"
)

func testConfig(t *testing.T, s Store) {
	ctx := context.Background()
	p := &config.Profile{Name: "wan", Format: config.FormatJSON, Schema: config.Schema{"server.port": "integer"}, CreatedAt: t0}
	if _, err := s.GetConfigProfile(ctx, "wan"); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("get missing profile: %v", err)
	}
	if err := s.CreateConfigProfile(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateConfigProfile(ctx, p); !errors.Is(err, config.ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	got, err := s.GetConfigProfile(ctx, "wan")
	if err != nil || got.Format != config.FormatJSON || got.Schema["server.port"] != "integer" || !got.CreatedAt.Equal(t0) {
		t.Fatalf("get profile: %+v %v", got, err)
	}

	if n, err := s.LatestConfigVersion(ctx, "wan"); err != nil || n != 0 {
		t.Fatalf("latest of empty profile: %d %v", n, err)
	}
	// 12 versions: more than 9, so lexical and numeric order must agree.
	for i := int64(1); i <= 12; i++ {
		v := &config.Version{Profile: "wan", Version: i, Content: []byte(fmt.Sprintf(`{"v":%d}`, i)), Hash: fmt.Sprint(i), CreatedAt: t0}
		if err := s.CreateConfigVersion(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateConfigVersion(ctx, &config.Version{Profile: "wan", Version: 3, Content: []byte("x")}); !errors.Is(err, config.ErrExists) {
		t.Fatalf("replacing version 3: %v, want ErrExists (versions are immutable)", err)
	}
	if v, err := s.GetConfigVersion(ctx, "wan", 3); err != nil || string(v.Content) != `{"v":3}` {
		t.Fatalf("version 3 after a refused replace: %+v %v", v, err)
	}
	if _, err := s.GetConfigVersion(ctx, "wan", 13); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("missing version: %v", err)
	}
	if n, err := s.LatestConfigVersion(ctx, "wan"); err != nil || n != 12 {
		t.Fatalf("latest: %d %v, want 12", n, err)
	}
	vs, err := s.ListConfigVersions(ctx, "wan", 0, 5)
	if err != nil || len(vs) != 5 || vs[0].Version != 1 || vs[4].Version != 5 {
		t.Fatalf("first page: %d versions, %v", len(vs), err)
	}
	vs, err = s.ListConfigVersions(ctx, "wan", 9, 5)
	if err != nil || len(vs) != 3 || vs[0].Version != 10 || vs[2].Version != 12 {
		t.Fatalf("last page: %v", err)
	}
	// Another profile's versions do not leak into this one's listing.
	if err := s.CreateConfigVersion(ctx, &config.Version{Profile: "wan2", Version: 1, Content: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if vs, _ := s.ListConfigVersions(ctx, "wan", 0, 100); len(vs) != 12 {
		t.Fatalf("wan lists %d versions, want 12", len(vs))
	}

	// Rollouts.
	r := &config.Rollout{ID: "r2", Profile: "wan", Version: 2, Hash: "h", Target: config.Target{Group: "g"}, Rate: 5, State: config.RolloutRunning, CreatedAt: t0}
	if err := s.PutRollout(ctx, r); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("put of a missing rollout: %v", err)
	}
	for _, id := range []string{"r2", "r1", "r3"} {
		c := *r
		c.ID = id
		if err := s.CreateRollout(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateRollout(ctx, r); !errors.Is(err, config.ErrExists) {
		t.Fatalf("second create rollout: %v", err)
	}
	r.State, r.Cursor = config.RolloutDone, "d9"
	if err := s.PutRollout(ctx, r); err != nil {
		t.Fatal(err)
	}
	if g, err := s.GetRollout(ctx, "r2"); err != nil || g.State != config.RolloutDone || g.Cursor != "d9" || g.Target.Group != "g" {
		t.Fatalf("get rollout: %+v %v", g, err)
	}
	if _, err := s.GetRollout(ctx, "nope"); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("missing rollout: %v", err)
	}
	rs, err := s.ListRollouts(ctx, "", 2)
	if err != nil || len(rs) != 2 || rs[0].ID != "r1" || rs[1].ID != "r2" {
		t.Fatalf("list rollouts: %v", err)
	}
	if rs, _ = s.ListRollouts(ctx, "r2", 10); len(rs) != 1 || rs[0].ID != "r3" {
		t.Fatalf("list rollouts after r2: %d", len(rs))
	}

	// Device statuses.
	var sts []*config.DeviceStatus
	for i := range 25 {
		sts = append(sts, &config.DeviceStatus{Rollout: "r1", DeviceID: fmt.Sprintf("d%02d", i), State: config.StatePending, UpdatedAt: t0})
	}
	if err := s.PutDeviceStatuses(ctx, sts); err != nil {
		t.Fatal(err)
	}
	if err := s.PutDeviceStatuses(ctx, []*config.DeviceStatus{{Rollout: "r2", DeviceID: "d00", State: config.StateApplied}}); err != nil {
		t.Fatal(err)
	}
	page, err := s.ListDeviceStatuses(ctx, "r1", "", 10)
	if err != nil || len(page) != 10 || page[0].DeviceID != "d00" || page[9].DeviceID != "d09" {
		t.Fatalf("first status page: %v", err)
	}
	page, err = s.ListDeviceStatuses(ctx, "r1", "d19", 10)
	if err != nil || len(page) != 5 || page[0].DeviceID != "d20" {
		t.Fatalf("last status page: %d %v", len(page), err)
	}
	sts[3].State, sts[3].Reason = config.StateRolledBack, "no confirmation"
	if err := s.PutDeviceStatuses(ctx, sts[3:4]); err != nil {
		t.Fatal(err)
	}
	if g, err := s.GetDeviceStatus(ctx, "r1", "d03"); err != nil || g.State != config.StateRolledBack || g.Reason != "no confirmation" {
		t.Fatalf("status after update: %+v %v", g, err)
	}
	if g, err := s.GetDeviceStatus(ctx, "r2", "d00"); err != nil || g.State != config.StateApplied {
		t.Fatalf("status in another rollout: %+v %v", g, err)
	}
	if _, err := s.GetDeviceStatus(ctx, "r3", "d00"); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("missing status: %v", err)
	}

	// Targets.
	if _, err := s.GetDeviceTarget(ctx, "d00"); !errors.Is(err, config.ErrNotFound) {
		t.Fatalf("missing target: %v", err)
	}
	if err := s.SetDeviceTargets(ctx, "r1", []string{"d00", "d01"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDeviceTargets(ctx, "r2", []string{"d00"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDeviceTargets(ctx, "r3", nil); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"d00": "r2", "d01": "r1"} {
		if g, err := s.GetDeviceTarget(ctx, id); err != nil || g != want {
			t.Fatalf("target of %s: %q %v, want %s", id, g, err, want)
		}
	}
}

func testLease(t *testing.T, s Store) {
	ctx := context.Background()
	const ttl = time.Hour
	if ok, err := s.AcquireLease(ctx, "job", "a", ttl); err != nil || !ok {
		t.Fatalf("a takes a free lease: %v %v", ok, err)
	}
	if ok, err := s.AcquireLease(ctx, "job", "a", ttl); err != nil || !ok {
		t.Fatalf("a renews: %v %v", ok, err)
	}
	if ok, err := s.AcquireLease(ctx, "job", "b", ttl); err != nil || ok {
		t.Fatalf("b takes a's lease: %v %v", ok, err)
	}
	if ok, err := s.AcquireLease(ctx, "other", "b", ttl); err != nil || !ok {
		t.Fatalf("b takes another lease: %v %v", ok, err)
	}
	// An expired lease goes to whoever asks (1 ms TTL, then poll).
	if ok, err := s.AcquireLease(ctx, "short", "a", time.Millisecond); err != nil || !ok {
		t.Fatalf("a takes short: %v %v", ok, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, err := s.AcquireLease(ctx, "short", "b", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never got the expired lease")
		}
	}
	// Concurrent contenders: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.AcquireLease(ctx, "race", fmt.Sprint("h", i), ttl)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d holders of one lease", wins)
	}
}
