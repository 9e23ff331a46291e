// SPDX-License-Identifier: MIT

package mqtt

// lastmile fork: parked connections and the event loops that serve them
// (see FORK.md, and connReader.park).
//
//	  Go runtime netpoller (one epoll for every socket and file)
//	      |  readable                   |  readable
//	  poller 0 (epoll fd)   ...     poller N-1 (epoll fd)      N = GOMAXPROCS, at most 8
//	      |  events, EPOLLET            |
//	  loop goroutine                loop goroutine            one at a time per poller
//	      |  runs the read loop of each readable connection,
//	      |  which handles its packets, writes, and parks it again
//	  connReader (parked: no goroutine, no stack, no buffer)
//
// The watchdog starts a new loop for a poller whose loop has been handling
// one connection for longer than stallAfter (a hook blocking without
// saying so, see Client.WillBlock); the stalled goroutine finishes that
// connection and ends.

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// parker is the set of pollers that serve parked connections.
type parker struct {
	polls []*poller
	next  atomic.Uint32 // round robin over polls for new connections
	n     atomic.Int64  // connections parked now
	busy  atomic.Int32  // loops not waiting for events (evloop.waiting unset)
	wg    sync.WaitGroup

	watching atomic.Bool   // the watchdog runs
	closed   chan struct{} // stops the watchdog
}

// poller is one epoll instance with the loop that waits for its events.
//
// The epoll instance is itself watched by the Go runtime's network poller
// (it is readable while it has events), so a loop waiting for it holds no
// thread, only a parked goroutine, like any socket read. A socket is
// registered once, edge-triggered (EPOLLET): it reports when input comes,
// and parking again costs no system call. An event for a connection that
// is running (on another loop, or a goroutine of its own) is not lost: it
// sets the connection's pending flag, and the read loop re-arms the socket
// when it parks (connReader.park), which reports it again if it is still
// readable. The connection's state (connReader.claim) makes sure it is
// never served twice at once.
type poller struct {
	p  *parker
	f  *os.File // the epoll instance, non-blocking
	rc syscall.RawConn

	mu      sync.Mutex
	readers map[uint64]*connReader // by token, from a connection's first park to its end
	next    uint64

	cur atomic.Pointer[evloop] // the loop that waits for this poller's events
}

// evloop is one goroutine serving a poller's events. Once replaced (it
// handed over, or the watchdog found it stalled), it finishes the
// connection it is serving and ends; its successor took the events it had
// not served.
type evloop struct {
	po *poller
	// batch holds the writes of the read loops the loop runs until it has
	// served a round (or flushEvery connections): the deliveries of many
	// publishers to one subscriber go out in one write.
	batch writeBatch

	mu       sync.Mutex
	queue    []uint64 // tokens of readable connections; queue[head:] not served yet
	head     int
	waiting  bool  // in epoll_wait: nothing to hand over
	began    int64 // when the connection being served was taken (nanotime)
	replaced bool
	ended    atomic.Bool // run has returned
}

// maxEvents is the most events one epoll_wait takes; flushEvery is how
// many connections a loop serves at most before writing what it holds.
const (
	maxEvents  = 128
	flushEvery = 32
)

// stallAfter is how long a loop may serve one connection before the
// watchdog lets a new loop serve the others; watchEvery is how often it
// looks, and it stops after watchIdle of finding every loop waiting.
const (
	stallAfter = 10 * time.Millisecond
	watchEvery = 5 * time.Millisecond
	watchIdle  = time.Second
)

func newParker() (*parker, error) {
	p := &parker{closed: make(chan struct{})}
	for range min(runtime.GOMAXPROCS(0), 8) {
		po, err := newPoller(p)
		if err != nil {
			_ = p.close()
			return nil, err
		}
		p.polls = append(p.polls, po)
	}
	for _, po := range p.polls {
		p.start(po, nil)
	}
	return p, nil
}

func newPoller(p *parker) (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	f := os.NewFile(uintptr(fd), "mqtt-parker")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &poller{p: p, f: f, rc: rc, readers: map[uint64]*connReader{}}, nil
}

