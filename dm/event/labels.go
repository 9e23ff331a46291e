package event

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// LabelSource returns a device's labels. A device that does not exist has
// no labels: return (nil, nil). Safe for concurrent use.
type LabelSource interface {
	DeviceLabels(ctx context.Context, deviceID string) (map[string]string, error)
}

// labelLookupTimeout bounds one registry read.
const labelLookupTimeout = 5 * time.Second

// labelCache caches labels per device for a TTL; concurrent misses of one
// device share a single registry read.
type labelCache struct {
	src LabelSource
	ttl time.Duration
	max int
	now func() time.Time

	mu       sync.Mutex
	entries  map[string]labelEntry
	inflight map[string]*labelCall
}

type labelEntry struct {
	labels map[string]string
	at     time.Time
}

type labelCall struct {
	done   chan struct{}
	labels map[string]string
	err    error
}

func newLabelCache(src LabelSource, ttl time.Duration, maxEntries int, now func() time.Time) *labelCache {
	return &labelCache{src: src, ttl: ttl, max: maxEntries, now: now,
		entries: map[string]labelEntry{}, inflight: map[string]*labelCall{}}
}

// peek returns cached labels without I/O.
func (c *labelCache) peek(id string) (map[string]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || c.now().Sub(e.at) >= c.ttl {
		return nil, false
	}
	return e.labels, true
}

// get returns the labels, reading the source on a miss.
func (c *labelCache) get(ctx context.Context, id string) (map[string]string, error) {
	if l, ok := c.peek(id); ok {
		return l, nil
	}
	c.mu.Lock()
	call, ok := c.inflight[id]
	if !ok {
		call = &labelCall{done: make(chan struct{})}
		c.inflight[id] = call
		// The read is shared by every waiter, so it must not end with the
		// first waiter's context; fetch bounds it itself.
		go c.fetch(id, call) //nolint:gosec // see above
	}
	c.mu.Unlock()
	select {
	case <-call.done:
		return call.labels, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *labelCache) fetch(id string, call *labelCall) {
	ctx, cancel := context.WithTimeout(context.Background(), labelLookupTimeout)
	defer cancel()
	l, err := c.src.DeviceLabels(ctx, id)
	if err != nil {
		err = fmt.Errorf("%w: device %s: %w", ErrLabels, id, err)
	}
	c.mu.Lock()
	delete(c.inflight, id)
	if err == nil {
		if len(c.entries) >= c.max {
			// Evict about a tenth, arbitrarily (map order): simple and bounded.
			n := c.max / 10
			for k := range c.entries {
				if n <= 0 {
					break
				}
				delete(c.entries, k)
				n--
			}
		}
		c.entries[id] = labelEntry{labels: l, at: c.now()}
	}
	c.mu.Unlock()
	call.labels, call.err = l, err
	close(call.done)
}

// maxPrefetch bounds the registry reads prefetching runs at once.
const maxPrefetch = 64

// prefetch starts a read of id's labels unless one is running or too many
// are; it never blocks.
func (c *labelCache) prefetch(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.inflight[id]; ok || len(c.inflight) >= maxPrefetch {
		return
	}
	call := &labelCall{done: make(chan struct{})}
	c.inflight[id] = call
	go c.fetch(id, call)
}

// forget drops id's cached labels.
func (c *labelCache) forget(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}
