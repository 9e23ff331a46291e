package config

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/lastmile-dm/lastmile/dm/topic"
)

// Messenger publishes a platform message (QoS 1) to a device topic. A
// message to a device that is not subscribed is dropped: devices fetch
// their document on every connection.
type Messenger interface {
	Publish(topic string, payload []byte) error
}

// Targets resolves a rollout's target to device IDs.
type Targets interface {
	// DeviceExists returns nil if the device is registered, an error
	// wrapping ErrNotFound if not.
	DeviceExists(ctx context.Context, id string) error
	// ResolveTargets returns one page of the devices of a group or a fleet
	// query, in ID order, and the token of the next page ("" at the end).
	// A bad query is an error wrapping ErrInvalid.
	ResolveTargets(ctx context.Context, t Target, pageToken string) (ids []string, next string, err error)
}

// Change is one device's state change in a rollout.
type Change struct {
	Rollout  *Rollout
	DeviceID string
	State    string
	Reason   string
	Time     time.Time
}

// Notifier is told about every device state change (e.g. to stream it as
// an event). It must not block.
type Notifier interface {
	ConfigStatusChanged(Change)
}

// Limits of config push.
const (
	DefaultRate     = 10
	MaxRate         = 10_000
	DefaultTick     = time.Second
	DefaultPageSize = 100
	MaxPageSize     = 1000
	// MaxRolloutDevices bounds the devices one assignment can reach.
	MaxRolloutDevices = 1_000_000
	leaseName         = "config-rollout"
)

// Config configures a Service.
type Config struct {
	Store     Store
	Targets   Targets
	Messenger Messenger
	Logger    *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Tick is how often the runner releases devices; default 1 s.
	Tick time.Duration
	// Holder names this node in the runner's lease.
	Holder string
}

// CheckAndSetDefaults validates c and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Store == nil || c.Targets == nil || c.Messenger == nil {
		return errors.New("config: Store, Targets and Messenger are required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Tick <= 0 {
		c.Tick = DefaultTick
	}
	if c.Holder == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		c.Holder = hex.EncodeToString(b)
	}
	return nil
}

// Service is config push. It is safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger

	// locks serialise the status updates of one device (reports of one
	// device arrive on one node, in order).
	locks [64]sync.Mutex

	nmu       sync.RWMutex
	notifiers []Notifier
}

// New builds a Service.
func New(cfg Config) (*Service, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "config")}, nil
}

// AddNotifier registers n for every device state change.
func (s *Service) AddNotifier(n Notifier) {
	s.nmu.Lock()
	defer s.nmu.Unlock()
	s.notifiers = append(s.notifiers, n)
}

func (s *Service) notify(c Change) {
	s.nmu.RLock()
	defer s.nmu.RUnlock()
	for _, n := range s.notifiers {
		n.ConfigStatusChanged(c)
	}
}

// CreateProfile creates a profile.
func (s *Service) CreateProfile(ctx context.Context, p Profile) (*Profile, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	p.CreatedAt = s.cfg.Now().UTC()
	if err := s.cfg.Store.CreateConfigProfile(ctx, &p); err != nil {
		return nil, err
	}
	s.log.Info("config profile created", "profile", p.Name, "format", p.Format)
	return &p, nil
}

