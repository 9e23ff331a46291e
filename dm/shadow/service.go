package shadow

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"encoding/json"

	"github.com/lastmile-dm/lastmile/dm/registry"
)

// Record is a stored shadow: its version and its encoded Document.
type Record struct {
	Version uint64
	Doc     []byte
}

// Store persists shadows. Implementations are safe for concurrent use and
// apply each call atomically. The classic shadow's name is "".
type Store interface {
	// GetShadow returns the shadow, or ErrNotFound.
	GetShadow(ctx context.Context, deviceID, name string) (Record, error)
	// PutShadow stores r if the shadow's stored version is expect (0: the
	// shadow must not exist), else returns ErrConflict. This compare-and-set
	// is what makes concurrent writers on several nodes safe.
	PutShadow(ctx context.Context, deviceID, name string, r Record, expect uint64) error
	// DeleteShadow removes the shadow if its version is expect (0: any
	// version): ErrNotFound if there is none, ErrConflict on a mismatch.
	DeleteShadow(ctx context.Context, deviceID, name string, expect uint64) error
	// ListShadows returns the names of the device's shadows in ascending
	// order; the classic shadow, if it exists, is "" and comes first.
	ListShadows(ctx context.Context, deviceID string) ([]string, error)
}

// Change is one accepted update or delete, as told to a Notifier.
type Change struct {
	DeviceID string
	// Name is "" for the classic shadow.
	Name    string
	Deleted bool
	// Document is the new document; for a delete, the last one before it.
	// The receiver must not modify it (nor Previous).
	Document *Document
	// Previous is the document before an update; nil if the update
	// created the shadow, and for a delete.
	Previous *Document
	// Delta is what desired asks that reported does not show yet; nil if
	// nothing (and always nil for a delete).
	Delta Object

	res *Result
}

// Documents returns the update/documents payload of an update (nil for a
// delete), reusing the stored encodings.
func (c Change) Documents(clientToken string) []byte {
	if c.Deleted || c.res == nil {
		return nil
	}
	return UpdateDocuments(c.res, clientToken)
}

// Notifier learns of every accepted change, after the store committed it
// and in commit order per shadow. ShadowChanged runs on the writer's
// goroutine: it must return quickly and never block (queue, or drop and
// count). The event stream implements it.
type Notifier interface {
	ShadowChanged(c Change)
}

// Config configures a Service.
type Config struct {
	Store Store
	// Devices is the registry: the API may only touch shadows of registered
	// devices, and QueryDevices walks it.
	Devices  registry.Store
	Notifier Notifier
	Limits   Limits
	Logger   *slog.Logger
	Now      func() time.Time
}

// CheckAndSetDefaults validates cfg and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Store == nil || c.Devices == nil {
		return errors.New("shadow: Store and Devices are required")
	}
	if err := c.Limits.CheckAndSetDefaults(); err != nil {
		return err
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Service is the shadow domain logic. It is safe for concurrent use.
type Service struct {
	cfg   Config
	log   *slog.Logger
	seed  maphash.Seed
	locks [256]stripe

	nmu       sync.RWMutex
	notifiers []Notifier
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With("component", "shadow"), seed: maphash.MakeSeed()}
	if cfg.Notifier != nil {
		s.notifiers = []Notifier{cfg.Notifier}
	}
	return s, nil
}

// Limits returns the limits in force.
func (s *Service) Limits() Limits { return s.cfg.Limits }

// AddNotifier adds a Notifier after construction (the MQTT side and the
// event stream are built after the service). Notifiers are called in the
// order they were added.
func (s *Service) AddNotifier(n Notifier) {
	s.nmu.Lock()
	s.notifiers = append(s.notifiers, n)
	s.nmu.Unlock()
}

func (s *Service) notify(c Change) {
	s.nmu.RLock()
	ns := s.notifiers
	s.nmu.RUnlock()
	for _, n := range ns {
		n.ShadowChanged(c)
	}
}

// stripe serialises writers of the shadows that hash to it on this node,
// so they do not spin on the store's compare-and-set (which still guards
// against other nodes), and caches the last document each wrote: the next
// update of that shadow starts from it without reading and decoding the
// store's copy. A cached document can only be stale if another node (or a
// device deletion) wrote meanwhile; the store's compare-and-set then fails
// and the update reloads.
type stripe struct {
	sync.Mutex
	cache map[string]cached
}

type cached struct {
	doc *Document
	raw []byte
}

// cachePerStripe bounds the write cache: 256 stripes x 64 documents.
const cachePerStripe = 64

func (st *stripe) get(key string) (cached, bool) {
	c, ok := st.cache[key]
	return c, ok
}

