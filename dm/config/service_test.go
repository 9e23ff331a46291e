package config_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/dm/config"
	"github.com/lastmile-dm/lastmile/dm/topic"
	"github.com/lastmile-dm/lastmile/internal/store/embedded"
)

// fleet is a fixed set of devices with groups: the Targets of a test.
type fleet struct{ groups map[string][]string }

func (f fleet) DeviceExists(_ context.Context, id string) error {
	for _, ids := range f.groups {
		if slices.Contains(ids, id) {
			return nil
		}
	}
	return fmt.Errorf("device %s: %w", id, config.ErrNotFound)
}

// ResolveTargets pages two devices at a time, so Assign must follow pages.
func (f fleet) ResolveTargets(_ context.Context, t config.Target, tok string) ([]string, string, error) {
	if t.Query != "" {
		return nil, "", fmt.Errorf("%w: queries are not in this fleet", config.ErrInvalid)
	}
	ids := f.groups[t.Group]
	start := 0
	if tok != "" {
		if _, err := fmt.Sscan(tok, &start); err != nil {
			return nil, "", err
		}
	}
	end := min(start+2, len(ids))
	next := ""
	if end < len(ids) {
		next = fmt.Sprint(end)
	}
	return ids[start:end], next, nil
}

// outbox records what the service publishes to devices.
type outbox struct {
	mu   sync.Mutex
	msgs []string // topic + " " + payload
}

func (o *outbox) Publish(to string, payload []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.msgs = append(o.msgs, to+" "+string(payload))
	return nil
}

func (o *outbox) count(to string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, m := range o.msgs {
		if len(m) > len(to) && m[:len(to)+1] == to+" " {
			n++
		}
	}
	return n
}

type recorder struct {
	mu      sync.Mutex
	changes []config.Change
}

func (r *recorder) ConfigStatusChanged(c config.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
}

func newService(t *testing.T, st config.Store, holder string) (*config.Service, *outbox) {
	t.Helper()
	out := &outbox{}
	svc, err := config.New(config.Config{Store: st, Messenger: out, Holder: holder, Tick: 50 * time.Millisecond,
		Targets: fleet{groups: map[string][]string{"lab": {"d1", "d2", "d3", "d4", "d5"}, "solo": {"d6"}}}})
	if err != nil {
		t.Fatal(err)
	}
	return svc, out
}

