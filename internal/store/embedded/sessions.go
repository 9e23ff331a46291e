package embedded

import (
	"context"
	"time"

	"github.com/lastmile-dm/lastmile/broker/persist"
)

var _ persist.Store = (*Store)(nil)

func sessionKey(bucket, key string) []byte {
	return []byte("s/" + bucket + "/" + key)
}

// Apply writes ops as one atomic Pebble batch. With sync the commit waits
// for the WAL fsync, which Pebble shares among concurrent commits.
func (s *Store) Apply(_ context.Context, ops []persist.Op, sync bool) error {
	if len(ops) == 0 {
		return nil
	}
	defer s.observe("session_apply", time.Now())
	b := s.db.NewBatch()
	defer b.Close()
	for _, op := range ops {
		k := sessionKey(op.Bucket, op.Key)
		if op.Delete {
			_ = b.Delete(k, nil)
		} else {
			_ = b.Set(k, op.Value, nil)
		}
	}
	return b.Commit(writeOpts(sync))
}

// Scan calls fn for every key in bucket starting with prefix, in order.
func (s *Store) Scan(ctx context.Context, bucket, prefix string, fn func(key string, value []byte) error) error {
	defer s.observe("session_scan", time.Now())
	base := "s/" + bucket + "/"
	return s.scanPrefix(ctx, base, prefix, fn)
}

// scanPrefix is scan restricted to keys starting with base+prefix.
func (s *Store) scanPrefix(ctx context.Context, base, prefix string, fn func(string, []byte) error) error {
	return s.scan(ctx, base+prefix, "", func(k string, v []byte) error {
		return fn(prefix+k, v)
	})
}
