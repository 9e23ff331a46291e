package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func open(t *testing.T, cfg Config) *Spool {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func appendN(t *testing.T, s *Spool, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := s.Append("tele/d1/x", []byte(fmt.Sprintf("msg-%04d", i)), time.Unix(int64(i), 0)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// drain takes every record out, acknowledging each, and returns payloads.
func drain(t *testing.T, s *Spool) []string {
	t.Helper()
	var out []string
	for {
		r, ok, err := s.Peek()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, string(r.Payload))
		if err := s.Ack(r.Seq); err != nil {
			t.Fatal(err)
		}
	}
}

func want(from, n int) []string {
	var out []string
	for i := from; i < from+n; i++ {
		out = append(out, fmt.Sprintf("msg-%04d", i))
	}
	return out
}

func equal(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d\n got %v\nwant %v", len(got), len(want), got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("record %d: %q, want %q", i, got[i], want[i])
		}
	}
}

func TestOrderAcrossSegmentsAndRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 1024}
	s := open(t, cfg)
	appendN(t, s, 0, 300)
	// Deliver 100, then restart.
	for range 100 {
		r, _, _ := s.Peek()
		if err := s.Ack(r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, cfg)
	if st := s.Stats(); st.Queued != 200 || st.Head != 101 || st.Next != 301 {
		t.Fatalf("after restart: %+v", st)
	}
	appendN(t, s, 300, 50)
	equal(t, drain(t, s), want(100, 250))
	// Delivered segments are gone: only the active one remains.
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("%d segment files after draining, want 1", len(segs))
	}
	// Sequence numbers never repeat, even after a restart of an empty spool.
	_ = s.Close()
	s = open(t, cfg)
	seq, err := s.Append("tele/d1/x", []byte("after"), time.Now())
	if err != nil || seq != 351 {
		t.Fatalf("append after restart: seq %d, %v; want 351", seq, err)
	}
}

// TestCrashWithoutClose: a process killed without Close loses nothing
// (the files are reopened as the kernel has them).
func TestCrashWithoutClose(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 4096, Sync: SyncNever}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 0, 100)
	r, _, _ := s.Peek()
	_ = s.Ack(r.Seq)
	// No Close: a second Open sees what the first wrote.
	s2 := open(t, cfg)
	equal(t, drain(t, s2), want(1, 99))
	s.closeFiles()
}

func TestDropOldest(t *testing.T) {
	t.Parallel()
	rec := Record{Topic: "tele/d1/x", Payload: []byte("msg-0000")}
	size := int64(rec.size())
	s := open(t, Config{Dir: t.TempDir(), MaxBytes: 10 * size, SegmentBytes: 3 * size})
	appendN(t, s, 0, 25)
	st := s.Stats()
	if st.Queued != 10 || st.Dropped != 15 || st.Bytes != 10*size {
		t.Fatalf("stats %+v, want 10 queued, 15 dropped", st)
	}
	equal(t, drain(t, s), want(15, 10))
	// The count survives a restart.
	dir := s.cfg.Dir
	_ = s.Close()
	s = open(t, Config{Dir: dir, MaxBytes: 10 * size})
	if s.Stats().Dropped != 15 {
		t.Fatalf("dropped after restart: %d", s.Stats().Dropped)
	}
}

func TestDropNewest(t *testing.T) {
	t.Parallel()
	rec := Record{Topic: "tele/d1/x", Payload: []byte("msg-0000")}
	size := int64(rec.size())
	s := open(t, Config{Dir: t.TempDir(), MaxBytes: 10 * size, Policy: DropNewest})
	appendN(t, s, 0, 10)
	for i := range 5 {
		if _, err := s.Append("tele/d1/x", []byte("msg-late"), time.Now()); !errors.Is(err, ErrFull) {
			t.Fatalf("append %d to a full spool: %v, want ErrFull", i, err)
		}
	}
	if st := s.Stats(); st.Dropped != 5 || st.Queued != 10 {
		t.Fatalf("stats %+v", st)
	}
	equal(t, drain(t, s), want(0, 10))
	// Room again after draining.
	appendN(t, s, 10, 1)
	if _, err := s.Append("tele/d1/x", make([]byte, 20*size), time.Now()); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized record: %v", err)
	}
	if s.Stats().Dropped != 6 {
		t.Fatalf("oversized record not counted: %+v", s.Stats())
	}
}

