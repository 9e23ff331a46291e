package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lastmile-dm/lastmile/dm/registry"
)

var (
	_ registry.Store         = (*Store)(nil)
	_ registry.PresenceStore = (*Store)(nil)
)

func (s *Store) devKey(id string) string  { return s.p + "dev:" + id }
func (s *Store) presKey(id string) string { return s.p + "pres:" + id }
func (s *Store) nodeKey(n string) string  { return s.p + "node:" + n }
func (s *Store) devIndex() string         { return s.p + "devs" }

var (
	// KEYS: device; ARGV: json, expected revision. 1 ok, 0 not found, -1 conflict.
	updateDeviceScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if tostring(cjson.decode(cur).revision) ~= ARGV[2] then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
return 1`)
	// KEYS: device, index, presence; ARGV: id, key prefix. 0 if not found.
	// The device's shadows (shadow.go) go with it.
	deleteDeviceScript = goredis.NewScript(`
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
local p = redis.call('GET', KEYS[3])
if p then
  local node = cjson.decode(p).node
  if node then redis.call('SREM', ARGV[2] .. 'node:' .. node, ARGV[1]) end
  redis.call('DEL', KEYS[3])
end
local shs = ARGV[2] .. 'shs:' .. ARGV[1]
for _, n in ipairs(redis.call('SMEMBERS', shs)) do
  redis.call('DEL', ARGV[2] .. 'sh:' .. ARGV[1] .. ':' .. n)
end
redis.call('DEL', shs)
return 1`)
	// KEYS: presence; ARGV: json, id, node, key prefix.
	setOnlineScript = goredis.NewScript(`
local old = redis.call('GET', KEYS[1])
if old then
  local node = cjson.decode(old).node
  if node and node ~= ARGV[3] then redis.call('SREM', ARGV[4] .. 'node:' .. node, ARGV[2]) end
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then redis.call('SADD', ARGV[4] .. 'node:' .. ARGV[3], ARGV[2]) end
return 1`)
	// KEYS: presence; ARGV: conn, at, reason, id, key prefix. 1 if marked offline.
	setOfflineScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local p = cjson.decode(cur)
if p.conn ~= ARGV[1] or not p.online then return 0 end
p.online = false
p.disconnected_at = ARGV[2]
p.disconnect_reason = ARGV[3]
redis.call('SET', KEYS[1], cjson.encode(p))
if p.node then redis.call('SREM', ARGV[5] .. 'node:' .. p.node, ARGV[4]) end
return 1`)
	// KEYS: node set; ARGV: node, at, reason, key prefix.
	resetNodeScript = goredis.NewScript(`
local ids = redis.call('SMEMBERS', KEYS[1])
for _, id in ipairs(ids) do
  local k = ARGV[4] .. 'pres:' .. id
  local cur = redis.call('GET', k)
  if cur then
    local p = cjson.decode(cur)
    if p.online and p.node == ARGV[1] then
      p.online = false
      p.disconnected_at = ARGV[2]
      p.disconnect_reason = ARGV[3]
      redis.call('SET', k, cjson.encode(p))
    end
  end
end
redis.call('DEL', KEYS[1])
return #ids`)
)

// CreateDevice stores a new device, or returns registry.ErrExists.
func (s *Store) CreateDevice(ctx context.Context, d *registry.Device) error {
	defer s.observe("create_device", time.Now())
	ok, err := s.create(ctx, s.devKey(d.ID), s.devIndex(), d.ID, d)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("device %s: %w", d.ID, registry.ErrExists)
	}
	return nil
}

// GetDevice returns the device or registry.ErrNotFound.
func (s *Store) GetDevice(ctx context.Context, id string) (*registry.Device, error) {
	defer s.observe("get_device", time.Now())
	var d registry.Device
	ok, err := s.getJSON(ctx, s.devKey(id), &d)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("device %s: %w", id, registry.ErrNotFound)
	}
	return &d, nil
}

// UpdateDevice replaces the device if its stored revision is expectRevision.
func (s *Store) UpdateDevice(ctx context.Context, d *registry.Device, expectRevision uint64) error {
	defer s.observe("update_device", time.Now())
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	n, err := updateDeviceScript.Run(ctx, s.rdb, []string{s.devKey(d.ID)}, b, fmt.Sprint(expectRevision)).Int()
	switch {
	case err != nil:
		return err
	case n == 0:
		return fmt.Errorf("device %s: %w", d.ID, registry.ErrNotFound)
	case n < 0:
		return fmt.Errorf("device %s is not at revision %d: %w", d.ID, expectRevision, registry.ErrConflict)
	}
	return nil
}

// DeleteDevice removes the device and its presence.
func (s *Store) DeleteDevice(ctx context.Context, id string) error {
	defer s.observe("delete_device", time.Now())
	n, err := deleteDeviceScript.Run(ctx, s.rdb, []string{s.devKey(id), s.devIndex(), s.presKey(id)}, id, s.p).Int()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("device %s: %w", id, registry.ErrNotFound)
	}
	return nil
}

// ListDevices returns up to limit devices with IDs after after, by ID.
func (s *Store) ListDevices(ctx context.Context, after string, limit int) ([]*registry.Device, error) {
	defer s.observe("list_devices", time.Now())
	ids, err := s.page(ctx, s.devIndex(), after, limit)
	if err != nil {
		return nil, err
	}
	return loadAll[registry.Device](ctx, s, s.p+"dev:", ids)
}

// SetOnline records a connection; the newest always wins.
func (s *Store) SetOnline(ctx context.Context, p registry.Presence) error {
	defer s.observe("set_online", time.Now())
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return setOnlineScript.Run(ctx, s.rdb, []string{s.presKey(p.DeviceID)}, b, p.DeviceID, p.Node, s.p).Err()
}

// SetOffline marks the device offline if conn is its current connection.
func (s *Store) SetOffline(ctx context.Context, id, conn string, at time.Time, reason string) (bool, error) {
	defer s.observe("set_offline", time.Now())
	n, err := setOfflineScript.Run(ctx, s.rdb, []string{s.presKey(id)}, conn, at.UTC().Format(time.RFC3339Nano), reason, id, s.p).Int()
	return n == 1, err
}

// GetPresence returns the presence of each ID that has one.
func (s *Store) GetPresence(ctx context.Context, ids []string) (map[string]registry.Presence, error) {
	defer s.observe("get_presence", time.Now())
	ps, err := loadAll[registry.Presence](ctx, s, s.p+"pres:", ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]registry.Presence, len(ps))
	for _, p := range ps {
		out[p.DeviceID] = *p
	}
	return out, nil
}

// ResetNode marks offline every device online on node.
func (s *Store) ResetNode(ctx context.Context, node string, at time.Time, reason string) error {
	defer s.observe("reset_node", time.Now())
	return resetNodeScript.Run(ctx, s.rdb, []string{s.nodeKey(node)}, node, at.UTC().Format(time.RFC3339Nano), reason, s.p).Err()
}
