package tunnel

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/lastmile-dm/lastmile/internal/bufpool"
)

// Stream is one TCP connection's worth of bytes in a session, both ways,
// with credit-based flow control: a side sends only as many bytes as the
// peer granted (the window), and grants more as its reader consumes them.
// So a slow reader holds at most one window of data per stream in memory,
// and the writer on the other side blocks.
//
// Read and Write may be called from different goroutines; Read from one
// goroutine at a time, Write from one goroutine at a time.
type Stream struct {
	s        *Session
	id       uint32
	accepted chan struct{} // closed when the peer accepted or refused (opener), or on Accept/Refuse (acceptor)
	settled  sync.Once     // closes accepted: Accept and a peer's reset may race

	mu      sync.Mutex
	cond    sync.Cond
	opening bool
	err     error // reset or session closed; returned by Read and Write

	// receive side
	buf      []chunk
	buffered int
	peak     int
	avail    int64 // bytes the peer may still send us
	unacked  int   // consumed bytes not yet granted back
	finRecv  bool
	readShut bool // Close: we read no more
	// send side
	credit  int64
	finSent bool

	in, out int64
	gone    bool // removed from the session
}

// chunk is one received data frame's bytes, from bufpool, of which the
// reader has consumed off.
type chunk struct {
	p   *[]byte
	off int
}

// dropBuf discards the unread data; st.mu is held.
func (st *Stream) dropBuf() {
	for _, c := range st.buf {
		bufpool.Put(c.p)
	}
	st.buf, st.buffered = nil, 0
}

func newStream(s *Session, id, peerWindow uint32) *Stream {
	st := &Stream{s: s, id: id, credit: int64(peerWindow), avail: int64(s.cfg.Window), accepted: make(chan struct{})}
	st.cond.L = &st.mu
	return st
}

// ID returns the stream ID.
func (st *Stream) ID() uint32 { return st.id }

// Session returns the stream's session.
func (st *Stream) Session() *Session { return st.s }

// Accept tells the peer the stream is open (the acceptor side calls it
// once the target connection is up).
func (st *Stream) Accept(ctx context.Context) error {
	defer st.settle()
	return st.s.send(ctx, Frame{Type: TypeAccept, Stream: st.id, Window: st.s.cfg.Window})
}

// Refuse tells the peer the stream cannot be opened, and why.
func (st *Stream) Refuse(r Reason, msg string) {
	defer st.settle()
	st.fail(&ReasonError{Reason: r, Message: msg, kind: ErrStreamReset}, false)
	_ = st.s.send(st.s.ctx, Frame{Type: TypeReject, Stream: st.id, Reason: r, Message: msg})
}

// settle closes accepted, once. (A check-then-close of the channel raced
// when the acceptor's Accept and the peer's reset came at the same time,
// and panicked on the second close: FuzzSessionDeliver found it.)
func (st *Stream) settle() {
	st.settled.Do(func() { close(st.accepted) })
}

// deliver handles a received stream frame; it never blocks.
func (st *Stream) deliver(f Frame) {
	st.mu.Lock()
	switch f.Type {
	case TypeAccept:
		if !st.opening {
			st.mu.Unlock()
			st.protocolReset("unexpected accept")
			return
		}
		st.opening = false
		st.credit += int64(f.Window)
		st.mu.Unlock()
		st.settle()
		return
	case TypeReject, TypeReset:
		st.mu.Unlock()
		st.fail(&ReasonError{Reason: f.Reason, Message: f.Message, Remote: true, kind: ErrStreamReset}, false)
		st.settle()
		return
	case TypeWindow:
		st.credit += int64(f.Window)
		if st.credit > 1<<32 {
			st.mu.Unlock()
			st.flowReset("window grown past 4 GiB")
			return
		}
	case TypeData:
		n := len(f.Data)
		switch {
		case st.finRecv:
			st.mu.Unlock()
			st.protocolReset("data after fin")
			return
		case int64(n) > st.avail:
			st.mu.Unlock()
			st.flowReset(fmt.Sprintf("%d bytes sent with %d bytes of credit", n, st.avail))
			return
		}
		st.avail -= int64(n)
		st.in += int64(n)
		st.s.in.Add(int64(n))
		if !st.readShut && st.err == nil {
			c := chunk{p: bufpool.Get(n)}
			copy(*c.p, f.Data)
			st.buf = append(st.buf, c)
			st.buffered += n
			st.peak = max(st.peak, st.buffered)
		}
	case TypeFin:
		st.finRecv = true
	}
	st.cond.Broadcast()
	done := st.finRecv && st.finSent && st.buffered == 0
	st.mu.Unlock()
	if done {
		st.finish()
	}
}

// protocolReset and flowReset run on the receive path: the reset frame is
// queued, not published inline.
func (st *Stream) protocolReset(msg string) {
	st.fail(&ReasonError{Reason: ReasonProtocol, Message: msg, kind: ErrStreamReset}, true)
}

func (st *Stream) flowReset(msg string) {
	st.fail(&ReasonError{Reason: ReasonFlowControl, Message: msg, kind: ErrStreamReset}, true)
}

