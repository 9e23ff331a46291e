package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lastmile-dm/lastmile/dm/config"
)

var _ config.Store = (*Store)(nil)

// Config push keys. Every record is JSON at its key; a sorted set (all
// scores 0, ordered by member) indexes each listable kind:
//
//	cp:{profile}                profile
//	cv:{profile}:{%019d}        version; index cvs:{profile}
//	cr:{id}                     rollout; index crs
//	cs:{rollout}:{device}       device status; index css:{rollout}
//	ct:{device}                 the device's current rollout ID
//	lease:{name}                holder, with a TTL
func (s *Store) cfgKey(parts ...string) string {
	k := s.p
	for i, p := range parts {
		if i > 0 {
			k += ":"
		}
		k += p
	}
	return k
}

func versionMember(v int64) string { return fmt.Sprintf("%019d", v) }

// CreateConfigProfile stores a new profile or returns config.ErrExists.
func (s *Store) CreateConfigProfile(ctx context.Context, p *config.Profile) error {
	defer s.observe("create_config_profile", time.Now())
	ok, err := s.create(ctx, s.cfgKey("cp", p.Name), s.cfgKey("cps"), p.Name, p)
	if err == nil && !ok {
		err = fmt.Errorf("profile %s: %w", p.Name, config.ErrExists)
	}
	return err
}

