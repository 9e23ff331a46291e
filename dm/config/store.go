package config

import (
	"context"
	"time"
)

// Store keeps profiles, versions, rollouts and device statuses. It must be
// safe for concurrent use. Lookups of missing records return an error
// wrapping ErrNotFound.
type Store interface {
	// CreateConfigProfile stores a new profile; ErrExists if the name is
	// taken.
	CreateConfigProfile(ctx context.Context, p *Profile) error
	GetConfigProfile(ctx context.Context, name string) (*Profile, error)
	// CreateConfigVersion stores a version under its number; ErrExists if
	// that number is taken (versions are never replaced).
	CreateConfigVersion(ctx context.Context, v *Version) error
	GetConfigVersion(ctx context.Context, profile string, version int64) (*Version, error)
	// ListConfigVersions returns up to limit versions numbered above
	// after, in ascending order.
	ListConfigVersions(ctx context.Context, profile string, after int64, limit int) ([]*Version, error)
	// LatestConfigVersion returns the highest version number, 0 if none.
	LatestConfigVersion(ctx context.Context, profile string) (int64, error)

	// CreateRollout stores a new rollout; ErrExists if the ID is taken.
	CreateRollout(ctx context.Context, r *Rollout) error
	// PutRollout replaces an existing rollout.
	PutRollout(ctx context.Context, r *Rollout) error
	GetRollout(ctx context.Context, id string) (*Rollout, error)
	// ListRollouts returns up to limit rollouts with IDs above after, in
	// ID order.
	ListRollouts(ctx context.Context, after string, limit int) ([]*Rollout, error)

	// PutDeviceStatuses creates or replaces statuses.
	PutDeviceStatuses(ctx context.Context, s []*DeviceStatus) error
	GetDeviceStatus(ctx context.Context, rollout, deviceID string) (*DeviceStatus, error)
	// ListDeviceStatuses returns up to limit statuses of a rollout with
	// device IDs above after, in device ID order.
	ListDeviceStatuses(ctx context.Context, rollout, after string, limit int) ([]*DeviceStatus, error)

	// SetDeviceTargets records, in one write, the rollout whose document
	// each device should run; GetDeviceTarget returns it (ErrNotFound if
	// none).
	SetDeviceTargets(ctx context.Context, rollout string, deviceIDs []string) error
	GetDeviceTarget(ctx context.Context, deviceID string) (string, error)

	// AcquireLease takes or renews the named lease for holder for ttl and
	// reports whether holder has it: one runner per cluster.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
}
