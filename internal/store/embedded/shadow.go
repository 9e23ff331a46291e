package embedded

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/lastmile-dm/lastmile/dm/shadow"
)

var _ shadow.Store = (*Store)(nil)

// Shadows live under "sh/{deviceId}/{name}" (the classic shadow's name is
// ""), valued 8 bytes of big-endian version then the document. Device IDs
// and shadow names never contain '/', so a device's shadows are one prefix.
const prefixShadow = "sh/"

func shadowKey(id, name string) string { return prefixShadow + id + "/" + name }

// shadowStripes is the single writer path for shadows: a compare-and-set
// holds the stripe of its key, so the check and the write of one shadow
// never interleave, while writes of different shadows proceed (and
// group-commit in Pebble's WAL) in parallel instead of queueing on
// Store.mu.
//
// Each stripe also remembers the version it last wrote for a bounded
// number of keys, so a compare-and-set need not read the record back from
// Pebble (a lookup through memtables and sstables that cost more than the
// write). Only this Store writes its database (Pebble locks the
// directory), and every shadow write holds the stripe, so a remembered
// version is the stored one; DeleteDevice, which removes shadows by range,
// bumps epoch after it commits, and a stripe forgets everything when it
// sees a new epoch.
type shadowStripes struct {
	seed    maphash.Seed
	epoch   atomic.Uint64
	stripes [512]shadowStripe
}

type shadowStripe struct {
	sync.Mutex
	epoch uint64
	vers  map[string]uint64
}

// versionsPerStripe bounds the remembered versions: 512 x 256 keys.
const versionsPerStripe = 256

// lock locks and returns the stripe of key, its memory current.
func (ss *shadowStripes) lock(key string) *shadowStripe {
	st := &ss.stripes[maphash.String(ss.seed, key)%uint64(len(ss.stripes))]
	st.Lock()
	if e := ss.epoch.Load(); st.epoch != e {
		clear(st.vers)
		st.epoch = e
	}
	return st
}

func (st *shadowStripe) remember(key string, v uint64) {
	if st.vers == nil {
		st.vers = make(map[string]uint64, versionsPerStripe)
	}
	if _, ok := st.vers[key]; !ok && len(st.vers) >= versionsPerStripe {
		for k := range st.vers { // evict one, arbitrarily
			delete(st.vers, k)
			break
		}
	}
	st.vers[key] = v
}

// version returns the stored version of the shadow at key (0: none), from
// the stripe's memory or else from Pebble. The caller holds st.
func (s *Store) version(st *shadowStripe, key string) (uint64, error) {
	if v, ok := st.vers[key]; ok {
		return v, nil
	}
	b, closer, err := s.db.Get([]byte(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	rec, err := decodeRecord(b)
	if err != nil {
		return 0, err
	}
	return rec.Version, nil
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
	st := s.shadows.lock(key)
	defer st.Unlock()
	cur, err := s.version(st, key)
	if err != nil {
		return err
	}
	if cur != expect {
		st.remember(key, cur)
		return fmt.Errorf("shadow %s/%s is at version %d, not %d: %w", id, name, cur, expect, shadow.ErrConflict)
	}
	v := make([]byte, 8+len(r.Doc))
	binary.BigEndian.PutUint64(v, r.Version)
	copy(v[8:], r.Doc)
	if err := s.db.Set([]byte(key), v, writeOpts(true)); err != nil {
		delete(st.vers, key) // it may or may not be written
		return err
	}
	st.remember(key, r.Version)
	return nil
}

// DeleteShadow removes the shadow if its version is expect (0: any).
func (s *Store) DeleteShadow(_ context.Context, id, name string, expect uint64) error {
	defer s.observe("delete_shadow", time.Now())
	key := shadowKey(id, name)
	st := s.shadows.lock(key)
	defer st.Unlock()
	cur, err := s.version(st, key)
	if err != nil {
		return err
	}
	if cur == 0 {
		return fmt.Errorf("shadow %s/%s: %w", id, name, shadow.ErrNotFound)
	}
	if expect != 0 && cur != expect {
		return fmt.Errorf("shadow %s/%s is at version %d, not %d: %w", id, name, cur, expect, shadow.ErrConflict)
	}
	delete(st.vers, key)
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
