package backoff

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/internal/poll"
)

func TestDelaysGrowAndCap(t *testing.T) {
	t.Parallel()
	b, err := New(Config{Min: time.Second, Max: 30 * time.Second, Multiplier: 2, Jitter: 0, Rand: func() float64 { return 0.999 }})
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i, w := range want {
		if got := b.Next(); got != w*time.Second {
			t.Fatalf("attempt %d: delay %s, want %s", i, got, w*time.Second)
		}
	}
	b.Reset()
	if got := b.Next(); got != time.Second {
		t.Fatalf("after Reset: %s, want 1s", got)
	}
}

func TestJitterStaysInBounds(t *testing.T) {
	t.Parallel()
	for _, r := range []float64{0, 0.25, 0.5, 0.999} {
		b, err := New(Config{Min: 10 * time.Second, Max: time.Minute, Jitter: 0.5, Rand: func() float64 { return r }})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			base := 10 * time.Second << i
			if base > time.Minute {
				base = time.Minute
			}
			got := b.Next()
			if got > base || got < base/2 {
				t.Fatalf("rand %v attempt %d: %s outside [%s, %s]", r, i, got, base/2, base)
			}
		}
	}
}

// TestJitterSpreadsAFleet: a thousand devices reconnecting after the same
// outage do not pick the same instant.
func TestJitterSpreadsAFleet(t *testing.T) {
	t.Parallel()
	seen := map[time.Duration]int{}
	for range 1000 {
		b, err := New(Config{Min: time.Second, Max: time.Minute, Jitter: 1})
		if err != nil {
			t.Fatal(err)
		}
		b.Next()
		seen[b.Next().Truncate(100*time.Millisecond)]++
	}
	for d, n := range seen {
		if n > 200 {
			t.Fatalf("%d of 1000 devices chose %s: jitter does not spread them", n, d)
		}
	}
}

func TestWaitUsesTheClock(t *testing.T) {
	t.Parallel()
	clock := NewManualClock(time.Unix(0, 0))
	b, err := New(Config{Min: time.Second, Max: 8 * time.Second, Jitter: 0, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		done := make(chan time.Duration, 1)
		go func() {
			d, err := b.Wait(context.Background())
			if err != nil {
				t.Error(err)
			}
			done <- d
		}()
		waitUntil(t, func() bool { return clock.Waiters() == 1 })
		clock.Advance(want - time.Millisecond)
		select {
		case <-done:
			t.Fatalf("attempt %d: Wait returned %s early", i, want-time.Millisecond)
		default:
		}
		clock.Advance(time.Millisecond)
		if got := <-done; got != want {
			t.Fatalf("attempt %d waited %s, want %s", i, got, want)
		}
	}
	if b.Attempts() != 5 {
		t.Fatalf("attempts %d, want 5", b.Attempts())
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	clock := NewManualClock(time.Unix(0, 0))
	b, err := New(Config{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := b.Wait(ctx); done <- err }()
	waitUntil(t, func() bool { return clock.Waiters() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel: %v", err)
	}
	if clock.Waiters() != 0 {
		t.Fatal("the timer of a cancelled wait was not stopped")
	}
}

func TestBadConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{Min: time.Minute, Max: time.Second},
		{Multiplier: 0.5},
		{Jitter: 1.5},
		{Min: -time.Second},
	} {
		if _, err := New(c); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: %v, want ErrBadConfig", c, err)
		}
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	poll.Until(t, 5*time.Second, "the condition", cond)
}