// GetConfigProfile returns a profile or config.ErrNotFound.
func (s *Store) GetConfigProfile(ctx context.Context, name string) (*config.Profile, error) {
	defer s.observe("get_config_profile", time.Now())
	var p config.Profile
	ok, err := s.getJSON(ctx, s.cfgKey("cp", name), &p)
	if err == nil && !ok {
		err = fmt.Errorf("profile %s: %w", name, config.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// CreateConfigVersion stores a new version or returns config.ErrExists.
func (s *Store) CreateConfigVersion(ctx context.Context, v *config.Version) error {
	defer s.observe("create_config_version", time.Now())
	m := versionMember(v.Version)
	ok, err := s.create(ctx, s.cfgKey("cv", v.Profile, m), s.cfgKey("cvs", v.Profile), m, v)
	if err == nil && !ok {
		err = fmt.Errorf("profile %s version %d: %w", v.Profile, v.Version, config.ErrExists)
	}
	return err
}

// GetConfigVersion returns a version or config.ErrNotFound.
func (s *Store) GetConfigVersion(ctx context.Context, profile string, version int64) (*config.Version, error) {
	defer s.observe("get_config_version", time.Now())
	var v config.Version
	ok, err := s.getJSON(ctx, s.cfgKey("cv", profile, versionMember(version)), &v)
	if err == nil && !ok {
		err = fmt.Errorf("profile %s version %d: %w", profile, version, config.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// ListConfigVersions returns versions numbered above after, ascending.
func (s *Store) ListConfigVersions(ctx context.Context, profile string, after int64, limit int) ([]*config.Version, error) {
	defer s.observe("list_config_versions", time.Now())
	a := ""
	if after > 0 {
		a = versionMember(after)
	}
	ms, err := s.page(ctx, s.cfgKey("cvs", profile), a, limit)
	if err != nil {
		return nil, err
	}
	return loadAll[config.Version](ctx, s, s.cfgKey("cv", profile, ""), ms)
}

// LatestConfigVersion returns the highest version number of a profile.
func (s *Store) LatestConfigVersion(ctx context.Context, profile string) (int64, error) {
	defer s.observe("latest_config_version", time.Now())
	ms, err := s.rdb.ZRangeArgs(ctx, goredis.ZRangeArgs{Key: s.cfgKey("cvs", profile), Start: "+", Stop: "-", ByLex: true, Rev: true, Count: 1}).Result()
	if err != nil || len(ms) == 0 {
		return 0, err
	}
	return strconv.ParseInt(ms[0], 10, 64)
}

// CreateRollout stores a new rollout or returns config.ErrExists.
func (s *Store) CreateRollout(ctx context.Context, r *config.Rollout) error {
	defer s.observe("create_rollout", time.Now())
	ok, err := s.create(ctx, s.cfgKey("cr", r.ID), s.cfgKey("crs"), r.ID, r)
	if err == nil && !ok {
		err = fmt.Errorf("rollout %s: %w", r.ID, config.ErrExists)
	}
	return err
}

// PutRollout replaces a rollout or returns config.ErrNotFound.
func (s *Store) PutRollout(ctx context.Context, r *config.Rollout) error {
	defer s.observe("put_rollout", time.Now())
	ok, err := s.replace(ctx, s.cfgKey("cr", r.ID), r)
	if err == nil && !ok {
		err = fmt.Errorf("rollout %s: %w", r.ID, config.ErrNotFound)
	}
	return err
}

// GetRollout returns a rollout or config.ErrNotFound.
func (s *Store) GetRollout(ctx context.Context, id string) (*config.Rollout, error) {
	defer s.observe("get_rollout", time.Now())
	var r config.Rollout
	ok, err := s.getJSON(ctx, s.cfgKey("cr", id), &r)
	if err == nil && !ok {
		err = fmt.Errorf("rollout %s: %w", id, config.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// ListRollouts returns rollouts with IDs above after, in ID order.
func (s *Store) ListRollouts(ctx context.Context, after string, limit int) ([]*config.Rollout, error) {
	defer s.observe("list_rollouts", time.Now())
	ids, err := s.page(ctx, s.cfgKey("crs"), after, limit)
	if err != nil {
		return nil, err
	}
	return loadAll[config.Rollout](ctx, s, s.cfgKey("cr", ""), ids)
}

// PutDeviceStatuses writes statuses in one transaction.
func (s *Store) PutDeviceStatuses(ctx context.Context, sts []*config.DeviceStatus) error {
	defer s.observe("put_device_statuses", time.Now())
	for len(sts) > 0 {
		n := min(len(sts), 500)
		_, err := s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			for _, st := range sts[:n] {
				b, err := json.Marshal(st)
				if err != nil {
					return err
				}
				p.Set(ctx, s.cfgKey("cs", st.Rollout, st.DeviceID), b, 0)
				p.ZAdd(ctx, s.cfgKey("css", st.Rollout), goredis.Z{Member: st.DeviceID})
			}
			return nil
		})
		if err != nil {
			return err
		}
		sts = sts[n:]
	}
	return nil
}

// GetDeviceStatus returns a device's status in a rollout or config.ErrNotFound.
func (s *Store) GetDeviceStatus(ctx context.Context, rollout, deviceID string) (*config.DeviceStatus, error) {
	defer s.observe("get_device_status", time.Now())
	var st config.DeviceStatus
	ok, err := s.getJSON(ctx, s.cfgKey("cs", rollout, deviceID), &st)
	if err == nil && !ok {
		err = fmt.Errorf("device %s in rollout %s: %w", deviceID, rollout, config.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// ListDeviceStatuses returns a rollout's statuses after a device ID.
func (s *Store) ListDeviceStatuses(ctx context.Context, rollout, after string, limit int) ([]*config.DeviceStatus, error) {
	defer s.observe("list_device_statuses", time.Now())
	ids, err := s.page(ctx, s.cfgKey("css", rollout), after, limit)
	if err != nil {
		return nil, err
	}
	return loadAll[config.DeviceStatus](ctx, s, s.cfgKey("cs", rollout, ""), ids)
}

// SetDeviceTargets records the devices' current rollout, 500 per round trip.
func (s *Store) SetDeviceTargets(ctx context.Context, rollout string, ids []string) error {
	defer s.observe("set_device_targets", time.Now())
	for len(ids) > 0 {
		n := min(len(ids), 500)
		pairs := make([]any, 0, 2*n)
		for _, id := range ids[:n] {
			pairs = append(pairs, s.cfgKey("ct", id), rollout)
		}
		if err := s.rdb.MSet(ctx, pairs...).Err(); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// GetDeviceTarget returns a device's current rollout or config.ErrNotFound.
func (s *Store) GetDeviceTarget(ctx context.Context, deviceID string) (string, error) {
	defer s.observe("get_device_target", time.Now())
	v, err := s.rdb.Get(ctx, s.cfgKey("ct", deviceID)).Result()
	if errors.Is(err, goredis.Nil) {
		return "", fmt.Errorf("target of %s: %w", deviceID, config.ErrNotFound)
	}
	return v, err
}

// KEYS: lease; ARGV: holder, ttl ms. 1 if holder has the lease.
var leaseScript = goredis.NewScript(`
local h = redis.call('GET', KEYS[1])
if h and h ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`)

// AcquireLease takes or renews a lease for holder, cluster-wide.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	defer s.observe("acquire_lease", time.Now())
	n, err := leaseScript.Run(ctx, s.rdb, []string{s.cfgKey("lease", name)}, holder, max(ttl.Milliseconds(), 1)).Int()
	return n == 1, err
}
