package config_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/lastmile-dm/lastmile/dm/config"
)

// bigFleet is one group of n devices, resolved a page of 1000 at a time.
type bigFleet struct{ n int }

func (f bigFleet) DeviceExists(context.Context, string) error { return nil }

func (f bigFleet) ResolveTargets(_ context.Context, _ config.Target, tok string) ([]string, string, error) {
	start := 0
	if tok != "" {
		if _, err := fmt.Sscan(tok, &start); err != nil {
			return nil, "", err
		}
	}
	end := min(start+1000, f.n)
	ids := make([]string, 0, end-start)
	for i := start; i < end; i++ {
		ids = append(ids, fmt.Sprintf("dev%07d", i))
	}
	next := ""
	if end < f.n {
		next = fmt.Sprint(end)
	}
	return ids, next, nil
}

// BenchmarkRollout10k measures, on the embedded store, assigning a version
// to 10,000 devices, releasing them all, and one status call (totals over
// every device plus a page).
func BenchmarkRollout10k(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		st := openStore(b)
		svc, err := config.New(config.Config{Store: st, Targets: bigFleet{10_000}, Messenger: &outbox{}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := svc.CreateProfile(ctx, config.Profile{Name: "p", Format: "text"}); err != nil {
			b.Fatal(err)
		}
		v, _, _ := svc.CreateVersion(ctx, "p", []byte("x"), "")
		b.StartTimer()
		r, err := svc.Assign(ctx, "p", v.Version, config.Target{Group: "all"}, config.MaxRate)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if err := svc.Step(ctx); err != nil {
				b.Fatal(err)
			}
			g, _ := st.GetRollout(ctx, r.ID)
			if g.State == config.RolloutDone {
				break
			}
		}
		s, err := svc.GetRolloutStatus(ctx, r.ID, 100, "")
		if err != nil || s.Totals[config.StatePending] != 10_000 {
			b.Fatalf("status %v %v", s.Totals, err)
		}
	}
}
