package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/broker/persist"
	"github.com/lastmile-dm/lastmile/cmd/lastmile/internal/config"
	"github.com/lastmile-dm/lastmile/dm/access"
	configpush "github.com/lastmile-dm/lastmile/dm/config"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/shadow"
	"github.com/lastmile-dm/lastmile/dm/token"
	"github.com/lastmile-dm/lastmile/internal/store/embedded"
	redisstore "github.com/lastmile-dm/lastmile/internal/store/redis"
)

// Store is everything the server keeps: both engines implement it.
type Store interface {
	registry.Store
	registry.PresenceStore
	access.Store
	token.Store
	persist.Store
	shadow.Store
	configpush.Store
	Close() error
}

var (
	_ Store = (*embedded.Store)(nil)
	_ Store = (*redisstore.Store)(nil)
)

// ErrStoreLocked is returned when another process (a running server) holds
// the embedded store.
var ErrStoreLocked = errors.New("the data directory is in use by another process (a running server?)")

// OpenStore opens the store the configuration selects. reg may be nil.
func OpenStore(ctx context.Context, cfg config.Config, logger *slog.Logger, reg prometheus.Registerer) (Store, error) {
	switch cfg.Store.Engine {
	case config.EngineRedis:
		r := cfg.Store.Redis
		pw, err := r.RedisPassword()
		if err != nil {
			return nil, err
		}
		c := redisstore.Config{Addr: r.Addr, Username: r.Username, Password: pw, DB: r.DB, KeyPrefix: r.KeyPrefix, Logger: logger, Registerer: reg}
		if r.TLS.Enabled {
			if c.TLS, err = r.TLS.Build(); err != nil {
				return nil, err
			}
		}
		s, err := redisstore.Open(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("open redis store at %s: %w", r.Addr, err)
		}
		return s, nil
	default:
		s, err := embedded.Open(embedded.Config{Dir: cfg.DataDir, Logger: logger, Registerer: reg})
		if err != nil {
			if isLockErr(err) {
				return nil, fmt.Errorf("open embedded store in %s: %w (%w)", cfg.DataDir, ErrStoreLocked, err)
			}
			return nil, fmt.Errorf("open embedded store in %s: %w", cfg.DataDir, err)
		}
		return s, nil
	}
}

// isLockErr recognises Pebble's "lock held" failure, which it reports as a
// plain error from flock.
func isLockErr(err error) bool {
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "lock") && (strings.Contains(msg, "resource temporarily unavailable") ||
		strings.Contains(msg, "held") || strings.Contains(msg, "locked"))
}

// pingStore checks the store answers: with its Ping if it has one, else
// with the cheapest read every store has.
func pingStore(ctx context.Context, s Store) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if p, ok := s.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	_, err := s.ListTokens(ctx, "", 1)
	return err
}
