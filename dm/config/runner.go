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
	n := max(int(math.Ceil(float64(r.Rate)*s.cfg.Tick.Seconds())), 1)
	for n > 0 {
		size := min(n, MaxPageSize)
		batch, err := s.cfg.Store.ListDeviceStatuses(ctx, r.ID, r.Cursor, size)
		if err != nil {
			return err
		}
		if len(batch) > 0 {
			doc, err := s.document(ctx, r)
			if err != nil {
				return err
			}
			if err := s.releaseBatch(ctx, r, batch, doc); err != nil {
				return err
			}
			r.Cursor = batch[len(batch)-1].DeviceID
		}
		if len(batch) < size {
			r.State = RolloutDone
			s.log.Info("config rollout released every device", "rollout", r.ID, "devices", r.Devices)
			break
		}
		n -= size
	}
	return s.cfg.Store.PutRollout(ctx, r)
}

// releaseBatch makes r the target of a batch of devices with two store
// writes (statuses, targets), marks what it takes over from earlier
// rollouts superseded, and publishes the document to the devices.
func (s *Service) releaseBatch(ctx context.Context, r *Rollout, batch []*DeviceStatus, doc []byte) error {
	ids := make([]string, len(batch))
	for i, st := range batch {
		ids[i] = st.DeviceID
	}
	unlock := s.lockAll(ids)
	defer unlock()
	now := s.cfg.Now().UTC()
	var writes []*DeviceStatus
	var changes []Change
	prevRollouts := map[string]*Rollout{}
	for _, st := range batch {
		prev, err := s.cfg.Store.GetDeviceTarget(ctx, st.DeviceID)
		switch {
		case errors.Is(err, ErrNotFound) || prev == r.ID:
		case err != nil:
			return err
		default:
			old, err := s.cfg.Store.GetDeviceStatus(ctx, prev, st.DeviceID)
			if err != nil || Final(old.State) {
				break
			}
			old.State, old.Reason, old.UpdatedAt = StateSuperseded, "superseded by rollout "+r.ID, now
			writes = append(writes, old)
			pr, ok := prevRollouts[prev]
			if !ok {
				if pr, err = s.cfg.Store.GetRollout(ctx, prev); err != nil {
					pr = &Rollout{ID: prev}
				}
				prevRollouts[prev] = pr
			}
			changes = append(changes, Change{Rollout: pr, DeviceID: st.DeviceID, State: old.State, Reason: old.Reason, Time: now})
		}
		st.Released, st.UpdatedAt = true, now
		writes = append(writes, st)
		changes = append(changes, Change{Rollout: r, DeviceID: st.DeviceID, State: st.State, Reason: "released", Time: now})
	}
	if err := s.cfg.Store.PutDeviceStatuses(ctx, writes); err != nil {
		return err
	}
	if err := s.cfg.Store.SetDeviceTargets(ctx, r.ID, ids); err != nil {
		return err
	}
	for _, c := range changes {
		s.notify(c)
	}
	// A device that is offline gets nothing now and asks on connecting.
	for _, id := range ids {
		if err := s.cfg.Messenger.Publish(topic.ConfigTopic(id, topic.ConfigDocument), doc); err != nil {
			s.log.Warn("publish config document", "device", id, "rollout", r.ID, "error", err)
		}
	}
	return nil
}
