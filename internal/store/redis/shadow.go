package redis

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lastmile-dm/lastmile/dm/shadow"
)

var _ shadow.Store = (*Store)(nil)

// A shadow is a hash {v: version, d: document} at "sh:{deviceId}:{name}"
// (device IDs never contain ':'), and "shs:{deviceId}" is the set of the
// device's shadow names ("" is the classic shadow). The version is a hash
// field so the scripts compare it without decoding the document.
func (s *Store) shadowKey(id, name string) string { return s.p + "sh:" + id + ":" + name }
func (s *Store) shadowSet(id string) string       { return s.p + "shs:" + id }

var (
	// KEYS: shadow, name set; ARGV: doc, version, expected version, name.
	// 1 stored, 0 version mismatch.
	putShadowScript = goredis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'v') or '0'
if v ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[4])
return 1`)
	// KEYS: shadow, name set; ARGV: expected version ('0': any), name.
	// 1 deleted, 0 not found, -1 version mismatch.
	deleteShadowScript = goredis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return 0 end
if ARGV[1] ~= '0' and v ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 1`)
)

// GetShadow returns the shadow or shadow.ErrNotFound.
func (s *Store) GetShadow(ctx context.Context, id, name string) (shadow.Record, error) {
	defer s.observe("get_shadow", time.Now())
	vals, err := s.rdb.HMGet(ctx, s.shadowKey(id, name), "v", "d").Result()
	if err != nil {
		return shadow.Record{}, err
	}
	vs, ok1 := vals[0].(string)
	ds, ok2 := vals[1].(string)
	if !ok1 || !ok2 {
		return shadow.Record{}, fmt.Errorf("shadow %s/%s: %w", id, name, shadow.ErrNotFound)
	}
	v, err := strconv.ParseUint(vs, 10, 64)
	if err != nil {
		return shadow.Record{}, fmt.Errorf("shadow %s/%s: bad stored version %q", id, name, vs)
	}
	return shadow.Record{Version: v, Doc: []byte(ds)}, nil
}

// PutShadow stores r if the stored version is expect (0: absent).
func (s *Store) PutShadow(ctx context.Context, id, name string, r shadow.Record, expect uint64) error {
	defer s.observe("put_shadow", time.Now())
	n, err := s.puts.put(ctx, []string{s.shadowKey(id, name), s.shadowSet(id)},
		r.Doc, strconv.FormatUint(r.Version, 10), strconv.FormatUint(expect, 10), name)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("shadow %s/%s is not at version %d: %w", id, name, expect, shadow.ErrConflict)
	}
	return nil
}

// DeleteShadow removes the shadow if its version is expect (0: any).
func (s *Store) DeleteShadow(ctx context.Context, id, name string, expect uint64) error {
	defer s.observe("delete_shadow", time.Now())
	n, err := deleteShadowScript.Run(ctx, s.rdb, []string{s.shadowKey(id, name), s.shadowSet(id)},
		strconv.FormatUint(expect, 10), name).Int()
	switch {
	case err != nil:
		return err
	case n == 0:
		return fmt.Errorf("shadow %s/%s: %w", id, name, shadow.ErrNotFound)
	case n < 0:
		return fmt.Errorf("shadow %s/%s is not at version %d: %w", id, name, expect, shadow.ErrConflict)
	}
	return nil
}

// ListShadows returns the names of the device's shadows in order.
func (s *Store) ListShadows(ctx context.Context, id string) ([]string, error) {
	defer s.observe("list_shadows", time.Now())
	names, err := s.rdb.SMembers(ctx, s.shadowSet(id)).Result()
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}
