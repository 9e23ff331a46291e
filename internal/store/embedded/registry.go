package embedded

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/lastmile-dm/lastmile/dm/registry"
)

var (
	_ registry.Store         = (*Store)(nil)
	_ registry.PresenceStore = (*Store)(nil)
)

const (
	prefixDevice   = "d/"
	prefixPresence = "p/"
)

// CreateDevice stores a new device, or returns registry.ErrExists.
func (s *Store) CreateDevice(_ context.Context, d *registry.Device) error {
	defer s.observe("create_device", time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok, err := s.get(prefixDevice + d.ID); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("device %s: %w", d.ID, registry.ErrExists)
	}
	return s.putJSON(prefixDevice+d.ID, d, true)
}

// GetDevice returns the device or registry.ErrNotFound.
func (s *Store) GetDevice(_ context.Context, id string) (*registry.Device, error) {
	defer s.observe("get_device", time.Now())
	var d registry.Device
	ok, err := s.getJSON(prefixDevice+id, &d)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("device %s: %w", id, registry.ErrNotFound)
	}
	return &d, nil
}

// UpdateDevice replaces the device if its stored revision is expectRevision.
func (s *Store) UpdateDevice(_ context.Context, d *registry.Device, expectRevision uint64) error {
	defer s.observe("update_device", time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	var cur registry.Device
	ok, err := s.getJSON(prefixDevice+d.ID, &cur)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("device %s: %w", d.ID, registry.ErrNotFound)
	}
	if cur.Revision != expectRevision {
		return fmt.Errorf("device %s is at revision %d, not %d: %w", d.ID, cur.Revision, expectRevision, registry.ErrConflict)
	}
	return s.putJSON(prefixDevice+d.ID, d, true)
}

// DeleteDevice removes the device and its presence.
func (s *Store) DeleteDevice(_ context.Context, id string) error {
	defer s.observe("delete_device", time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok, err := s.get(prefixDevice + id); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("device %s: %w", id, registry.ErrNotFound)
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Delete([]byte(prefixDevice+id), nil)
	_ = b.Delete([]byte(prefixPresence+id), nil)
	shadows := []byte(prefixShadow + id + "/")
	_ = b.DeleteRange(shadows, prefixEnd(shadows), nil)
	err := b.Commit(pebble.Sync)
	s.shadows.epoch.Add(1) // the stripes forget the versions they remember
	return err
}

// ListDevices returns up to limit devices with IDs after after, by ID.
func (s *Store) ListDevices(ctx context.Context, after string, limit int) ([]*registry.Device, error) {
	defer s.observe("list_devices", time.Now())
	var out []*registry.Device
	lower := ""
	if after != "" {
		lower = after + "\x00"
	}
	errFull := fmt.Errorf("full")
	err := s.scan(ctx, prefixDevice, lower, func(_ string, v []byte) error {
		if len(out) >= limit {
			return errFull
		}
		var d registry.Device
		if err := json.Unmarshal(v, &d); err != nil {
			return err
		}
		out = append(out, &d)
		return nil
	})
	if err != nil && err != errFull { //nolint:errorlint // our own sentinel, never wrapped
		return nil, err
	}
	return out, nil
}

// SetOnline records a connection; the newest always wins because the broker
// reports connections of one client in order.
func (s *Store) SetOnline(_ context.Context, p registry.Presence) error {
	defer s.observe("set_online", time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	// Not synced: after a crash ResetNode marks this node's devices offline anyway.
	return s.putJSON(prefixPresence+p.DeviceID, p, false)
}

// SetOffline marks the device offline if conn is its current connection.
func (s *Store) SetOffline(_ context.Context, id, conn string, at time.Time, reason string) (bool, error) {
	defer s.observe("set_offline", time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	var p registry.Presence
	ok, err := s.getJSON(prefixPresence+id, &p)
	if err != nil || !ok || p.Conn != conn || !p.Online {
		return false, err
	}
	p.Online, p.DisconnectedAt, p.DisconnectReason = false, at, reason
	return true, s.putJSON(prefixPresence+id, p, false)
}

// GetPresence returns the presence of each ID that has one.
func (s *Store) GetPresence(_ context.Context, ids []string) (map[string]registry.Presence, error) {
	defer s.observe("get_presence", time.Now())
	out := make(map[string]registry.Presence, len(ids))
	for _, id := range ids {
		var p registry.Presence
		ok, err := s.getJSON(prefixPresence+id, &p)
		if err != nil {
			return nil, err
		}
		if ok {
			out[id] = p
		}
	}
	return out, nil
}

// ResetNode marks offline every device online on node.
func (s *Store) ResetNode(ctx context.Context, node string, at time.Time, reason string) error {
	defer s.observe("reset_node", time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	err := s.scan(ctx, prefixPresence, "", func(id string, v []byte) error {
		var p registry.Presence
		if err := json.Unmarshal(v, &p); err != nil {
			return err
		}
		if !p.Online || p.Node != node {
			return nil
		}
		p.Online, p.DisconnectedAt, p.DisconnectReason = false, at, reason
		nv, err := json.Marshal(p)
		if err != nil {
			return err
		}
		return b.Set([]byte(prefixPresence+id), nv, nil)
	})
	if err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}
