package embedded

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/lastmile-dm/lastmile/dm/shadow"
)

var _ shadow.Store = (*Store)(nil)

// Shadows live under "sh/{deviceId}/{name}" (the classic shadow's name is
// ""), valued 8 bytes of big-endian version then the document. Device IDs
// and shadow names never contain '/', so a device's shadows are one prefix.
const prefixShadow = "sh/"

func shadowKey(id, name string) string { return prefixShadow + id + "/" + name }

// shadowLocks is the single writer path for shadows: a compare-and-set
// holds the stripe of its key, so the check and the write of one shadow
// never interleave, while writes of different shadows proceed (and
// group-commit in Pebble's WAL) in parallel instead of queueing on
// Store.mu. The stripes are shared by every Store in the process, which
// only makes them a little coarser.
var (
	shadowSeed  = maphash.MakeSeed()
	shadowLocks [512]sync.Mutex
)

func shadowLock(key string) *sync.Mutex {
	return &shadowLocks[maphash.String(shadowSeed, key)%uint64(len(shadowLocks))]
}

func decodeRecord(b []byte) (shadow.Record, error) {
	if len(b) < 8 {
		return shadow.Record{}, fmt.Errorf("shadow record of %d bytes is truncated", len(b))
	}
	return shadow.Record{Version: binary.BigEndian.Uint64(b), Doc: b[8:]}, nil
}

// GetShadow returns the shadow or shadow.ErrNotFound.
func (s *Store) GetShadow(_ context.Context, id, name string) (shadow.Record, error) {
	defer s.observe("get_shadow", time.Now())
	b, ok, err := s.get(shadowKey(id, name))
	if err != nil {
		return shadow.Record{}, err
	}
	if !ok {
		return shadow.Record{}, fmt.Errorf("shadow %s/%s: %w", id, name, shadow.ErrNotFound)
	}
	return decodeRecord(b)
}

// PutShadow stores r if the stored version is expect (0: absent).
func (s *Store) PutShadow(_ context.Context, id, name string, r shadow.Record, expect uint64) error {
	defer s.observe("put_shadow", time.Now())
	key := shadowKey(id, name)
	mu := shadowLock(key)
	mu.Lock()
	defer mu.Unlock()
	b, ok, err := s.get(key)
	if err != nil {
		return err
	}
	var cur uint64
	if ok {
		rec, err := decodeRecord(b)
		if err != nil {
			return err
		}
		cur = rec.Version
	}
	if cur != expect {
		return fmt.Errorf("shadow %s/%s is at version %d, not %d: %w", id, name, cur, expect, shadow.ErrConflict)
	}
	v := make([]byte, 8+len(r.Doc))
	binary.BigEndian.PutUint64(v, r.Version)
	copy(v[8:], r.Doc)
	return s.db.Set([]byte(key), v, writeOpts(true))
}

// DeleteShadow removes the shadow if its version is expect (0: any).
func (s *Store) DeleteShadow(_ context.Context, id, name string, expect uint64) error {
	defer s.observe("delete_shadow", time.Now())
	key := shadowKey(id, name)
	mu := shadowLock(key)
	mu.Lock()
	defer mu.Unlock()
	b, ok, err := s.get(key)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("shadow %s/%s: %w", id, name, shadow.ErrNotFound)
	}
	rec, err := decodeRecord(b)
	if err != nil {
		return err
	}
	if expect != 0 && rec.Version != expect {
		return fmt.Errorf("shadow %s/%s is at version %d, not %d: %w", id, name, rec.Version, expect, shadow.ErrConflict)
	}
	return s.db.Delete([]byte(key), writeOpts(true))
}

// ListShadows returns the names of the device's shadows in order.
func (s *Store) ListShadows(ctx context.Context, id string) ([]string, error) {
	defer s.observe("list_shadows", time.Now())
	var out []string
	err := s.scan(ctx, prefixShadow+id+"/", "", func(name string, _ []byte) error {
		out = append(out, name)
		return nil
	})
	return out, err
}
