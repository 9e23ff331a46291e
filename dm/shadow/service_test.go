package shadow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/shadow"
	"github.com/lastmile-dm/lastmile/internal/store/embedded"
)

type recorder struct {
	mu      sync.Mutex
	changes []shadow.Change
}

func (r *recorder) ShadowChanged(c shadow.Change) {
	r.mu.Lock()
	r.changes = append(r.changes, c)
	r.mu.Unlock()
}

func newService(t *testing.T, lim shadow.Limits) (*shadow.Service, *embedded.Store, *recorder) {
	t.Helper()
	st, err := embedded.Open(embedded.Config{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	rec := &recorder{}
	now := time.Unix(1_700_000_000, 0)
	svc, err := shadow.New(shadow.Config{Store: st, Devices: st, Notifier: rec, Limits: lim, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return svc, st, rec
}

func update(t *testing.T, svc *shadow.Service, id, name, payload string) (*shadow.Result, error) {
	t.Helper()
	u, err := shadow.ParseUpdate([]byte(payload), svc.Limits())
	if err != nil {
		t.Fatalf("parse %s: %v", payload, err)
	}
	return svc.Update(context.Background(), id, name, u)
}

func TestServiceUpdateGetDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc, _, rec := newService(t, shadow.Limits{})
	if _, err := svc.Get(ctx, "d1", ""); !errors.Is(err, shadow.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	r, err := update(t, svc, "d1", "", `{"state":{"desired":{"fw":"2.1.0","cfg":{"a":1}}},"clientToken":"c1"}`)
	if err != nil {
		t.Fatal(err)
	}
	if r.Previous != nil || r.Current.Version != 1 {
		t.Fatalf("first update: prev %v version %d", r.Previous, r.Current.Version)
	}
	if got, _ := json.Marshal(r.Delta); string(got) != `{"cfg":{"a":1},"fw":"2.1.0"}` {
		t.Fatalf("delta %s", got)
	}
	r, err = update(t, svc, "d1", "", `{"state":{"reported":{"fw":"2.1.0","cfg":{"a":1}}},"version":1}`)
	if err != nil {
		t.Fatal(err)
	}
	if r.Current.Version != 2 || r.Delta != nil || r.Previous.Version != 1 {
		t.Fatalf("second update: version %d delta %v", r.Current.Version, r.Delta)
	}
	// A stale version is refused and changes nothing.
	if _, err := update(t, svc, "d1", "", `{"state":{"reported":{"fw":"x"}},"version":1}`); !errors.Is(err, shadow.ErrConflict) {
		t.Fatalf("stale version: %v, want ErrConflict", err)
	}
	d, err := svc.Get(ctx, "d1", "")
	if err != nil || d.Version != 2 || d.State.Reported["fw"] != "2.1.0" {
		t.Fatalf("get: %+v %v", d, err)
	}
	var got map[string]any
	if err := json.Unmarshal(shadow.GetAccepted(d, "g"), &got); err != nil || got["clientToken"] != "g" || got["version"] != 2.0 {
		t.Fatalf("get/accepted payload %v %v", got, err)
	}
	// Named shadows are separate documents.
	if _, err := update(t, svc, "d1", "net", `{"state":{"reported":{"ip":"10.0.0.2"}}}`); err != nil {
		t.Fatal(err)
	}
	names, err := svc.List(ctx, "d1")
	if err != nil || fmt.Sprint(names) != "[ net]" {
		t.Fatalf("list %q %v", names, err)
	}
	v := uint64(1)
	if _, err := svc.Delete(ctx, "d1", "", &v); !errors.Is(err, shadow.ErrConflict) {
		t.Fatalf("delete stale: %v", err)
	}
	if _, err := svc.Delete(ctx, "d1", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Delete(ctx, "d1", "", nil); !errors.Is(err, shadow.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if _, err := svc.Get(ctx, "d1", "bad/name"); !errors.Is(err, shadow.ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.changes) != 4 || !rec.changes[3].Deleted || rec.changes[0].Delta == nil || rec.changes[1].Delta != nil {
		t.Fatalf("notifications: %+v", rec.changes)
	}
}

func TestServiceRetryIsIdempotent(t *testing.T) {
	t.Parallel()
	svc, _, rec := newService(t, shadow.Limits{})
	p := `{"state":{"desired":{"a":1}},"version":0,"clientToken":"op-1"}`
	r1, err := update(t, svc, "d1", "", p)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := update(t, svc, "d1", "", p)
	if err != nil {
		t.Fatalf("retry of the same update: %v", err)
	}
	if !r2.Replayed || r2.Current.Version != r1.Current.Version {
		t.Fatalf("retry made version %d (replayed %v), want %d unchanged", r2.Current.Version, r2.Replayed, r1.Current.Version)
	}
	if _, err := update(t, svc, "d1", "", `{"state":{"desired":{"a":1}},"version":0,"clientToken":"op-2"}`); !errors.Is(err, shadow.ErrConflict) {
		t.Fatalf("another token at a stale version: %v, want ErrConflict", err)
	}
	if len(rec.changes) != 1 {
		t.Fatalf("%d notifications, want 1", len(rec.changes))
	}
}

func TestServiceLimits(t *testing.T) {
	t.Parallel()
	svc, _, _ := newService(t, shadow.Limits{MaxDocumentBytes: 100, MaxDepth: 2, MaxNamedShadows: 2})
	// Each update fits but the merged state would not.
	if _, err := update(t, svc, "d1", "", `{"state":{"reported":{"a":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}}`); err != nil {
		t.Fatal(err)
	}
	if _, err := update(t, svc, "d1", "", `{"state":{"desired":{"b":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}}`); !errors.Is(err, shadow.ErrTooLarge) {
		t.Fatalf("merged too large: %v, want ErrTooLarge", err)
	}
	for _, name := range []string{"n1", "n2"} {
		if _, err := update(t, svc, "d3", name, `{"state":{"reported":{"a":1}}}`); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := update(t, svc, "d3", "n3", `{"state":{"reported":{"a":1}}}`); !errors.Is(err, shadow.ErrInvalid) {
		t.Fatalf("third named shadow: %v, want ErrInvalid", err)
	}
	if _, err := update(t, svc, "d3", "", `{"state":{"reported":{"a":1}}}`); err != nil {
		t.Fatalf("the classic shadow does not count: %v", err)
	}
}

// TestServiceConcurrentWriters: many goroutines update one shadow with no
// version; every update lands (none lost) and versions count them exactly.
func TestServiceConcurrentWriters(t *testing.T) {
	t.Parallel()
	svc, _, rec := newService(t, shadow.Limits{})
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := update(t, svc, "d1", "", fmt.Sprintf(`{"state":{"reported":{"w%d":%d}}}`, w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	d, err := svc.Get(context.Background(), "d1", "")
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != writers*each {
		t.Fatalf("version %d, want %d", d.Version, writers*each)
	}
	for w := range writers {
		if got := d.State.Reported[fmt.Sprintf("w%d", w)]; got != json.Number(fmt.Sprint(each-1)) {
			t.Fatalf("writer %d's last value is %v, want %d", w, got, each-1)
		}
	}
	for i, c := range rec.changes {
		if c.Document.Version != uint64(i+1) {
			t.Fatalf("notification %d has version %d: not strictly increasing", i, c.Document.Version)
		}
	}
}

// TestServiceTwoNodes: two services on one store (two nodes) take turns
// on one shadow; each one's cached copy goes stale and the store's
// compare-and-set makes it reload, so nothing is lost.
func TestServiceTwoNodes(t *testing.T) {
	t.Parallel()
	a, st, _ := newService(t, shadow.Limits{})
	b, err := shadow.New(shadow.Config{Store: st, Devices: st})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		svc := a
		if i%2 == 1 {
			svc = b
		}
		r, err := update(t, svc, "d1", "", fmt.Sprintf(`{"state":{"reported":{"k%d":%d}}}`, i, i))
		if err != nil {
			t.Fatal(err)
		}
		if r.Current.Version != uint64(i+1) || len(r.Current.State.Reported) != i+1 {
			t.Fatalf("update %d: version %d with %d keys", i, r.Current.Version, len(r.Current.State.Reported))
		}
	}
	// An update with a version that is current in the store but not in
	// a's cache applies.
	if _, err := update(t, a, "d1", "", `{"state":{"reported":{"x":1}},"version":10}`); err != nil {
		t.Fatalf("versioned update after another node wrote: %v", err)
	}
}

func TestQueryDevices(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc, st, _ := newService(t, shadow.Limits{})
	for i := range 30 {
		region := "north"
		if i%3 == 0 {
			region = "south"
		}
		id := fmt.Sprintf("dev-%02d", i)
		if err := st.CreateDevice(ctx, &registry.Device{ID: id, Enabled: true, Labels: map[string]string{"region": region}, Revision: 1}); err != nil {
			t.Fatal(err)
		}
		fw := "2.1.0"
		if i%2 == 0 {
			fw = "2.0.0"
		}
		if i == 29 {
			continue // never reported
		}
		if _, err := update(t, svc, id, "", `{"state":{"reported":{"firmware":{"version":"`+fw+`"}}}}`); err != nil {
			t.Fatal(err)
		}
	}
	f, err := shadow.ParseFilter(`reported.firmware.version != "2.1.0" AND labels.region = "north"`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	tok := ""
	for pages := 0; ; pages++ {
		p, err := svc.QueryDevices(ctx, shadow.FleetQuery{Filter: f, PageSize: 3, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range p.Matches {
			got = append(got, m.Device.ID)
		}
		if len(p.Matches) == 0 || p.NextToken == "" {
			break
		}
		tok = p.NextToken
		if pages > 20 {
			t.Fatal("paging does not end")
		}
	}
	// even i, not divisible by 3, plus dev-29 (north, no shadow).
	want := []string{"dev-02", "dev-04", "dev-08", "dev-10", "dev-14", "dev-16", "dev-20", "dev-22", "dev-26", "dev-28", "dev-29"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("query = %v\nwant    %v", got, want)
	}
	if _, err := svc.QueryDevices(ctx, shadow.FleetQuery{PageToken: "!!"}); !errors.Is(err, shadow.ErrInvalid) {
		t.Fatalf("bad page token: %v", err)
	}
}
