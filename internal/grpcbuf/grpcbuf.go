// Package grpcbuf gives gRPC a buffer pool that fits bulk streams such as
// the tunnel's Connect: importing it installs the pool as gRPC's default
// for every client and server of the process (encoding of messages,
// transport reads, received messages).
//
// gRPC's own default pool has classes of 256 B, 4, 16 and 32 KiB and
// 1 MiB, and zeroes a buffer's whole capacity on every Get. A 64 KiB
// tunnel message (plus its few bytes of protobuf framing) therefore took a
// 1 MiB buffer and cleared it: sixteen bytes zeroed for every byte
// carried, the largest single cost in the tunnel's CPU profile on both
// ends of the gRPC stream (docs/performance.md, "Tunnel"). This pool
// (package bufpool) has a class for every power of two up to 4 MiB and
// zeroes only the length asked for, so a buffer never shows bytes of an
// earlier message and a message costs one clear of its own size.
package grpcbuf

import (
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"

	"github.com/lastmile-dm/lastmile/internal/bufpool"
)

// Pool is the pool installed as gRPC's default.
var Pool mem.BufferPool = pool{}

func init() {
	experimental.SetDefaultBufferPool(Pool)
}

type pool struct{}

var _ mem.BufferPool = pool{}

// Get returns a zeroed buffer of length n.
func (pool) Get(n int) *[]byte {
	bp := bufpool.Get(n)
	clear(*bp)
	return bp
}

// Put recycles a buffer from Get.
func (pool) Put(bp *[]byte) { bufpool.Put(bp) }