// Read reads bytes the peer sent; io.EOF after the peer's CloseWrite.
func (st *Stream) Read(p []byte) (int, error) {
	st.mu.Lock()
	for len(st.buf) == 0 && !st.finRecv && st.err == nil {
		st.cond.Wait()
	}
	if len(st.buf) == 0 {
		err := st.err
		st.mu.Unlock()
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	n := 0
	for n < len(p) && len(st.buf) > 0 {
		c := &st.buf[0]
		k := copy(p[n:], (*c.p)[c.off:])
		n += k
		c.off += k
		if c.off == len(*c.p) {
			bufpool.Put(c.p)
			st.buf[0] = chunk{}
			st.buf = st.buf[1:]
		}
	}
	st.buffered -= n
	st.unacked += n
	var grant int
	if st.unacked >= int(st.s.cfg.Window)/4 && !st.finRecv {
		grant, st.unacked = st.unacked, 0
		st.avail += int64(grant)
	}
	done := st.finRecv && st.finSent && st.buffered == 0
	st.mu.Unlock()
	if grant > 0 {
		if err := st.s.send(st.s.ctx, Frame{Type: TypeWindow, Stream: st.id, Window: uint32(grant)}); err != nil { //nolint:gosec // <= window
			st.fail(&ReasonError{Reason: ReasonShutdown, Message: err.Error(), kind: ErrStreamReset}, false)
		}
	}
	if done {
		st.finish()
	}
	return n, nil
}

// Write sends p, blocking while the peer has granted no credit.
func (st *Stream) Write(p []byte) (int, error) {
	n, err := st.WriteBuffers([][]byte{p})
	return int(n), err
}

// WriteBuffers sends the concatenation of bufs, blocking while the peer
// has granted no credit. The bytes go out in data frames as large as
// credit and the frame size allow, whatever the sizes of the buffers: a
// caller holding several small messages sends them as one frame, with one
// copy. It consumes bufs (like net.Buffers.WriteTo).
func (st *Stream) WriteBuffers(bufs [][]byte) (int64, error) {
	var total int64
	for _, b := range bufs {
		total += int64(len(b))
	}
	var written int64
	for written < total {
		st.mu.Lock()
		for st.credit == 0 && st.err == nil && !st.finSent {
			st.cond.Wait()
		}
		if st.err != nil || st.finSent {
			err := st.err
			st.mu.Unlock()
			if err == nil {
				err = ErrWriteClosed
			}
			return written, err
		}
		n := int(min(total-written, st.credit, int64(st.s.cfg.MaxData)))
		st.credit -= int64(n)
		st.out += int64(n)
		st.mu.Unlock()
		if err := st.s.sendData(st.s.ctx, st.id, &bufs, n); err != nil {
			st.fail(&ReasonError{Reason: ReasonShutdown, Message: err.Error(), kind: ErrStreamReset}, true)
			return written, err
		}
		st.s.out.Add(int64(n))
		st.s.lastData.Store(st.s.cfg.Now().UnixNano())
		written += int64(n)
	}
	return written, nil
}

// CloseWrite tells the peer no more data follows (TCP half-close); the
// peer's Read returns io.EOF once it has read everything.
func (st *Stream) CloseWrite() error {
	st.mu.Lock()
	if st.err != nil || st.finSent {
		err := st.err
		st.mu.Unlock()
		return err
	}
	st.finSent = true
	st.cond.Broadcast()
	done := st.finRecv && st.buffered == 0
	st.mu.Unlock()
	err := st.s.send(st.s.ctx, Frame{Type: TypeFin, Stream: st.id})
	if done {
		st.finish()
	}
	return err
}

// Close ends the stream: gracefully (CloseWrite) when the peer has finished
// sending too, otherwise with a reset, since nobody will read what the peer
// still sends.
func (st *Stream) Close() error {
	st.mu.Lock()
	graceful := st.finRecv && st.err == nil
	st.readShut = true
	st.dropBuf()
	st.mu.Unlock()
	if graceful {
		err := st.CloseWrite()
		st.finish()
		return err
	}
	st.Reset(ReasonNormal, "closed")
	return nil
}

// Reset aborts the stream both ways and tells the peer why.
func (st *Stream) Reset(r Reason, msg string) {
	if st.fail(&ReasonError{Reason: r, Message: msg, kind: ErrStreamReset}, false) {
		_ = st.s.send(st.s.ctx, Frame{Type: TypeReset, Stream: st.id, Reason: r, Message: msg})
	}
}

// fail records err as the stream's end; it reports whether it was the
// first end. notify sends the peer a reset.
func (st *Stream) fail(err *ReasonError, notify bool) bool {
	st.mu.Lock()
	if st.err != nil {
		st.mu.Unlock()
		return false
	}
	st.err = err
	st.dropBuf()
	st.cond.Broadcast()
	st.mu.Unlock()
	st.settle()
	if notify {
		st.s.enqueue(Frame{Type: TypeReset, Stream: st.id, Reason: err.Reason, Message: err.Message})
	}
	st.finish()
	return true
}

func (st *Stream) finish() {
	st.mu.Lock()
	if st.gone {
		st.mu.Unlock()
		return
	}
	st.gone = true
	st.mu.Unlock()
	st.s.forget(st)
}

// Buffered returns the bytes received and not yet read, and the most ever
// held at once (never more than the window).
func (st *Stream) Buffered() (now, peak int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.buffered, st.peak
}

// Bytes returns the data bytes received from and sent to the peer.
func (st *Stream) Bytes() (in, out int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.in, st.out
}