// assign picks the poller for a connection parking for the first time.
func (p *parker) assign() *poller {
	return p.polls[int(p.next.Add(1))%len(p.polls)]
}

// start runs a new loop for po, serving queue first.
func (p *parker) start(po *poller, queue []uint64) {
	lp := &evloop{po: po, queue: queue}
	p.busy.Add(1)
	po.cur.Store(lp)
	p.wg.Add(1)
	go lp.run()
}

// add gives r a token of its own for the epoll events of its socket.
func (po *poller) add(r *connReader) uint64 {
	po.mu.Lock()
	defer po.mu.Unlock()
	po.next++
	po.readers[po.next] = r
	return po.next
}

// forget drops a token: its connection has ended.
func (po *poller) forget(token uint64) {
	po.mu.Lock()
	delete(po.readers, token)
	po.mu.Unlock()
}

func (po *poller) reader(token uint64) *connReader {
	po.mu.Lock()
	defer po.mu.Unlock()
	return po.readers[token]
}

// Ways to arm a socket (poller.arm).
const (
	epollET  = 1 << 31               // syscall.EPOLLET, which is a negative int
	armAdd   = syscall.EPOLL_CTL_ADD // the first park: register the socket
	armAgain = syscall.EPOLL_CTL_MOD // report it again if it is readable now
)

// arm registers the socket under rc (op armAdd) for events when input
// comes, or the peer closes it, or asks for an event now if it is readable
// already (armAgain: epoll looks at the socket again). If the socket is
// readable when it is added, the event comes at once too.
func (po *poller) arm(rc syscall.RawConn, token uint64, op int) error {
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET,
		Fd:     int32(uint32(token)),       //nolint:gosec // the two halves of epoll's 64-bit user data
		Pad:    int32(uint32(token >> 32)), //nolint:gosec // as above
	}
	var cerr error
	err := rc.Control(func(fd uintptr) {
		err := po.rc.Control(func(epfd uintptr) {
			cerr = syscall.EpollCtl(int(epfd), op, int(fd), &ev)
		})
		if err != nil {
			cerr = err
		}
	})
	if err != nil {
		return err
	}
	if cerr != nil {
		return os.NewSyscallError("epoll_ctl", cerr)
	}
	return nil
}

// wait blocks until the poller has events and appends their tokens to
// tokens. It fails once the poller is closed.
func (po *poller) wait(events []syscall.EpollEvent, tokens []uint64) ([]uint64, error) {
	var n int
	var werr error
	err := po.rc.Read(func(epfd uintptr) bool {
		for {
			n, werr = syscall.EpollWait(int(epfd), events, 0)
			if werr == syscall.EINTR {
				continue
			}
			return werr != nil || n > 0
		}
	})
	if err != nil {
		return tokens, err
	}
	if werr != nil {
		return tokens, os.NewSyscallError("epoll_wait", werr)
	}
	for _, ev := range events[:n] {
		tokens = append(tokens, uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32) //nolint:gosec // see arm
	}
	return tokens, nil
}

// run serves the poller's readable connections, one after the other, until
// the loop is replaced or the poller closed.
func (lp *evloop) run() {
	po := lp.po
	defer po.p.wg.Done()
	defer lp.ended.Store(true)
	defer lp.batch.flush()
	events := make([]syscall.EpollEvent, maxEvents)
	var tokens []uint64
	served := 0
	for {
		token, next := lp.take()
		switch next {
		case loopEnd:
			return
		case loopWait:
			lp.batch.flush()
			var err error
			if tokens, err = po.wait(events, tokens[:0]); err != nil {
				return // closed
			}
			lp.put(tokens)
			continue
		}
		if r := po.reader(token); r != nil {
			po.p.watch()
			r.serveOn(lp)
			if served++; served%flushEvery == 0 {
				lp.batch.flush()
			}
		}
	}
}

// What a loop does next (take).
const (
	loopServe = iota // the connection take returned
	loopWait         // nothing queued: wait for events
	loopEnd          // replaced: a successor serves the poller
)

