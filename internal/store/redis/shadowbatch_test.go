package redis_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lastmile-dm/lastmile/dm/shadow"
	"github.com/lastmile-dm/lastmile/internal/redistest"
)

// TestPipelinedShadowWrites: many concurrent writers (so their writes share
// pipelines) each advance their own shadow version by version; Redis's
// script cache is flushed halfway, which the pipeline must survive. Every
// write lands, in order, and a stale one still conflicts.
func TestPipelinedShadowWrites(t *testing.T) {
	t.Parallel()
	addr := redistest.Start(t)
	s := open(t, addr)
	raw := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { _ = raw.Close() })
	ctx := context.Background()
	const writers, versions = 64, 40
	var wg sync.WaitGroup
	var flush sync.Once
	for w := range writers {
		wg.Go(func() {
			id := fmt.Sprintf("p%d", w)
			for v := uint64(1); v <= versions; v++ {
				if v == versions/2 && w == 0 {
					flush.Do(func() {
						if err := raw.ScriptFlush(ctx).Err(); err != nil {
							t.Error(err)
						}
					})
				}
				doc := fmt.Sprintf(`{"v":%d}`, v)
				if err := s.PutShadow(ctx, id, "", shadow.Record{Version: v, Doc: []byte(doc)}, v-1); err != nil {
					t.Errorf("%s: put version %d: %v", id, v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for w := range writers {
		id := fmt.Sprintf("p%d", w)
		r, err := s.GetShadow(ctx, id, "")
		if err != nil || r.Version != versions || string(r.Doc) != fmt.Sprintf(`{"v":%d}`, versions) {
			t.Fatalf("%s: %+v %v", id, r, err)
		}
		if err := s.PutShadow(ctx, id, "", shadow.Record{Version: 2, Doc: []byte(`{}`)}, 1); err == nil {
			t.Fatalf("%s: a stale write was stored", id)
		}
	}
}
