package grpcbuf

import (
	"testing"

	"google.golang.org/grpc/mem"
)

func TestInstalledAsDefault(t *testing.T) {
	t.Parallel()
	if mem.DefaultBufferPool() != Pool {
		t.Fatal("importing grpcbuf did not install its pool as gRPC's default")
	}
}

// TestGetZeroes: a buffer never shows bytes of an earlier message, even
// when the pool hands the same memory out again.
func TestGetZeroes(t *testing.T) {
	t.Parallel()
	for range 100 {
		bp := Pool.Get(64<<10 + 5)
		for i := range *bp {
			if (*bp)[i] != 0 {
				t.Fatalf("byte %d of a fresh buffer is %d", i, (*bp)[i])
			}
		}
		for i := range *bp {
			(*bp)[i] = 0xAA
		}
		if cap(*bp) != 128<<10 {
			t.Fatalf("a 64 KiB message took a %d-byte buffer", cap(*bp))
		}
		Pool.Put(bp)
	}
}