// TestTornTail: a record cut short by a power cut is removed on Open and
// appending continues after the last whole record.
func TestTornTail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{Dir: dir, MaxBytes: 1 << 20}
	s := open(t, cfg)
	appendN(t, s, 0, 5)
	_ = s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	full, _ := appendRecord(nil, &Record{Seq: 6, Topic: "tele/d1/x", Payload: []byte("torn")})
	if _, err := f.Write(full[:len(full)-3]); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	s = open(t, cfg)
	if st := s.Stats(); st.Queued != 5 || st.Corrupt != int64(len(full)-3) {
		t.Fatalf("stats after torn tail: %+v", st)
	}
	appendN(t, s, 5, 2)
	equal(t, drain(t, s), want(0, 7))
}

// TestDamagedState: an unreadable state file means redelivery from the
// oldest record, never loss.
func TestDamagedState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{Dir: dir, MaxBytes: 1 << 20}
	s := open(t, cfg)
	appendN(t, s, 0, 5)
	r, _, _ := s.Peek()
	_ = s.Ack(r.Seq)
	_ = s.Close()
	if err := os.WriteFile(filepath.Join(dir, "state"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, cfg)
	equal(t, drain(t, s), want(0, 5))
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{},
		{Dir: t.TempDir(), MaxBytes: 10},
		{Dir: t.TempDir(), Policy: "drop_random"},
		{Dir: t.TempDir(), Sync: "sometimes"},
	} {
		if _, err := Open(c); err == nil {
			t.Errorf("Open(%+v) succeeded", c)
		}
	}
}

func TestReadySignal(t *testing.T) {
	t.Parallel()
	s := open(t, Config{Dir: t.TempDir()})
	select {
	case <-s.Ready():
		t.Fatal("ready before any append")
	default:
	}
	appendN(t, s, 0, 3)
	select {
	case <-s.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("no ready signal after append")
	}
}

var recordFixtures = []struct {
	name string
	in   func() []byte
	err  error
}{
	{"whole", func() []byte {
		b, _ := appendRecord(nil, &Record{Seq: 7, Topic: "tele/a/b", Payload: []byte("x")})
		return b
	}, nil},
	{"empty payload", func() []byte { b, _ := appendRecord(nil, &Record{Seq: 1, Topic: "t"}); return b }, nil},
	{"empty", func() []byte { return nil }, ErrShortRecord},
	{"header only", func() []byte { return []byte{recordMagic, 0, 0, 0, 30, 0, 0, 0, 0} }, ErrShortRecord},
	{"bad magic", func() []byte { return bytes.Repeat([]byte{1}, 40) }, ErrCorruptRecord},
	{"huge length", func() []byte { return []byte{recordMagic, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 1} }, ErrCorruptRecord},
	{"length below fixed body", func() []byte { return []byte{recordMagic, 0, 0, 0, 3, 0, 0, 0, 0, 1, 2, 3} }, ErrCorruptRecord},
	{"flipped bit", func() []byte {
		b, _ := appendRecord(nil, &Record{Seq: 7, Topic: "tele/a/b", Payload: []byte("x")})
		b[len(b)-1] ^= 1
		return b
	}, ErrCorruptRecord},
	{"topic longer than body", func() []byte {
		b, _ := appendRecord(nil, &Record{Seq: 7, Topic: "t", Payload: nil})
		b[headerSize+16], b[headerSize+17] = 0, 9
		b = fixCRC(b)
		return b
	}, ErrCorruptRecord},
}

func fixCRC(b []byte) []byte {
	body := b[headerSize:]
	c := crc(body)
	b[5], b[6], b[7], b[8] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
	return b
}

func TestDecodeRecordFixtures(t *testing.T) {
	t.Parallel()
	for _, f := range recordFixtures {
		_, n, err := DecodeRecord(f.in())
		if f.err == nil && (err != nil || n != len(f.in())) {
			t.Errorf("%s: n=%d err=%v", f.name, n, err)
		}
		if f.err != nil && !errors.Is(err, f.err) {
			t.Errorf("%s: %v, want %v", f.name, err, f.err)
		}
	}
}

// FuzzDecodeRecord: the parser of segment files never panics, never reads
// past its input, and what it accepts re-encodes to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	for _, fx := range recordFixtures {
		f.Add(fx.in())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := DecodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrShortRecord) && !errors.Is(err, ErrCorruptRecord) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("consumed %d of %d bytes", n, len(b))
		}
		again, err := appendRecord(nil, &r)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoded record differs")
		}
	})
}

// FuzzDecodeState: the state file parser accepts only what it wrote.
func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState(1, 0))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, d, err := decodeState(b)
		if err == nil && !bytes.Equal(encodeState(h, d), b) {
			t.Fatal("accepted state does not re-encode")
		}
	})
}
