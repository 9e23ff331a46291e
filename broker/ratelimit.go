package broker

import (
	"net"
	"sync"
	"time"
)

// rateLimiter is a token bucket per source IP. Idle buckets are forgotten
// when the table grows, so a scan from many addresses cannot grow it
// without bound.
type rateLimiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

const maxBuckets = 100_000

func newRateLimiter(rate float64, burst int, now func() time.Time) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}}
}

func (r *rateLimiter) allow(ip string) bool {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[ip]
	if b == nil {
		if len(r.buckets) >= maxBuckets {
			r.sweep(now)
		}
		b = &bucket{tokens: r.burst, last: now}
		r.buckets[ip] = b
	}
	b.tokens = min(r.burst, b.tokens+now.Sub(b.last).Seconds()*r.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep drops buckets that have refilled: they are equivalent to new ones.
func (r *rateLimiter) sweep(now time.Time) {
	for ip, b := range r.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*r.rate >= r.burst {
			delete(r.buckets, ip)
		}
	}
}

func hostOf(remote string) string {
	h, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return h
}
