// Package bufpool recycles byte buffers of bulk data paths (tunnel frames,
// gRPC messages) by size class, so that a path moving hundreds of
// megabytes a second does not allocate, zero and collect a fresh buffer
// for every message.
//
// Classes are the powers of two from 256 B to 4 MiB: a buffer of n bytes
// comes from the smallest class that holds it, so at most half of a pooled
// buffer is unused. Larger buffers are plain allocations.
package bufpool

import (
	"math/bits"
	"sync"
)

// Class bounds: buffers from 1<<minShift to 1<<maxShift bytes are pooled.
const (
	minShift = 8
	maxShift = 22
)

var classes [maxShift + 1]sync.Pool

// class returns the size class of an n-byte buffer (n > 0).
func class(n int) int {
	return max(minShift, bits.Len(uint(n-1))) //nolint:gosec // n > 0
}

// Get returns a buffer of length n. Its bytes are not zeroed: they are
// whatever an earlier user left, so the caller overwrites all n of them
// (or clears them) before anything reads the buffer.
func Get(n int) *[]byte {
	if n <= 0 {
		b := []byte{}
		return &b
	}
	c := class(n)
	if c > maxShift {
		b := make([]byte, n)
		return &b
	}
	if bp, ok := classes[c].Get().(*[]byte); ok {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, 1<<c)
	return &b
}

// Put recycles a buffer from Get (or a reslice of it with the same
// capacity). The pool keeps bp itself: neither the buffer nor the variable
// bp points to may be used afterwards. Buffers whose capacity is not a
// class size are left to the garbage collector.
func Put(bp *[]byte) {
	c := cap(*bp)
	if c < 1<<minShift || c > 1<<maxShift || c&(c-1) != 0 {
		return
	}
	*bp = (*bp)[:0]
	classes[bits.Len(uint(c))-1].Put(bp) //nolint:gosec // c > 0
}
