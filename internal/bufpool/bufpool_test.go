package bufpool

import "testing"

func TestSizeClasses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ n, cap int }{
		{1, 256}, {256, 256}, {257, 512}, {64 << 10, 64 << 10}, {64<<10 + 4, 128 << 10},
		{192<<10 + 14, 256 << 10}, {4 << 20, 4 << 20}, {4<<20 + 1, 4<<20 + 1}, {0, 0},
	} {
		bp := Get(c.n)
		if len(*bp) != c.n || cap(*bp) != c.cap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", c.n, len(*bp), cap(*bp), c.n, c.cap)
		}
		Put(bp)
	}
}

// TestRecycles: a buffer put back is handed out again for any size of its
// class, resliced to the size asked for; a foreign size is not pooled.
func TestRecycles(t *testing.T) {
	// Not parallel: sync.Pool keeps per-P caches, and another test's Gets
	// could take the buffer.
	bp := Get(3000)
	(*bp)[0] = 42
	Put(bp)
	got := Get(2100)
	if len(*got) != 2100 || cap(*got) != 4096 {
		t.Fatalf("Get(2100) after Put: len %d cap %d", len(*got), cap(*got))
	}
	if got == bp && (*got)[0] != 42 {
		t.Fatal("recycled buffer lost its bytes (Get must not clear)")
	}
	odd := make([]byte, 1000)
	Put(&odd) // capacity 1000 is no class: ignored, no panic
	if b := Get(1000); cap(*b) != 1024 {
		t.Fatalf("Get(1000) cap %d after a foreign Put, want 1024", cap(*b))
	}
}