// GetProfile returns a profile and its latest version number.
func (s *Service) GetProfile(ctx context.Context, name string) (*Profile, int64, error) {
	if !validName(name) {
		return nil, 0, fmt.Errorf("%w: bad profile name %q", ErrInvalid, name)
	}
	p, err := s.cfg.Store.GetConfigProfile(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	latest, err := s.cfg.Store.LatestConfigVersion(ctx, name)
	return p, latest, err
}

// CreateVersion adds a document to a profile after checking it against
// the profile's format and schema. A retry with the same content as the
// latest version returns that version instead of a new one.
func (s *Service) CreateVersion(ctx context.Context, profile string, content []byte, comment string) (*Version, bool, error) {
	p, latest, err := s.GetProfile(ctx, profile)
	if err != nil {
		return nil, false, err
	}
	if len(comment) > 1024 {
		return nil, false, fmt.Errorf("%w: comment longer than 1024 bytes", ErrInvalid)
	}
	if err := p.Schema.Validate(p.Format, content); err != nil {
		return nil, false, err
	}
	hash := Hash(content)
	for range 8 {
		if latest > 0 {
			last, err := s.cfg.Store.GetConfigVersion(ctx, profile, latest)
			if err != nil {
				return nil, false, err
			}
			if last.Hash == hash {
				return last, false, nil
			}
		}
		v := &Version{Profile: profile, Version: latest + 1, Content: content, Hash: hash, Comment: comment, CreatedAt: s.cfg.Now().UTC()}
		err := s.cfg.Store.CreateConfigVersion(ctx, v)
		if err == nil {
			s.log.Info("config version created", "profile", profile, "version", v.Version, "hash", hash)
			return v, true, nil
		}
		if !errors.Is(err, ErrExists) {
			return nil, false, err
		}
		if latest, err = s.cfg.Store.LatestConfigVersion(ctx, profile); err != nil {
			return nil, false, err
		}
	}
	return nil, false, fmt.Errorf("create version of %s: too many concurrent versions", profile)
}

// GetVersion returns one version.
func (s *Service) GetVersion(ctx context.Context, profile string, version int64) (*Version, error) {
	if _, _, err := s.GetProfile(ctx, profile); err != nil {
		return nil, err
	}
	return s.cfg.Store.GetConfigVersion(ctx, profile, version)
}

func pageSize(n int) (int, error) {
	switch {
	case n < 0:
		return 0, fmt.Errorf("%w: page_size must not be negative", ErrInvalid)
	case n == 0:
		return DefaultPageSize, nil
	case n > MaxPageSize:
		return MaxPageSize, nil
	}
	return n, nil
}

func decodeToken(tok string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) > 256 {
		return "", fmt.Errorf("%w: page_token is not one this server issued", ErrInvalid)
	}
	return string(b), nil
}

