// Package backoff computes reconnect delays: exponential growth between
// configurable bounds with jitter, so a fleet that lost its link at the same
// moment (a power cut, a platform restart) does not come back all at once.
//
// Time comes from a Clock, so tests drive the waits without sleeping.
package backoff

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Clock is the time source of the waits. Real code uses RealClock; tests
// pass a clock they advance by hand.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer firing once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer a wait needs.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// NewTimer returns a real timer.
func (RealClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// Config bounds the delays.
type Config struct {
	// Min is the delay before the first retry (before jitter). Default 1s.
	Min time.Duration
	// Max caps the delay (before jitter). Default 2m.
	Max time.Duration
	// Multiplier grows the delay after each failure. Default 2.
	Multiplier float64
	// Jitter is the fraction of each delay that is random, in [0, 1]:
	// the delay is uniform in [d*(1-Jitter), d]. Default 0.5. 0 makes every
	// device retry at the same instants, which is what jitter prevents.
	Jitter float64
	// Clock defaults to RealClock.
	Clock Clock
	// Rand returns a float in [0, 1); default math/rand/v2. Tests fix it.
	Rand func() float64
}

// ErrBadConfig is returned for bounds that cannot work.
var ErrBadConfig = errors.New("bad backoff configuration")

// CheckAndSetDefaults validates c and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Min == 0 {
		c.Min = time.Second
	}
	if c.Max == 0 {
		c.Max = 2 * time.Minute
	}
	if c.Multiplier == 0 {
		c.Multiplier = 2
	}
	switch {
	case c.Min < 0 || c.Max < 0:
		return fmt.Errorf("%w: negative delay", ErrBadConfig)
	case c.Max < c.Min:
		return fmt.Errorf("%w: max %s below min %s", ErrBadConfig, c.Max, c.Min)
	case c.Multiplier < 1:
		return fmt.Errorf("%w: multiplier %v below 1", ErrBadConfig, c.Multiplier)
	case c.Jitter < 0 || c.Jitter > 1:
		return fmt.Errorf("%w: jitter %v outside [0, 1]", ErrBadConfig, c.Jitter)
	}
	if c.Clock == nil {
		c.Clock = RealClock{}
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	return nil
}

// Backoff is the state of one reconnect loop. Safe for concurrent use.
type Backoff struct {
	cfg Config

	mu       sync.Mutex
	attempts int
}

// New returns a Backoff; the first Next is about Min.
func New(cfg Config) (*Backoff, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Backoff{cfg: cfg}, nil
}

// Next returns the delay before the next attempt and counts a failure.
func (b *Backoff) Next() time.Duration {
	b.mu.Lock()
	n := b.attempts
	b.attempts++
	b.mu.Unlock()
	d := float64(b.cfg.Min)
	for i := 0; i < n && d < float64(b.cfg.Max); i++ {
		d *= b.cfg.Multiplier
	}
	if d > float64(b.cfg.Max) {
		d = float64(b.cfg.Max)
	}
	d -= d * b.cfg.Jitter * b.cfg.Rand()
	return time.Duration(d)
}

// Attempts returns the failures counted since the last Reset.
func (b *Backoff) Attempts() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attempts
}

// Reset starts over at Min, after a connection that worked.
func (b *Backoff) Reset() {
	b.mu.Lock()
	b.attempts = 0
	b.mu.Unlock()
}

// Wait blocks for Next() on the clock, or until ctx ends. It returns the
// delay it waited, and ctx.Err() if cut short.
func (b *Backoff) Wait(ctx context.Context) (time.Duration, error) {
	d := b.Next()
	t := b.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return d, nil
	case <-ctx.Done():
		return d, ctx.Err()
	}
}