func openStore(t testing.TB) *embedded.Store {
	t.Helper()
	st, err := embedded.Open(embedded.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func TestProfilesAndVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc, _ := newService(t, openStore(t), "n1")
	for _, p := range []config.Profile{
		{Name: "", Format: "json"}, {Name: "Bad", Format: "json"}, {Name: "-x", Format: "json"}, {Name: "x/y", Format: "json"},
		{Name: "ok", Format: "xml"}, {Name: "ok", Format: "text", Schema: config.Schema{"a": "string"}},
		{Name: "ok", Format: "json", Schema: config.Schema{"a": "float"}}, {Name: "ok", Format: "json", Schema: config.Schema{"a..b": "string"}},
	} {
		if _, err := svc.CreateProfile(ctx, p); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("profile %+v: %v, want ErrInvalid", p, err)
		}
	}
	if _, err := svc.CreateProfile(ctx, config.Profile{Name: "wan", Format: "json", Schema: config.Schema{"mtu": "integer"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateProfile(ctx, config.Profile{Name: "wan", Format: "yaml"}); !errors.Is(err, config.ErrExists) {
		t.Errorf("duplicate profile: %v", err)
	}
	if _, _, err := svc.CreateVersion(ctx, "nope", []byte(`{}`), ""); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("version of a missing profile: %v", err)
	}
	if _, _, err := svc.CreateVersion(ctx, "wan", []byte(`{"mtu":"big"}`), ""); !errors.Is(err, config.ErrSchema) {
		t.Errorf("schema violation: %v", err)
	}
	v1, created, err := svc.CreateVersion(ctx, "wan", []byte(`{"mtu":1500}`), "first")
	if err != nil || !created || v1.Version != 1 || v1.Hash != topic.ConfigHash([]byte(`{"mtu":1500}`)) {
		t.Fatalf("v1: %+v %v %v", v1, created, err)
	}
	again, created, err := svc.CreateVersion(ctx, "wan", []byte(`{"mtu":1500}`), "retry")
	if err != nil || created || again.Version != 1 {
		t.Fatalf("a retry of v1 made %+v %v %v", again, created, err)
	}
	for i := 2; i <= 5; i++ {
		if v, _, err := svc.CreateVersion(ctx, "wan", []byte(fmt.Sprintf(`{"mtu":%d}`, 1500-i)), ""); err != nil || v.Version != int64(i) {
			t.Fatalf("v%d: %+v %v", i, v, err)
		}
	}
	var all []int64
	tok := ""
	for {
		vs, next, err := svc.ListVersions(ctx, "wan", 2, tok)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			all = append(all, v.Version)
		}
		if next == "" {
			break
		}
		tok = next
	}
	if !slices.Equal(all, []int64{1, 2, 3, 4, 5}) {
		t.Errorf("paged versions %v", all)
	}
	if _, _, err := svc.ListVersions(ctx, "wan", 2, "!!"); !errors.Is(err, config.ErrInvalid) {
		t.Errorf("bad page token: %v", err)
	}
	if _, latest, err := svc.GetProfile(ctx, "wan"); err != nil || latest != 5 {
		t.Errorf("latest %d %v", latest, err)
	}
}

// report is what a device's status message does.
func report(t *testing.T, svc *config.Service, r *config.Rollout, id, state, reason string) {
	t.Helper()
	err := svc.HandleStatus(context.Background(), id, topic.ConfigStatusPayload{
		ConfigRef: topic.ConfigRef{Rollout: r.ID, Profile: r.Profile, Version: r.Version, Hash: r.Hash}, State: state, Reason: reason})
	if err != nil {
		t.Fatalf("%s reports %s: %v", id, state, err)
	}
}

func TestRollout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	svc, out := newService(t, st, "n1")
	rec := &recorder{}
	svc.AddNotifier(rec)
	if _, err := svc.CreateProfile(ctx, config.Profile{Name: "ntp", Format: "text"}); err != nil {
		t.Fatal(err)
	}
	v, _, _ := svc.CreateVersion(ctx, "ntp", []byte("server a\n"), "")
	for _, bad := range []struct {
		t    config.Target
		rate int
	}{{config.Target{}, 0}, {config.Target{DeviceID: "d1", Group: "lab"}, 0}, {config.Target{Group: "lab"}, -1}, {config.Target{Query: "x"}, 0}} {
		if _, err := svc.Assign(ctx, "ntp", v.Version, bad.t, bad.rate); !errors.Is(err, config.ErrInvalid) {
			t.Errorf("assign %+v rate %d: %v", bad.t, bad.rate, err)
		}
	}
	if _, err := svc.Assign(ctx, "ntp", 9, config.Target{Group: "lab"}, 0); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("assign of a missing version: %v", err)
	}
	if _, err := svc.Assign(ctx, "ntp", v.Version, config.Target{DeviceID: "ghost"}, 0); !errors.Is(err, config.ErrNotFound) {
		t.Errorf("assign to a missing device: %v", err)
	}
	// 5 devices at 40/s with a 50 ms tick: 2 per step.
	r, err := svc.Assign(ctx, "ntp", v.Version, config.Target{Group: "lab"}, 40)
	if err != nil || r.Devices != 5 || r.State != config.RolloutRunning {
		t.Fatalf("assign: %+v %v", r, err)
	}
	released := func() int {
		s, err := svc.GetRolloutStatus(ctx, r.ID, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, d := range s.Devices {
			if d.Released {
				n++
			}
		}
		return n
	}
	for i, want := range []int{2, 4, 5} {
		if err := svc.Step(ctx); err != nil {
			t.Fatal(err)
		}
		if got := released(); got != want {
			t.Fatalf("after step %d: %d released, want %d", i+1, got, want)
		}
	}
	if g, _ := st.GetRollout(ctx, r.ID); g.State != config.RolloutDone {
		t.Errorf("rollout state %s after every device was released", g.State)
	}
	if n := out.count(topic.ConfigTopic("d1", topic.ConfigDocument)); n != 1 {
		t.Errorf("d1 got %d documents on release", n)
	}
	// A device that asks gets its document.
	if err := svc.HandleGet(ctx, "d2"); err != nil {
		t.Fatal(err)
	}
	if n := out.count(topic.ConfigTopic("d2", topic.ConfigDocument)); n != 2 {
		t.Errorf("d2 got %d documents after asking", n)
	}
	if err := svc.HandleGet(ctx, "d6"); err != nil || out.count(topic.ConfigTopic("d6", topic.ConfigDocument)) != 0 {
		t.Errorf("a device without a rollout got an answer: %v", err)
	}

	report(t, svc, r, "d1", topic.ConfigReceived, "")
	report(t, svc, r, "d1", topic.ConfigAwaitingConfirm, "")
	if n := out.count(topic.ConfigTopic("d1", topic.ConfigConfirm)); n != 1 {
		t.Errorf("d1 got %d confirmations", n)
	}
	report(t, svc, r, "d1", topic.ConfigApplied, "")
	report(t, svc, r, "d2", topic.ConfigRolledBack, "no confirmation within 2m0s")
	report(t, svc, r, "d3", topic.ConfigFailed, "exit 3")
	report(t, svc, r, "d4", topic.ConfigReceived, "")
	s, err := svc.GetRolloutStatus(ctx, r.ID, 2, "")
	if err != nil {
		t.Fatal(err)
	}
	want := config.Totals{"pending": 1, "delivered": 1, "applied": 1, "failed": 1, "rolled_back": 1, "superseded": 0}
	for k, n := range want {
		if s.Totals[k] != n {
			t.Errorf("totals %v, want %v", s.Totals, want)
			break
		}
	}
	if len(s.Devices) != 2 || s.NextToken == "" {
		t.Fatalf("first page: %d devices, next %q", len(s.Devices), s.NextToken)
	}
	s2, _ := svc.GetRolloutStatus(ctx, r.ID, 2, s.NextToken)
	if s2.Devices[0].DeviceID != "d3" || s2.Devices[0].Reason != "exit 3" {
		t.Errorf("second page starts %+v", s2.Devices[0])
	}

	// A status for a hash the rollout does not have is refused.
	err = svc.HandleStatus(ctx, "d5", topic.ConfigStatusPayload{ConfigRef: topic.ConfigRef{Rollout: r.ID, Profile: "ntp", Version: 1,
		Hash: topic.ConfigHash([]byte("other"))}, State: topic.ConfigApplied})
	if !errors.Is(err, config.ErrInvalid) {
		t.Errorf("status with the wrong hash: %v", err)
	}

	// A second rollout takes d4 (delivered) and d5 (pending) over; d1's
	// outcome stays. A late awaiting_confirm for the first rollout is not
	// confirmed: the device rolls back and fetches the new document.
	v2, _, _ := svc.CreateVersion(ctx, "ntp", []byte("server b\n"), "")
	r2, err := svc.Assign(ctx, "ntp", v2.Version, config.Target{Group: "lab"}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Step(ctx); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"d1": "applied", "d4": "superseded", "d5": "superseded"} {
		if d, _ := st.GetDeviceStatus(ctx, r.ID, id); d.State != want {
			t.Errorf("%s in the first rollout: %s, want %s", id, d.State, want)
		}
	}
	confirms := out.count(topic.ConfigTopic("d4", topic.ConfigConfirm))
	report(t, svc, r, "d4", topic.ConfigAwaitingConfirm, "")
	if out.count(topic.ConfigTopic("d4", topic.ConfigConfirm)) != confirms {
		t.Error("a superseded rollout was confirmed")
	}
	report(t, svc, r2, "d4", topic.ConfigAwaitingConfirm, "")
	if out.count(topic.ConfigTopic("d4", topic.ConfigConfirm)) != confirms+1 {
		t.Error("the current rollout was not confirmed")
	}

	// Every change went to the notifier, with its rollout.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var d2 []string
	for _, c := range rec.changes {
		if c.DeviceID == "d2" && c.Rollout.ID == r.ID {
			d2 = append(d2, c.State)
		}
	}
	if !slices.Equal(d2, []string{"pending", "rolled_back"}) {
		t.Errorf("d2's changes %v", d2)
	}
	b, _ := json.Marshal(rec.changes[0].Rollout)
	if len(b) == 0 {
		t.Error("no rollout in a change")
	}
}

// TestRunnerLease: two services on one store release each device once:
// only the lease holder works.
func TestRunnerLease(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openStore(t)
	a, outA := newService(t, st, "a")
	b, outB := newService(t, st, "b")
	if _, err := a.CreateProfile(ctx, config.Profile{Name: "p", Format: "text"}); err != nil {
		t.Fatal(err)
	}
	v, _, _ := a.CreateVersion(ctx, "p", []byte("x"), "")
	r, err := a.Assign(ctx, "p", v.Version, config.Target{Group: "lab"}, 20)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, s := range []*config.Service{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx) }()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		g, err := st.GetRollout(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if g.State == config.RolloutDone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rollout never finished")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	for _, id := range []string{"d1", "d2", "d3", "d4", "d5"} {
		to := topic.ConfigTopic(id, topic.ConfigDocument)
		if n := outA.count(to) + outB.count(to); n != 1 {
			t.Errorf("%s released %d times", id, n)
		}
	}

}