func encodeToken(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// ListVersions returns one page of a profile's versions, oldest first.
func (s *Service) ListVersions(ctx context.Context, profile string, size int, token string) ([]*Version, string, error) {
	if _, _, err := s.GetProfile(ctx, profile); err != nil {
		return nil, "", err
	}
	size, err := pageSize(size)
	if err != nil {
		return nil, "", err
	}
	after, err := decodeToken(token)
	if err != nil {
		return nil, "", err
	}
	var n int64
	if after != "" {
		if n, err = strconv.ParseInt(after, 10, 64); err != nil {
			return nil, "", fmt.Errorf("%w: page_token is not one this server issued", ErrInvalid)
		}
	}
	vs, err := s.cfg.Store.ListConfigVersions(ctx, profile, n, size)
	if err != nil || len(vs) < size {
		return vs, "", err
	}
	return vs, encodeToken(strconv.FormatInt(vs[len(vs)-1].Version, 10)), nil
}

func newRolloutID(now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("r%016x-%s", now.UnixNano(), hex.EncodeToString(b))
}

// Assign starts a rollout of a profile version to a target at rate devices
// per second (0: DefaultRate). The target is resolved now: devices that
// join the group or start matching the query later are not included.
func (s *Service) Assign(ctx context.Context, profile string, version int64, t Target, rate int) (*Rollout, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	switch {
	case rate < 0 || rate > MaxRate:
		return nil, fmt.Errorf("%w: rate must be 0 to %d devices per second", ErrInvalid, MaxRate)
	case rate == 0:
		rate = DefaultRate
	}
	v, err := s.GetVersion(ctx, profile, version)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now().UTC()
	r := &Rollout{ID: newRolloutID(now), Profile: profile, Version: v.Version, Hash: v.Hash, Target: t,
		Rate: rate, State: RolloutRunning, CreatedAt: now}
	put := func(ids []string) error {
		if r.Devices+len(ids) > MaxRolloutDevices {
			return fmt.Errorf("%w: the target has more than %d devices", ErrInvalid, MaxRolloutDevices)
		}
		st := make([]*DeviceStatus, len(ids))
		for i, id := range ids {
			st[i] = &DeviceStatus{Rollout: r.ID, DeviceID: id, State: StatePending, UpdatedAt: now}
		}
		r.Devices += len(ids)
		return s.cfg.Store.PutDeviceStatuses(ctx, st)
	}
	if t.DeviceID != "" {
		if err := s.cfg.Targets.DeviceExists(ctx, t.DeviceID); err != nil {
			return nil, err
		}
		if err := put([]string{t.DeviceID}); err != nil {
			return nil, err
		}
	} else {
		tok := ""
		for {
			ids, next, err := s.cfg.Targets.ResolveTargets(ctx, t, tok)
			if err != nil {
				return nil, err
			}
			if err := put(ids); err != nil {
				return nil, err
			}
			if next == "" {
				break
			}
			tok = next
		}
	}
	if r.Devices == 0 {
		r.State = RolloutDone
	}
	// The statuses exist before the rollout does, so the runner never sees
	// a half-resolved rollout.
	if err := s.cfg.Store.CreateRollout(ctx, r); err != nil {
		return nil, err
	}
	s.log.Info("config rollout created", "rollout", r.ID, "profile", profile, "version", v.Version, "target", t.String(), "devices", r.Devices, "rate", rate)
	return r, nil
}

// RolloutStatus is a rollout with its totals and one page of devices.
type RolloutStatus struct {
	Rollout   *Rollout
	Totals    Totals
	Devices   []*DeviceStatus
	NextToken string
}

// GetRolloutStatus returns a rollout, its totals (counted over every
// device) and one page of per-device statuses in device ID order.
func (s *Service) GetRolloutStatus(ctx context.Context, id string, size int, token string) (*RolloutStatus, error) {
	if id == "" || len(id) > 64 {
		return nil, fmt.Errorf("%w: bad rollout ID", ErrInvalid)
	}
	size, err := pageSize(size)
	if err != nil {
		return nil, err
	}
	after, err := decodeToken(token)
	if err != nil {
		return nil, err
	}
	r, err := s.cfg.Store.GetRollout(ctx, id)
	if err != nil {
		return nil, err
	}
	out := &RolloutStatus{Rollout: r, Totals: Totals{}}
	for _, st := range States {
		out.Totals[st] = 0
	}
	cursor := ""
	for {
		page, err := s.cfg.Store.ListDeviceStatuses(ctx, id, cursor, MaxPageSize)
		if err != nil {
			return nil, err
		}
		for _, d := range page {
			out.Totals[d.State]++
		}
		if len(page) < MaxPageSize {
			break
		}
		cursor = page[len(page)-1].DeviceID
	}
	if out.Devices, err = s.cfg.Store.ListDeviceStatuses(ctx, id, after, size); err != nil {
		return nil, err
	}
	if len(out.Devices) == size {
		out.NextToken = encodeToken(out.Devices[len(out.Devices)-1].DeviceID)
	}
	return out, nil
}

// ListRollouts returns one page of rollouts, oldest first.
func (s *Service) ListRollouts(ctx context.Context, size int, token string) ([]*Rollout, string, error) {
	size, err := pageSize(size)
	if err != nil {
		return nil, "", err
	}
	after, err := decodeToken(token)
	if err != nil {
		return nil, "", err
	}
	rs, err := s.cfg.Store.ListRollouts(ctx, after, size)
	if err != nil || len(rs) < size {
		return rs, "", err
	}
	return rs, encodeToken(rs[len(rs)-1].ID), nil
}

func stripe(deviceID string, n int) int {
	var h uint32 = 2166136261
	for i := 0; i < len(deviceID); i++ {
		h = (h ^ uint32(deviceID[i])) * 16777619
	}
	return int(h % uint32(n)) //nolint:gosec // n is the stripe count
}

func (s *Service) lock(deviceID string) *sync.Mutex {
	return &s.locks[stripe(deviceID, len(s.locks))]
}

// lockAll locks the stripes of several devices, in stripe order (so two
// batches never deadlock), and returns the unlock.
func (s *Service) lockAll(ids []string) func() {
	var held [len(s.locks)]bool
	for _, id := range ids {
		held[stripe(id, len(s.locks))] = true
	}
	for i, h := range held {
		if h {
			s.locks[i].Lock()
		}
	}
	return func() {
		for i, h := range held {
			if h {
				s.locks[i].Unlock()
			}
		}
	}
}

// document builds the message that carries a rollout's document.
func (s *Service) document(ctx context.Context, r *Rollout) ([]byte, error) {
	p, err := s.cfg.Store.GetConfigProfile(ctx, r.Profile)
	if err != nil {
		return nil, err
	}
	v, err := s.cfg.Store.GetConfigVersion(ctx, r.Profile, r.Version)
	if err != nil {
		return nil, err
	}
	return json.Marshal(topic.ConfigDocumentPayload{
		ConfigRef: topic.ConfigRef{Rollout: r.ID, Profile: r.Profile, Version: r.Version, Hash: v.Hash},
		Format:    p.Format, Content: string(v.Content)})
}

// HandleGet answers a device's config/get with the document of its current
// rollout; a device with none gets no answer.
func (s *Service) HandleGet(ctx context.Context, deviceID string) error {
	rid, err := s.cfg.Store.GetDeviceTarget(ctx, deviceID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	r, err := s.cfg.Store.GetRollout(ctx, rid)
	if err != nil {
		return err
	}
	b, err := s.document(ctx, r)
	if err != nil {
		return err
	}
	return s.cfg.Messenger.Publish(topic.ConfigTopic(deviceID, topic.ConfigDocument), b)
}

// HandleStatus records a device's report and, when the device waits for
// it, publishes the confirmation.
func (s *Service) HandleStatus(ctx context.Context, deviceID string, p topic.ConfigStatusPayload) error {
	mu := s.lock(deviceID)
	mu.Lock()
	defer mu.Unlock()
	r, err := s.cfg.Store.GetRollout(ctx, p.Rollout)
	if err != nil {
		return fmt.Errorf("status of %s for rollout %s: %w", deviceID, p.Rollout, err)
	}
	if r.Hash != p.Hash {
		return fmt.Errorf("%w: status of %s names hash %.12s, rollout %s has %.12s", ErrInvalid, deviceID, p.Hash, r.ID, r.Hash)
	}
	st, err := s.cfg.Store.GetDeviceStatus(ctx, r.ID, deviceID)
	if err != nil {
		return fmt.Errorf("status of %s for rollout %s: %w", deviceID, r.ID, err)
	}
	state, reason := st.State, p.Reason
	switch p.State {
	case topic.ConfigReceived, topic.ConfigAwaitingConfirm:
		if st.State == StatePending {
			state, reason = StateDelivered, ""
		}
	case topic.ConfigApplied:
		state, reason = StateApplied, ""
	case topic.ConfigFailed:
		state = StateFailed
	case topic.ConfigRolledBack:
		state = StateRolledBack
	}
	if p.State == topic.ConfigAwaitingConfirm {
		// Confirm only the device's current rollout: a device still trying
		// an older one rolls back, then fetches the current document.
		if cur, err := s.cfg.Store.GetDeviceTarget(ctx, deviceID); err == nil && cur == r.ID {
			b, _ := json.Marshal(topic.ConfigConfirmPayload{ConfigRef: p.ConfigRef})
			if err := s.cfg.Messenger.Publish(topic.ConfigTopic(deviceID, topic.ConfigConfirm), b); err != nil {
				return fmt.Errorf("confirm %s: %w", deviceID, err)
			}
		}
	}
	if st.State == StateSuperseded || (state == st.State && reason == st.Reason) {
		return nil
	}
	now := s.cfg.Now().UTC()
	st.State, st.Reason, st.UpdatedAt = state, reason, now
	if err := s.cfg.Store.PutDeviceStatuses(ctx, []*DeviceStatus{st}); err != nil {
		return err
	}
	s.log.Info("config status", "device", deviceID, "rollout", r.ID, "state", state, "reason", reason)
	s.notify(Change{Rollout: r, DeviceID: deviceID, State: state, Reason: reason, Time: now})
	return nil
}
