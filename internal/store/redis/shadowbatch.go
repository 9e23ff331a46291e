package redis

import (
	"context"
	"errors"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Shadow writes are pipelined: concurrent PutShadow calls are sent to
// Redis as one pipeline of EVALSHA commands, so they cost one round trip
// and, with appendfsync always, share one AOF fsync (Redis syncs once per
// event-loop pass, before replying). Each script still runs atomically on
// its own; a call returns only once Redis answered for it, so nothing is
// acknowledged that Redis has not made durable by its own settings.
//
// A few batchers take turns: while one waits for Redis, the next gathers
// the calls that arrived meanwhile. A lone call goes out at once.
const (
	shadowBatchers  = 4
	shadowBatchMax  = 256
	shadowBatchWait = 10 * time.Second
)

var errStoreClosed = errors.New("redis store: closed")

type putReq struct {
	ctx  context.Context
	keys []string
	args []any
	n    int64
	err  error
	done chan struct{}
}

type shadowBatcher struct {
	rdb  *goredis.Client
	reqs chan *putReq
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func newShadowBatcher(rdb *goredis.Client) *shadowBatcher {
	b := &shadowBatcher{rdb: rdb, reqs: make(chan *putReq), stop: make(chan struct{})}
	for range shadowBatchers {
		b.wg.Go(b.loop)
	}
	return b
}

func (b *shadowBatcher) close() {
	b.once.Do(func() {
		close(b.stop)
		b.wg.Wait()
	})
}

// put runs putShadowScript with keys and args in the next pipeline and
// returns its integer answer.
func (b *shadowBatcher) put(ctx context.Context, keys []string, args ...any) (int64, error) {
	r := &putReq{ctx: ctx, keys: keys, args: args, done: make(chan struct{})}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-b.stop:
		return 0, errStoreClosed
	}
	// Once handed over, the call's outcome is Redis's answer: wait for it
	// (the batch has its own deadline) rather than guess on ctx.
	<-r.done
	return r.n, r.err
}

func (b *shadowBatcher) loop() {
	batch := make([]*putReq, 0, shadowBatchMax)
	for {
		select {
		case <-b.stop:
			return
		case r := <-b.reqs:
			batch = append(batch[:0], r)
		}
	gather:
		for len(batch) < shadowBatchMax {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		b.exec(batch)
		clear(batch)
	}
}

func (b *shadowBatcher) exec(batch []*putReq) {
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
	}()
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err // not sent: nothing happened
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shadowBatchWait)
	defer cancel()
	if len(live) == 1 {
		r := live[0]
		r.n, r.err = putShadowScript.Run(ctx, b.rdb, r.keys, r.args...).Int64()
		return
	}
	pipe := b.rdb.Pipeline()
	cmds := make([]*goredis.Cmd, len(live))
	for i, r := range live {
		cmds[i] = putShadowScript.EvalSha(ctx, pipe, r.keys, r.args...)
	}
	_, _ = pipe.Exec(ctx) // errors are per command
	for i, r := range live {
		r.n, r.err = cmds[i].Int64()
		if r.err != nil && goredis.HasErrorPrefix(r.err, "NOSCRIPT") {
			// Redis lost its script cache (restart, SCRIPT FLUSH): the
			// script did not run; Run loads it and runs it.
			r.n, r.err = putShadowScript.Run(ctx, b.rdb, r.keys, r.args...).Int64()
		}
	}
}
