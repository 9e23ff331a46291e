package embedded_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lastmile-dm/lastmile/dm/shadow"
)

// BenchmarkPutShadow measures the store's compare-and-set write of a
// shadow from 64 concurrent writers on distinct shadows (the node's worker
// count), each write synced to disk.
func BenchmarkPutShadow(b *testing.B) {
	s := open(b, b.TempDir())
	defer s.Close()
	ctx := context.Background()
	doc := []byte(`{"state":{"reported":{"seq":1,"temp":21.5,"fw":{"version":"2.1.0"}}},"version":1}`)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("d%d", w)
			var v uint64
			for next.Add(1) <= int64(b.N) {
				if _, err := s.GetShadow(ctx, id, ""); err != nil && v > 0 {
					b.Error(err)
				}
				if err := s.PutShadow(ctx, id, "", shadow.Record{Version: v + 1, Doc: doc}, v); err != nil {
					b.Error(err)
					return
				}
				v++
			}
		}()
	}
	wg.Wait()
}
