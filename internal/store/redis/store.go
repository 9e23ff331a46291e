package redis

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
)

// Config configures a Store.
type Config struct {
	Addr      string
	Username  string
	Password  string
	DB        int
	KeyPrefix string // default "lastmile:"
	TLS       *tls.Config

	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// CheckAndSetDefaults validates cfg and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Addr == "" {
		return errors.New("redis store: Addr is required")
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "lastmile:"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Store is the Redis engine. It is safe for concurrent use.
type Store struct {
	rdb *goredis.Client
	p   string
	log *slog.Logger
	dur *prometheus.HistogramVec
	// puts pipelines shadow writes (shadowbatch.go).
	puts *shadowBatcher
}

// Open connects and checks the server answers.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	rdb := goredis.NewClient(&goredis.Options{
		Addr: cfg.Addr, Username: cfg.Username, Password: cfg.Password, DB: cfg.DB, TLSConfig: cfg.TLS,
		// One pool per process; defaults are 10 per CPU.
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
	})
	s := &Store{rdb: rdb, p: cfg.KeyPrefix, log: cfg.Logger.With("component", "store", "engine", "redis"), puts: newShadowBatcher(rdb)}
	s.dur = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:        "lastmile_store_op_duration_seconds",
		Help:        "Latency of store operations.",
		ConstLabels: prometheus.Labels{"engine": "redis"},
		Buckets:     []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5},
	}, []string{"op"})
	if err := s.Ping(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("redis at %s: %w", cfg.Addr, err)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.dur); err != nil {
			_ = s.Close()
			return nil, fmt.Errorf("redis store metrics: %w", err)
		}
	}
	return s, nil
}

// Close closes the connection pool.
func (s *Store) Close() error {
	s.puts.close()
	return s.rdb.Close()
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

func (s *Store) observe(op string, start time.Time) {
	s.dur.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// getJSON decodes key into v; false if there is no such key.
func (s *Store) getJSON(ctx context.Context, key string, v any) (bool, error) {
	b, err := s.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, goredis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fmt.Errorf("decode %q: %w", key, err)
	}
	return true, nil
}

// Scripts shared by every record type.
var (
	// KEYS: record, index; ARGV: json, member. 0 if the record exists.
	createScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1`)
	// KEYS: record; ARGV: json. 0 if there is no record.
	replaceScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1`)
	// KEYS: record, index; ARGV: member. 0 if there was no record.
	deleteScript = goredis.NewScript(`
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1`)
)

func (s *Store) create(ctx context.Context, key, index, member string, v any) (bool, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	n, err := createScript.Run(ctx, s.rdb, []string{key, index}, b, member).Int()
	return n == 1, err
}

func (s *Store) replace(ctx context.Context, key string, v any) (bool, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	n, err := replaceScript.Run(ctx, s.rdb, []string{key}, b).Int()
	return n == 1, err
}

func (s *Store) remove(ctx context.Context, key, index, member string) (bool, error) {
	n, err := deleteScript.Run(ctx, s.rdb, []string{key, index}, member).Int()
	return n == 1, err
}

// page returns up to limit members of index greater than after.
func (s *Store) page(ctx context.Context, index, after string, limit int) ([]string, error) {
	min := "-"
	if after != "" {
		min = "(" + after
	}
	return s.rdb.ZRangeArgs(ctx, goredis.ZRangeArgs{Key: index, Start: min, Stop: "+", ByLex: true, Count: int64(limit)}).Result()
}

// loadAll fetches the records of ids with MGET, skipping ones deleted meanwhile.
func loadAll[T any](ctx context.Context, s *Store, keyPrefix string, ids []string) ([]*T, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = keyPrefix + id
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]*T, 0, len(vals))
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		x := new(T)
		if err := json.Unmarshal([]byte(str), x); err != nil {
			return nil, fmt.Errorf("decode %q: %w", keys[i], err)
		}
		out = append(out, x)
	}
	return out, nil
}
