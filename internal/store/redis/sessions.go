package redis

import (
	"context"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lastmile-dm/lastmile/broker/persist"
)

var _ persist.Store = (*Store)(nil)

func (s *Store) bucket(b string) (hash, index string) {
	return s.p + "s:" + b, s.p + "s:" + b + ":idx"
}

// Apply writes ops in one MULTI/EXEC, in order. Every reply means the
// write is in Redis; how durable that is depends on its appendfsync.
func (s *Store) Apply(ctx context.Context, ops []persist.Op, _ bool) error {
	if len(ops) == 0 {
		return nil
	}
	defer s.observe("session_apply", time.Now())
	_, err := s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for _, op := range ops {
			h, idx := s.bucket(op.Bucket)
			if op.Delete {
				p.HDel(ctx, h, op.Key)
				p.ZRem(ctx, idx, op.Key)
			} else {
				p.HSet(ctx, h, op.Key, op.Value)
				p.ZAdd(ctx, idx, goredis.Z{Member: op.Key})
			}
		}
		return nil
	})
	return err
}

// scanPage is how many keys Scan fetches per round trip.
const scanPage = 500

// Scan calls fn for every key in bucket starting with prefix, in order.
func (s *Store) Scan(ctx context.Context, bucket, prefix string, fn func(key string, value []byte) error) error {
	defer s.observe("session_scan", time.Now())
	h, idx := s.bucket(bucket)
	min, max := "-", "+"
	if prefix != "" {
		min = "[" + prefix
		if end := prefixEnd(prefix); end != "" {
			max = "(" + end
		}
	}
	for {
		keys, err := s.rdb.ZRangeArgs(ctx, goredis.ZRangeArgs{Key: idx, Start: min, Stop: max, ByLex: true, Count: scanPage}).Result()
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		vals, err := s.rdb.HMGet(ctx, h, keys...).Result()
		if err != nil {
			return err
		}
		for i, k := range keys {
			v, ok := vals[i].(string)
			if !ok {
				continue // deleted between the two reads
			}
			if err := fn(k, []byte(v)); err != nil {
				return err
			}
		}
		if len(keys) < scanPage {
			return nil
		}
		min = "(" + keys[len(keys)-1]
	}
}

// prefixEnd is the smallest string greater than every string with prefix p,
// or "" if there is none.
func prefixEnd(p string) string {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			return string(b[:i+1])
		}
	}
	return ""
}
