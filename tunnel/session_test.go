package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/lastmile-dm/lastmile/internal/poll"
)

// pair connects two sessions back to back in memory: what one sends the
// other receives, in order, on the sender's goroutine (like the broker's
// inline delivery).
func pair(t *testing.T, window uint32) (initiator, acceptor *Session, accepted chan *Stream) {
	t.Helper()
	return pairTap(t, window, nil)
}

// pairTap is pair with tap seeing every frame sent, before delivery.
func pairTap(t *testing.T, window uint32, tap func(Frame)) (initiator, acceptor *Session, accepted chan *Stream) {
	t.Helper()
	accepted = make(chan *Stream, 16)
	var a, b *Session
	var mu sync.Mutex
	mk := func(init bool, peer **Session) *Session {
		s, err := NewSession(SessionConfig{ID: "s", DeviceID: "d", Initiator: init, Window: window, MaxData: 4096,
			Send: func(_ context.Context, p []byte) error {
				mu.Lock()
				dst := *peer
				mu.Unlock()
				p = append([]byte(nil), p...)
				if tap != nil {
					f, err := Decode(p)
					if err != nil {
						t.Errorf("sent a bad frame: %v", err)
					}
					tap(f)
				}
				dst.Deliver(p)
				return nil
			},
			Accept: func(st *Stream) {
				if err := st.Accept(context.Background()); err != nil {
					t.Error(err)
				}
				accepted <- st
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close(ReasonShutdown, "test over") })
		return s
	}
	mu.Lock()
	a = mk(true, &b)
	b = mk(false, &a)
	mu.Unlock()
	return a, b, accepted
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 20*time.Second, what, cond)
}

// TestSlowReaderBoundsMemory: in each direction, a reader that does not
// read holds at most one window, and the writer stops after one window.
func TestSlowReaderBoundsMemory(t *testing.T) {
	t.Parallel()
	const window = 64 << 10
	a, _, accepted := pair(t, window)
	sa, err := a.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sb := <-accepted
	for _, dir := range []struct {
		name string
		w, r *Stream
	}{{"initiator to acceptor", sa, sb}, {"acceptor to initiator", sb, sa}} {
		data := make([]byte, 1<<20)
		_, _ = rand.Read(data)
		werr := make(chan error, 1)
		go func() { _, err := dir.w.Write(data); werr <- err }()
		waitFor(t, dir.name+": reader's buffer full", func() bool { n, _ := dir.r.Buffered(); return n == window })
		if _, out := dir.w.Bytes(); out > window {
			t.Fatalf("%s: writer sent %d bytes into a window of %d", dir.name, out, window)
		}
		got := make([]byte, len(data))
		if _, err := io.ReadFull(dir.r, got); err != nil {
			t.Fatal(err)
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("%s: bytes differ", dir.name)
		}
		if _, peak := dir.r.Buffered(); peak > window {
			t.Fatalf("%s: reader held %d bytes, window %d", dir.name, peak, window)
		}
	}
}

func TestHalfCloseAndReset(t *testing.T) {
	t.Parallel()
	a, _, accepted := pair(t, 0)
	sa, err := a.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sb := <-accepted
	if _, err := sa.Write([]byte("question")); err != nil {
		t.Fatal(err)
	}
	if err := sa.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := sa.Write([]byte("x")); !errors.Is(err, ErrWriteClosed) {
		t.Fatalf("write after CloseWrite: %v", err)
	}
	q, err := io.ReadAll(sb)
	if err != nil || string(q) != "question" {
		t.Fatalf("acceptor read %q, %v", q, err)
	}
	// The other direction still flows after the half-close.
	if _, err := sb.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	_ = sb.CloseWrite()
	if ans, err := io.ReadAll(sa); err != nil || string(ans) != "answer" {
		t.Fatalf("initiator read %q, %v", ans, err)
	}
	waitFor(t, "finished stream forgotten", func() bool { return a.Streams() == 0 })

	sa2, err := a.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sb2 := <-accepted
	sb2.Reset(ReasonDialFailed, "gone")
	var re *ReasonError
	if _, err := sa2.Read(make([]byte, 1)); !errors.As(err, &re) || !errors.Is(err, ErrStreamReset) || re.Reason != ReasonDialFailed || !re.Remote {
		t.Fatalf("read after peer reset: %v", err)
	}
	if _, err := sa2.Write([]byte("x")); !errors.Is(err, ErrStreamReset) {
		t.Fatalf("write after peer reset: %v", err)
	}
}

