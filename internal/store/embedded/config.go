package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/lastmile-dm/lastmile/dm/config"
)

var _ config.Store = (*Store)(nil)

// Config push keys. Version numbers are zero-padded so that key order is
// numeric order; rollout IDs are time-ordered; names and IDs never
// contain '/'.
const (
	prefixConfigProfile = "cp/"
	prefixConfigVersion = "cv/" // cv/{profile}/{%019d}
	prefixConfigRollout = "cr/" // cr/{id}
	prefixConfigStatus  = "cs/" // cs/{rollout}/{device}
	prefixConfigTarget  = "ct/" // ct/{device} -> rollout ID
	versionDigits       = "%019d"
)

func configVersionKey(p string, v int64) string {
	return prefixConfigVersion + p + "/" + fmt.Sprintf(versionDigits, v)
}

// CreateConfigProfile stores a new profile or returns config.ErrExists.
func (s *Store) CreateConfigProfile(_ context.Context, p *config.Profile) error {
	defer s.observe("create_config_profile", time.Now())
	return s.create(prefixConfigProfile+p.Name, p, fmt.Errorf("profile %s: %w", p.Name, config.ErrExists))
}

// GetConfigProfile returns a profile or config.ErrNotFound.
func (s *Store) GetConfigProfile(_ context.Context, name string) (*config.Profile, error) {
	defer s.observe("get_config_profile", time.Now())
	var p config.Profile
	ok, err := s.getJSON(prefixConfigProfile+name, &p)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("profile %s: %w", name, config.ErrNotFound)
	}
	return &p, nil
}

// CreateConfigVersion stores a new version or returns config.ErrExists.
func (s *Store) CreateConfigVersion(_ context.Context, v *config.Version) error {
	defer s.observe("create_config_version", time.Now())
	return s.create(configVersionKey(v.Profile, v.Version), v, fmt.Errorf("profile %s version %d: %w", v.Profile, v.Version, config.ErrExists))
}

// GetConfigVersion returns a version or config.ErrNotFound.
func (s *Store) GetConfigVersion(_ context.Context, profile string, version int64) (*config.Version, error) {
	defer s.observe("get_config_version", time.Now())
	var v config.Version
	ok, err := s.getJSON(configVersionKey(profile, version), &v)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("profile %s version %d: %w", profile, version, config.ErrNotFound)
	}
	return &v, nil
}

// ListConfigVersions returns versions numbered above after, ascending.
func (s *Store) ListConfigVersions(ctx context.Context, profile string, after int64, limit int) ([]*config.Version, error) {
	defer s.observe("list_config_versions", time.Now())
	return scanJSON[config.Version](ctx, s, prefixConfigVersion+profile+"/", fmt.Sprintf(versionDigits, after+1), limit)
}

// LatestConfigVersion returns the highest version number of a profile.
func (s *Store) LatestConfigVersion(ctx context.Context, profile string) (int64, error) {
	defer s.observe("latest_config_version", time.Now())
	prefix := []byte(prefixConfigVersion + profile + "/")
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	return strconv.ParseInt(string(it.Key()[len(prefix):]), 10, 64)
}

// CreateRollout stores a new rollout or returns config.ErrExists.
func (s *Store) CreateRollout(_ context.Context, r *config.Rollout) error {
	defer s.observe("create_rollout", time.Now())
	return s.create(prefixConfigRollout+r.ID, r, fmt.Errorf("rollout %s: %w", r.ID, config.ErrExists))
}

// PutRollout replaces a rollout or returns config.ErrNotFound.
func (s *Store) PutRollout(_ context.Context, r *config.Rollout) error {
	defer s.observe("put_rollout", time.Now())
	return s.replace(prefixConfigRollout+r.ID, r, fmt.Errorf("rollout %s: %w", r.ID, config.ErrNotFound))
}

// GetRollout returns a rollout or config.ErrNotFound.
func (s *Store) GetRollout(_ context.Context, id string) (*config.Rollout, error) {
	defer s.observe("get_rollout", time.Now())
	var r config.Rollout
	ok, err := s.getJSON(prefixConfigRollout+id, &r)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("rollout %s: %w", id, config.ErrNotFound)
	}
	return &r, nil
}

