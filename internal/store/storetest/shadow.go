package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/lastmile-dm/lastmile/dm/shadow"
)

func testShadows(t *testing.T, s Store) {
	ctx := context.Background()
	if _, err := s.GetShadow(ctx, "d1", ""); !errors.Is(err, shadow.ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}
	if names, err := s.ListShadows(ctx, "d1"); err != nil || len(names) != 0 {
		t.Fatalf("list of a device without shadows: %v %v", names, err)
	}
	if err := s.PutShadow(ctx, "d1", "", shadow.Record{Version: 2, Doc: []byte(`{"a":1}`)}, 1); !errors.Is(err, shadow.ErrConflict) {
		t.Fatalf("put expecting version 1 of a missing shadow: %v, want ErrConflict", err)
	}
	for _, name := range []string{"", "fw", "cfg:net"} {
		if err := s.PutShadow(ctx, "d1", name, shadow.Record{Version: 1, Doc: []byte(`{"n":"` + name + `"}`)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutShadow(ctx, "d1", "", shadow.Record{Version: 1, Doc: []byte(`{}`)}, 0); !errors.Is(err, shadow.ErrConflict) {
		t.Fatalf("create twice: %v, want ErrConflict", err)
	}
	// Another device's shadows and a device whose ID extends d1's stay apart.
	if err := s.PutShadow(ctx, "d10", "", shadow.Record{Version: 1, Doc: []byte(`{}`)}, 0); err != nil {
		t.Fatal(err)
	}
	names, err := s.ListShadows(ctx, "d1")
	if err != nil || !slices.Equal(names, []string{"", "cfg:net", "fw"}) {
		t.Fatalf("list: %q %v, want [\"\" cfg:net fw]", names, err)
	}
	r, err := s.GetShadow(ctx, "d1", "fw")
	if err != nil || r.Version != 1 || string(r.Doc) != `{"n":"fw"}` {
		t.Fatalf("get: %+v %v", r, err)
	}
	if err := s.PutShadow(ctx, "d1", "fw", shadow.Record{Version: 2, Doc: []byte(`{"n":2}`)}, 1); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.GetShadow(ctx, "d1", "fw"); r.Version != 2 || string(r.Doc) != `{"n":2}` {
		t.Fatalf("after update: %+v", r)
	}
	if err := s.DeleteShadow(ctx, "d1", "fw", 1); !errors.Is(err, shadow.ErrConflict) {
		t.Fatalf("delete at a stale version: %v, want ErrConflict", err)
	}
	if err := s.DeleteShadow(ctx, "d1", "fw", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteShadow(ctx, "d1", "fw", 0); !errors.Is(err, shadow.ErrNotFound) {
		t.Fatalf("delete twice: %v, want ErrNotFound", err)
	}
	if err := s.DeleteShadow(ctx, "d1", "", 0); err != nil {
		t.Fatalf("delete any version: %v", err)
	}
	if names, _ := s.ListShadows(ctx, "d1"); !slices.Equal(names, []string{"cfg:net"}) {
		t.Fatalf("list after deletes: %q", names)
	}
	// A deleted shadow can be created again from version 0.
	if err := s.PutShadow(ctx, "d1", "fw", shadow.Record{Version: 1, Doc: []byte(`{}`)}, 0); err != nil {
		t.Fatalf("recreate: %v", err)
	}
	// Deleting the device deletes its shadows, and only its.
	if err := s.CreateDevice(ctx, device("d1")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDevice(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	if names, err := s.ListShadows(ctx, "d1"); err != nil || len(names) != 0 {
		t.Fatalf("shadows after the device was deleted: %q %v", names, err)
	}
	if _, err := s.GetShadow(ctx, "d1", "cfg:net"); !errors.Is(err, shadow.ErrNotFound) {
		t.Fatalf("get a shadow of a deleted device: %v", err)
	}
	if _, err := s.GetShadow(ctx, "d10", ""); err != nil {
		t.Fatalf("deleting d1 touched d10: %v", err)
	}
	// The compare-and-set sees the deletion: the old version is gone and
	// the shadow starts again from 0 (a store that remembers versions must
	// forget them).
	if err := s.PutShadow(ctx, "d1", "fw", shadow.Record{Version: 2, Doc: []byte(`{}`)}, 1); !errors.Is(err, shadow.ErrConflict) {
		t.Fatalf("put expecting a version of a deleted device's shadow: %v, want ErrConflict", err)
	}
	if err := s.DeleteShadow(ctx, "d1", "fw", 0); !errors.Is(err, shadow.ErrNotFound) {
		t.Fatalf("delete a deleted device's shadow: %v, want ErrNotFound", err)
	}
	if err := s.PutShadow(ctx, "d1", "fw", shadow.Record{Version: 1, Doc: []byte(`{}`)}, 0); err != nil {
		t.Fatalf("recreate after the device was deleted: %v", err)
	}
	if err := s.PutShadow(ctx, "d10", "", shadow.Record{Version: 2, Doc: []byte(`{}`)}, 1); err != nil {
		t.Fatalf("update d10 after d1 was deleted: %v", err)
	}
}

func testShadowCAS(t *testing.T, s Store) {
	ctx := context.Background()
	// Writers race from each version; exactly one wins each round, and the
	// winner's document is what is stored.
	for round := uint64(0); round < 5; round++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var winners []string
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				doc := fmt.Sprintf(`{"w":%d}`, w)
				err := s.PutShadow(ctx, "d1", "", shadow.Record{Version: round + 1, Doc: []byte(doc)}, round)
				switch {
				case err == nil:
					mu.Lock()
					winners = append(winners, doc)
					mu.Unlock()
				case !errors.Is(err, shadow.ErrConflict):
					t.Errorf("put: %v, want nil or ErrConflict", err)
				}
			}()
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d writers won, want exactly 1", round, len(winners))
		}
		r, err := s.GetShadow(ctx, "d1", "")
		if err != nil || r.Version != round+1 || string(r.Doc) != winners[0] {
			t.Fatalf("round %d: stored %+v %v, want version %d %s", round, r, err, round+1, winners[0])
		}
	}
}