func TestSequenceGapEndsSessionDuplicateIgnored(t *testing.T) {
	t.Parallel()
	var sent [][]byte
	var mu sync.Mutex
	s, err := NewSession(SessionConfig{ID: "s", Send: func(_ context.Context, p []byte) error {
		mu.Lock()
		sent = append(sent, append([]byte(nil), p...)) // Send must not keep p
		mu.Unlock()
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	enc := func(f Frame) []byte {
		b, err := f.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	s.Deliver(enc(Frame{Type: TypePing, Seq: 1, Nonce: 7}))
	s.Deliver(enc(Frame{Type: TypePing, Seq: 1, Nonce: 8})) // duplicate: no second pong
	waitFor(t, "pong", func() bool { mu.Lock(); defer mu.Unlock(); return len(sent) == 1 })
	s.Deliver(enc(Frame{Type: TypePing, Seq: 3, Nonce: 9}))
	<-s.Done()
	if e := s.Err(); e == nil || e.Reason != ReasonLost {
		t.Fatalf("session ended with %v, want frames lost", e)
	}
	waitFor(t, "session close sent", func() bool { mu.Lock(); defer mu.Unlock(); return len(sent) == 2 })
	mu.Lock()
	defer mu.Unlock()
	p, _ := Decode(sent[0])
	c, _ := Decode(sent[1])
	if p.Type != TypePong || p.Nonce != 7 || c.Type != TypeSessionClose || c.Reason != ReasonLost || c.Seq != 2 {
		t.Fatalf("sent %+v then %+v", p, c)
	}
	if !bytes.Contains([]byte(c.Message), []byte("expected frame 2")) {
		t.Fatalf("close message %q", c.Message)
	}
}

func TestFlowControlViolationResetsStream(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var sent []Frame
	s, err := NewSession(SessionConfig{ID: "s", Window: 10, Accept: func(st *Stream) { _ = st.Accept(context.Background()) },
		Send: func(_ context.Context, p []byte) error {
			f, _ := Decode(append([]byte(nil), p...)) // Send must not keep p
			mu.Lock()
			sent = append(sent, f)
			mu.Unlock()
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	enc := func(f Frame) []byte { b, _ := f.Encode(); return b }
	s.Deliver(enc(Frame{Type: TypeOpen, Seq: 1, Stream: 1, Window: 100}))
	waitFor(t, "accept", func() bool { mu.Lock(); defer mu.Unlock(); return len(sent) == 1 })
	s.Deliver(enc(Frame{Type: TypeData, Seq: 2, Stream: 1, Data: make([]byte, 11)}))
	waitFor(t, "reset", func() bool { mu.Lock(); defer mu.Unlock(); return len(sent) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if sent[0].Type != TypeAccept || sent[1].Type != TypeReset || sent[1].Reason != ReasonFlowControl {
		t.Fatalf("sent %+v", sent)
	}
}

// FuzzSessionDeliver feeds a session arbitrary payloads, as a hostile peer
// could: it must neither panic nor hang, and whatever it sends back must
// decode.
func FuzzSessionDeliver(f *testing.F) {
	enc := func(fs ...Frame) []byte {
		var out []byte
		for _, fr := range fs {
			b, _ := fr.Encode()
			out = append(out, byte(len(b)>>8), byte(len(b)))
			out = append(out, b...)
		}
		return out
	}
	f.Add(enc(Frame{Type: TypeOpen, Seq: 1, Stream: 1, Window: 10}, Frame{Type: TypeData, Seq: 2, Stream: 1, Data: []byte("hi")},
		Frame{Type: TypeFin, Seq: 3, Stream: 1}))
	f.Add(enc(Frame{Type: TypeData, Seq: 1, Stream: 3, Data: []byte("x")}, Frame{Type: TypeReset, Seq: 2, Stream: 3}))
	f.Add(enc(Frame{Type: TypeOpen, Seq: 1, Stream: 1, Window: 1}, Frame{Type: TypeData, Seq: 2, Stream: 1, Data: []byte("too much")}))
	f.Fuzz(func(t *testing.T, in []byte) {
		var mu sync.Mutex
		var bad error
		s, err := NewSession(SessionConfig{ID: "s", Window: 64,
			Accept: func(st *Stream) {
				_ = st.Accept(context.Background())
				_, _ = io.Copy(io.Discard, st)
			},
			Send: func(_ context.Context, p []byte) error {
				if _, err := Decode(p); err != nil {
					mu.Lock()
					bad = err
					mu.Unlock()
				}
				return nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		for len(in) >= 2 {
			n := int(in[0])<<8 | int(in[1])
			in = in[2:]
			n = min(n, len(in))
			s.Deliver(in[:n])
			in = in[n:]
		}
		s.Close(ReasonShutdown, "done")
		<-s.Done()
		mu.Lock()
		defer mu.Unlock()
		if bad != nil {
			t.Fatalf("session sent an undecodable frame: %v", bad)
		}
	})
}

// TestWriteBuffersPacksFrames: WriteBuffers sends the concatenation of its
// buffers in data frames as full as the frame size allows, whatever the
// buffers' sizes, and the reader gets the bytes in order.
func TestWriteBuffersPacksFrames(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var sizes []int
	a, _, accepted := pairTap(t, 1<<20, func(f Frame) {
		if f.Type == TypeData {
			mu.Lock()
			sizes = append(sizes, len(f.Data))
			mu.Unlock()
		}
	})
	sa, err := a.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sb := <-accepted
	var want []byte
	var bufs [][]byte
	for i, n := range []int{100, 5000, 3, 0, 2000, 4096, 1} {
		b := bytes.Repeat([]byte{byte(i + 1)}, n)
		want = append(want, b...)
		bufs = append(bufs, b)
	}
	n, err := sa.WriteBuffers(bufs)
	if err != nil || n != int64(len(want)) {
		t.Fatalf("WriteBuffers = %d, %v; want %d", n, err, len(want))
	}
	_ = sa.CloseWrite()
	got, err := io.ReadAll(sb)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), want the %d written in order", len(got), err, len(want))
	}
	mu.Lock()
	defer mu.Unlock()
	// 11200 bytes in frames of at most 4096 (pair's MaxData): 4096, 4096, 3008.
	if len(sizes) != 3 || sizes[0] != 4096 || sizes[1] != 4096 || sizes[2] != 3008 {
		t.Fatalf("data frames of %v bytes, want [4096 4096 3008]", sizes)
	}
}
