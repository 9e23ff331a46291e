package config

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/lastmile-dm/lastmile/dm/topic"
)

// Run releases the devices of running rollouts until ctx ends. Every node
// may call it: a lease in the store lets one node at a time do the work,
// and another takes over within a few ticks when that node stops.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	for {
		held, err := s.cfg.Store.AcquireLease(ctx, leaseName, s.cfg.Holder, 3*s.cfg.Tick)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("config rollout lease", "error", err)
		case held:
			if err := s.Step(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("config rollout step", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Step releases, for every running rollout, the devices its rate allows in
// one tick. Run calls it under the lease.
func (s *Service) Step(ctx context.Context) error {
	after := ""
	for {
		rs, err := s.cfg.Store.ListRollouts(ctx, after, MaxPageSize)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.State != RolloutRunning {
				continue
			}
			if err := s.release(ctx, r); err != nil {
				return fmt.Errorf("rollout %s: %w", r.ID, err)
			}
		}
		if len(rs) < MaxPageSize {
			return nil
		}
		after = rs[len(rs)-1].ID
	}
}

func (s *Service) release(ctx context.Context, r *Rollout) error {
	n := int(math.Ceil(float64(r.Rate) * s.cfg.Tick.Seconds()))
	n = min(max(n, 1), MaxPageSize)
	batch, err := s.cfg.Store.ListDeviceStatuses(ctx, r.ID, r.Cursor, n)
	if err != nil {
		return err
	}
	doc, err := s.document(ctx, r)
	if err != nil {
		return err
	}
	for _, st := range batch {
		if err := s.releaseDevice(ctx, r, st, doc); err != nil {
			return err
		}
		r.Cursor = st.DeviceID
	}
	if len(batch) < n {
		r.State = RolloutDone
		s.log.Info("config rollout released every device", "rollout", r.ID, "devices", r.Devices)
	}
	return s.cfg.Store.PutRollout(ctx, r)
}

func (s *Service) releaseDevice(ctx context.Context, r *Rollout, st *DeviceStatus, doc []byte) error {
	mu := s.lock(st.DeviceID)
	mu.Lock()
	defer mu.Unlock()
	now := s.cfg.Now().UTC()
	prev, err := s.cfg.Store.GetDeviceTarget(ctx, st.DeviceID)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return err
	case prev != r.ID:
		if old, err := s.cfg.Store.GetDeviceStatus(ctx, prev, st.DeviceID); err == nil && !Final(old.State) {
			old.State, old.Reason, old.UpdatedAt = StateSuperseded, "superseded by rollout "+r.ID, now
			if err := s.cfg.Store.PutDeviceStatuses(ctx, []*DeviceStatus{old}); err != nil {
				return err
			}
			if pr, err := s.cfg.Store.GetRollout(ctx, prev); err == nil {
				s.notify(Change{Rollout: pr, DeviceID: st.DeviceID, State: old.State, Reason: old.Reason, Time: now})
			}
		}
	}
	st.Released, st.UpdatedAt = true, now
	if err := s.cfg.Store.PutDeviceStatuses(ctx, []*DeviceStatus{st}); err != nil {
		return err
	}
	if err := s.cfg.Store.SetDeviceTarget(ctx, st.DeviceID, r.ID); err != nil {
		return err
	}
	s.notify(Change{Rollout: r, DeviceID: st.DeviceID, State: st.State, Reason: "released", Time: now})
	// A device that is offline gets nothing now and asks on connecting.
	if err := s.cfg.Messenger.Publish(topic.ConfigTopic(st.DeviceID, topic.ConfigDocument), doc); err != nil {
		s.log.Warn("publish config document", "device", st.DeviceID, "rollout", r.ID, "error", err)
	}
	return nil
}