// take gives the next connection to serve, or says what to do instead.
func (lp *evloop) take() (token uint64, next int) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	switch {
	case lp.replaced:
		lp.po.p.busy.Add(-1)
		return 0, loopEnd
	case lp.head == len(lp.queue):
		lp.waiting = true // the watchdog leaves a waiting loop alone
		lp.po.p.busy.Add(-1)
		lp.queue, lp.head = lp.queue[:0], 0
		return 0, loopWait
	}
	token = lp.queue[lp.head]
	lp.head++
	lp.began = nanotime()
	return token, loopServe
}

// alone reports whether lp has nothing queued and every other loop waits
// for events: the other cores are likely idle.
func (lp *evloop) alone() bool {
	lp.mu.Lock()
	queued := len(lp.queue) - lp.head
	lp.mu.Unlock()
	return queued == 0 && lp.po.p.busy.Load() <= 1
}

// put queues the tokens of an epoll_wait. A loop is never replaced while
// it waits, so they are its own to serve.
func (lp *evloop) put(tokens []uint64) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	lp.waiting = false
	lp.po.p.busy.Add(1)
	lp.began = nanotime() // not a stall: the time it waited for events
	lp.queue = append(lp.queue, tokens...)
}

// handOver replaces lp by a new loop, which gets the connections lp has
// not served yet; lp's goroutine is left to the connection it is serving.
func (lp *evloop) handOver() {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	lp.replaceLocked()
}

func (lp *evloop) replaceLocked() {
	if lp.replaced {
		return
	}
	lp.replaced = true
	queue := append([]uint64(nil), lp.queue[lp.head:]...)
	lp.queue, lp.head = nil, 0
	lp.po.p.start(lp.po, queue)
}

// watchHeld writes out what a replaced loop holds — the replies and
// deliveries of the connections it served in its round before the one it
// is stuck with — once it has held nothing new for stallAfter: it is
// blocked (in a hook that did not say so), not busy. A busy loop (a
// fan-out to many subscribers takes longer than stallAfter) writes out
// what it holds itself; writing it out from here, under its feet, cost
// a fifth of the flat-out QoS 1 fan-out. It looks again every stallAfter
// until the loop has ended.
func (lp *evloop) watchHeld(progress int64) {
	time.AfterFunc(stallAfter, func() {
		if lp.ended.Load() {
			return
		}
		now := lp.batch.writes.Load()
		if now == progress {
			lp.batch.flushStalled()
		}
		lp.watchHeld(now)
	})
}

// watch starts the watchdog unless it runs.
func (p *parker) watch() {
	if !p.watching.Load() && p.watching.CompareAndSwap(false, true) {
		go p.watchdog()
	}
}

// watchdog replaces loops that serve one connection for longer than
// stallAfter, every watchEvery, until every loop has waited for watchIdle.
func (p *parker) watchdog() {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	idleSince := time.Now()
	for {
		select {
		case <-p.closed:
			p.watching.Store(false)
			return
		case <-t.C:
		}
		if p.check() {
			idleSince = time.Now()
			continue
		}
		if time.Since(idleSince) < watchIdle {
			continue
		}
		p.watching.Store(false)
		if !p.check() || !p.watching.CompareAndSwap(false, true) {
			return // idle; a loop that takes a connection from now on starts it again
		}
	}
}

// check replaces stalled loops (and watches what they hold, watchHeld)
// and reports whether any loop was serving.
func (p *parker) check() (busy bool) {
	now := nanotime()
	for _, po := range p.polls {
		lp := po.cur.Load()
		lp.mu.Lock()
		if !lp.waiting && !lp.replaced {
			busy = true
			if lp.began != 0 && now-lp.began > int64(stallAfter) {
				lp.replaceLocked()
				lp.watchHeld(lp.batch.writes.Load())
			}
		}
		lp.mu.Unlock()
	}
	return busy
}

// close stops the parker; call it once no connection is parked.
func (p *parker) close() error {
	close(p.closed)
	var errs []error
	for _, po := range p.polls {
		if err := po.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	p.wg.Wait()
	return errors.Join(errs...)
}

// nanotime is a monotonic clock reading in nanoseconds.
func nanotime() int64 { return int64(time.Since(epoch)) }

var epoch = time.Now()