// ListRollouts returns rollouts with IDs above after, in ID order.
func (s *Store) ListRollouts(ctx context.Context, after string, limit int) ([]*config.Rollout, error) {
	defer s.observe("list_rollouts", time.Now())
	return scanJSON[config.Rollout](ctx, s, prefixConfigRollout, after+"\x00", limit)
}

// PutDeviceStatuses writes statuses in one batch.
func (s *Store) PutDeviceStatuses(_ context.Context, sts []*config.DeviceStatus) error {
	defer s.observe("put_device_statuses", time.Now())
	b := s.db.NewBatch()
	defer b.Close()
	for _, st := range sts {
		v, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if err := b.Set([]byte(prefixConfigStatus+st.Rollout+"/"+st.DeviceID), v, nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.Sync)
}

// GetDeviceStatus returns a device's status in a rollout or config.ErrNotFound.
func (s *Store) GetDeviceStatus(_ context.Context, rollout, deviceID string) (*config.DeviceStatus, error) {
	defer s.observe("get_device_status", time.Now())
	var st config.DeviceStatus
	ok, err := s.getJSON(prefixConfigStatus+rollout+"/"+deviceID, &st)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("device %s in rollout %s: %w", deviceID, rollout, config.ErrNotFound)
	}
	return &st, nil
}

// ListDeviceStatuses returns a rollout's statuses after a device ID.
func (s *Store) ListDeviceStatuses(ctx context.Context, rollout, after string, limit int) ([]*config.DeviceStatus, error) {
	defer s.observe("list_device_statuses", time.Now())
	lower := ""
	if after != "" {
		lower = after + "\x00"
	}
	return scanJSON[config.DeviceStatus](ctx, s, prefixConfigStatus+rollout+"/", lower, limit)
}

// SetDeviceTargets records the devices' current rollout in one batch.
func (s *Store) SetDeviceTargets(_ context.Context, rollout string, ids []string) error {
	defer s.observe("set_device_targets", time.Now())
	b := s.db.NewBatch()
	defer b.Close()
	for _, id := range ids {
		if err := b.Set([]byte(prefixConfigTarget+id), []byte(rollout), nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.Sync)
}

// GetDeviceTarget returns a device's current rollout or config.ErrNotFound.
func (s *Store) GetDeviceTarget(_ context.Context, deviceID string) (string, error) {
	defer s.observe("get_device_target", time.Now())
	b, ok, err := s.get(prefixConfigTarget + deviceID)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("target of %s: %w", deviceID, config.ErrNotFound)
	}
	return string(b), nil
}

// leases are in memory: the embedded engine serves one process, which
// holds every lease it asks for unless another holder of the same
// process has it.
var (
	leaseMu sync.Mutex
	leases  = map[*Store]map[string]lease{}
)

type lease struct {
	holder string
	until  time.Time
}

// AcquireLease takes or renews a lease for holder.
func (s *Store) AcquireLease(_ context.Context, name, holder string, ttl time.Duration) (bool, error) {
	leaseMu.Lock()
	defer leaseMu.Unlock()
	m := leases[s]
	if m == nil {
		m = map[string]lease{}
		leases[s] = m
	}
	now := time.Now()
	if l, ok := m[name]; ok && l.holder != holder && now.Before(l.until) {
		return false, nil
	}
	m[name] = lease{holder: holder, until: now.Add(ttl)}
	return true, nil
}

var errStop = errors.New("stop scan")

// scanJSON decodes up to limit records with prefix from lower on.
func scanJSON[T any](ctx context.Context, s *Store, prefix, lower string, limit int) ([]*T, error) {
	var out []*T
	err := s.scan(ctx, prefix, lower, func(_ string, v []byte) error {
		x := new(T)
		if err := json.Unmarshal(v, x); err != nil {
			return err
		}
		out = append(out, x)
		if len(out) >= limit {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return out, err
}