func (st *stripe) put(key string, c cached) {
	if st.cache == nil {
		st.cache = make(map[string]cached, cachePerStripe)
	}
	if _, ok := st.cache[key]; !ok && len(st.cache) >= cachePerStripe {
		for k := range st.cache { // evict one, arbitrarily
			delete(st.cache, k)
			break
		}
	}
	st.cache[key] = c
}

func (s *Service) lock(id, name string) (*stripe, string) {
	key := id + "/" + name
	return &s.locks[maphash.String(s.seed, key)%uint64(len(s.locks))], key
}

func checkName(name string) error {
	if name != "" && !ValidName(name) {
		return fmt.Errorf("%w: shadow name %q: want 1-%d characters of [A-Za-z0-9:_-]", ErrInvalid, name, MaxNameLen)
	}
	return nil
}

func label(id, name string) string {
	if name == "" {
		return id + " (classic)"
	}
	return id + "/" + name
}

// Get returns the shadow, or ErrNotFound.
func (s *Service) Get(ctx context.Context, deviceID, name string) (*Document, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	r, err := s.cfg.Store.GetShadow(ctx, deviceID, name)
	if err != nil {
		return nil, fmt.Errorf("shadow %s: %w", label(deviceID, name), err)
	}
	return DecodeDocument(r.Doc)
}

// Result is the outcome of an accepted update.
type Result struct {
	// Previous is nil when the update created the shadow.
	Previous *Document
	Current  *Document
	// Delta and DeltaMeta after the update; nil if desired is satisfied.
	Delta, DeltaMeta Object
	// Replayed is true when the update was a retry of the one that made
	// Current (same clientToken and version) and changed nothing.
	Replayed bool

	// The stored encodings of Previous and Current, when known, so the
	// documents payload need not encode them again.
	previousRaw, currentRaw []byte
}

// maxCASRetries bounds retries of a compare-and-set lost to another node.
const maxCASRetries = 32

// Update applies u to the shadow, creating it if needed.
func (s *Service) Update(ctx context.Context, deviceID, name string, u *Update) (*Result, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	st, key := s.lock(deviceID, name)
	st.Lock()
	defer st.Unlock()
	for range maxCASRetries {
		_, fromCache := st.get(key)
		res, err := s.tryUpdate(ctx, st, key, deviceID, name, u)
		if errors.Is(err, errLostRace) || (err != nil && fromCache) {
			// Lost to another node, or refused on a cached copy that may
			// be stale: decide again on the store's copy.
			delete(st.cache, key)
			continue
		}
		if err != nil {
			return nil, err
		}
		if !res.Replayed {
			// Still under the shadow's lock: notifiers see versions in order.
			s.notify(Change{DeviceID: deviceID, Name: name, Document: res.Current, Previous: res.Previous, Delta: res.Delta, res: res})
		}
		return res, nil
	}
	return nil, fmt.Errorf("shadow %s: too much contention: %w", label(deviceID, name), ErrConflict)
}

var errLostRace = errors.New("lost compare-and-set race")

