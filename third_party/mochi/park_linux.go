// SPDX-License-Identifier: MIT

package mqtt

// lastmile fork: parking idle connections (see FORK.md, and connReader.park).

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// parker watches the sockets of parked connections — connections whose
// read loop gave up its goroutine after Options.ParkIdleAfter without input —
// with an epoll instance of its own, and starts a goroutine to resume a
// connection's read loop when its socket becomes readable.
//
// The epoll instance is itself watched by the Go runtime's network poller
// (it is readable while it has events), so the parker holds no thread:
// one goroutine, parked in the runtime like any socket read, serves every
// parked connection. A socket is registered EPOLLONESHOT: it reports once,
// then stays silent until it is parked again.
type parker struct {
	f  *os.File // the epoll instance, non-blocking, in the runtime's poller
	rc syscall.RawConn

	mu      sync.Mutex
	readers map[uint64]*connReader // by token, from a connection's first park to its end
	next    uint64
	done    chan struct{}

	n atomic.Int64 // connections parked now
}

func newParker() (*parker, error) {
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
	p := &parker{f: f, rc: rc, readers: map[uint64]*connReader{}, done: make(chan struct{})}
	go p.run()
	return p, nil
}

// add gives r a token of its own for the epoll events of its socket.
func (p *parker) add(r *connReader) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	p.readers[p.next] = r
	return p.next
}

// forget drops a token: its connection has ended.
func (p *parker) forget(token uint64) {
	p.mu.Lock()
	delete(p.readers, token)
	p.mu.Unlock()
}

// arm asks for one event when the socket under rc is readable, or closed
// by the peer. first adds the socket, later calls re-arm it. If the
// socket is readable already, the event comes at once.
func (p *parker) arm(rc syscall.RawConn, token uint64, first bool) error {
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(uint32(token)),       //nolint:gosec // the two halves of epoll's 64-bit user data
		Pad:    int32(uint32(token >> 32)), //nolint:gosec // as above
	}
	op := syscall.EPOLL_CTL_MOD
	if first {
		op = syscall.EPOLL_CTL_ADD
	}
	var cerr error
	err := rc.Control(func(fd uintptr) {
		err := p.rc.Control(func(epfd uintptr) {
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

// run waits for events and wakes the connections they are for, until the
// parker is closed.
func (p *parker) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 128)
	for {
		var n int
		var werr error
		err := p.rc.Read(func(epfd uintptr) bool {
			for {
				n, werr = syscall.EpollWait(int(epfd), events, 0)
				if werr == syscall.EINTR {
					continue
				}
				return werr != nil || n > 0
			}
		})
		if err != nil || werr != nil {
			return // closed
		}
		p.mu.Lock()
		for i := range n {
			token := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32 //nolint:gosec // see arm
			if r := p.readers[token]; r != nil {
				r.wake()
			}
		}
		p.mu.Unlock()
	}
}

// close stops the parker; call it once no connection is parked.
func (p *parker) close() error {
	err := p.f.Close()
	<-p.done
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}