func (s *Service) tryUpdate(ctx context.Context, st *stripe, key, deviceID, name string, u *Update) (*Result, error) {
	var prev *Document
	var prevRaw []byte
	cur := &Document{}
	var r Record
	var err error
	if c, ok := st.get(key); ok {
		r = Record{Version: c.doc.Version, Doc: c.raw}
		prev = c.doc
	} else {
		r, err = s.cfg.Store.GetShadow(ctx, deviceID, name)
		if err == nil {
			prev, err = DecodeDocument(r.Doc)
			if err != nil {
				return nil, err
			}
		}
	}
	switch {
	case err == nil:
		prevRaw = r.Doc
		c := *prev // merge copies what it changes: prev stays intact
		cur = &c
	case errors.Is(err, ErrNotFound):
		if name != "" {
			names, err := s.cfg.Store.ListShadows(ctx, deviceID)
			if err != nil {
				return nil, fmt.Errorf("shadow %s: %w", label(deviceID, name), err)
			}
			n := len(names)
			if n > 0 && names[0] == "" {
				n--
			}
			if n >= s.cfg.Limits.MaxNamedShadows {
				return nil, fmt.Errorf("%w: device %s has %d named shadows, the limit", ErrInvalid, deviceID, n)
			}
		}
	default:
		return nil, fmt.Errorf("shadow %s: %w", label(deviceID, name), err)
	}
	if u.Version != nil && *u.Version != cur.Version {
		if prev != nil && u.ClientToken != "" && prev.ClientToken == u.ClientToken && prev.Version == *u.Version+1 {
			delta, dmeta := prev.Delta()
			return &Result{Current: prev, Delta: delta, DeltaMeta: dmeta, Replayed: true}, nil
		}
		return nil, fmt.Errorf("%w: shadow %s is at version %d, the update expects %d", ErrConflict, label(deviceID, name), cur.Version, *u.Version)
	}
	now := s.cfg.Now()
	ts := json.Number(strconv.FormatInt(now.Unix(), 10))
	if u.ClearDesired {
		cur.State.Desired, cur.Metadata.Desired = nil, nil
	}
	if u.ClearReported {
		cur.State.Reported, cur.Metadata.Reported = nil, nil
	}
	if u.Desired != nil {
		cur.State.Desired, cur.Metadata.Desired = merge(cur.State.Desired, cur.Metadata.Desired, u.Desired, ts)
	}
	if u.Reported != nil {
		cur.State.Reported, cur.Metadata.Reported = merge(cur.State.Reported, cur.Metadata.Reported, u.Reported, ts)
	}
	if len(cur.State.Desired) == 0 {
		cur.State.Desired, cur.Metadata.Desired = nil, nil
	}
	if len(cur.State.Reported) == 0 {
		cur.State.Reported, cur.Metadata.Reported = nil, nil
	}
	for _, half := range []Object{cur.State.Desired, cur.State.Reported} {
		if d := depth(half); d > s.cfg.Limits.MaxDepth {
			return nil, fmt.Errorf("%w: the merged state would be nested %d levels deep, the limit is %d", ErrInvalid, d, s.cfg.Limits.MaxDepth)
		}
	}
	expect := cur.Version
	cur.Version++
	cur.Timestamp = now.Unix()
	cur.ClientToken = u.ClientToken
	b, stateLen, err := cur.encode()
	if err != nil {
		return nil, err
	}
	if stateLen > s.cfg.Limits.MaxDocumentBytes {
		return nil, fmt.Errorf("%w: the merged state would be %d bytes, the limit is %d", ErrTooLarge, stateLen, s.cfg.Limits.MaxDocumentBytes)
	}
	err = s.cfg.Store.PutShadow(ctx, deviceID, name, Record{Version: cur.Version, Doc: b}, expect)
	if errors.Is(err, ErrConflict) {
		if u.Version != nil {
			return nil, fmt.Errorf("%w: shadow %s changed on another node; it is no longer at version %d", ErrConflict, label(deviceID, name), expect)
		}
		return nil, errLostRace
	}
	if err != nil {
		return nil, fmt.Errorf("shadow %s: %w", label(deviceID, name), err)
	}
	st.put(key, cached{doc: cur, raw: b})
	delta, dmeta := cur.Delta()
	return &Result{Previous: prev, Current: cur, Delta: delta, DeltaMeta: dmeta, previousRaw: prevRaw, currentRaw: b}, nil
}

// Delete removes the shadow; with version set, only if it is at that
// version. It returns the deleted document.
func (s *Service) Delete(ctx context.Context, deviceID, name string, version *uint64) (*Document, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	st, key := s.lock(deviceID, name)
	st.Lock()
	defer st.Unlock()
	delete(st.cache, key)
	for range maxCASRetries {
		r, err := s.cfg.Store.GetShadow(ctx, deviceID, name)
		if err != nil {
			return nil, fmt.Errorf("shadow %s: %w", label(deviceID, name), err)
		}
		if version != nil && r.Version != *version {
			return nil, fmt.Errorf("%w: shadow %s is at version %d, the delete expects %d", ErrConflict, label(deviceID, name), r.Version, *version)
		}
		doc, err := DecodeDocument(r.Doc)
		if err != nil {
			return nil, err
		}
		err = s.cfg.Store.DeleteShadow(ctx, deviceID, name, r.Version)
		if errors.Is(err, ErrConflict) && version == nil {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("shadow %s: %w", label(deviceID, name), err)
		}
		s.notify(Change{DeviceID: deviceID, Name: name, Deleted: true, Document: doc})
		return doc, nil
	}
	return nil, fmt.Errorf("shadow %s: too much contention: %w", label(deviceID, name), ErrConflict)
}

// List returns the names of the device's shadows ("" is the classic one).
func (s *Service) List(ctx context.Context, deviceID string) ([]string, error) {
	names, err := s.cfg.Store.ListShadows(ctx, deviceID)
	if err != nil {
		return nil, fmt.Errorf("list shadows of %s: %w", deviceID, err)
	}
	return names, nil
}

// CheckDevice returns ErrNotFound (wrapped) unless the device is registered.
func (s *Service) CheckDevice(ctx context.Context, deviceID string) error {
	if _, err := s.cfg.Devices.GetDevice(ctx, deviceID); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return fmt.Errorf("%w: device %s", ErrNotFound, deviceID)
		}
		return err
	}
	return nil
}
