package spool

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Policy says what Append does when the spool is full.
type Policy string

// Full policies.
const (
	// DropOldest discards the oldest records to make room (fresh data
	// matters more). Default.
	DropOldest Policy = "drop_oldest"
	// DropNewest refuses the new record (the history matters more).
	DropNewest Policy = "drop_newest"
)

// Sync says when appended records are forced to disk.
type Sync string

// Sync policies.
const (
	// SyncAlways fsyncs every append before it returns. Default.
	SyncAlways Sync = "always"
	// SyncInterval fsyncs at most every SyncInterval: a power cut may lose
	// that much; a process crash loses nothing.
	SyncInterval Sync = "interval"
	// SyncNever leaves it to the operating system.
	SyncNever Sync = "never"
)

// Errors of Append.
var (
	// ErrFull is returned by Append under DropNewest when the record does
	// not fit; the record is counted as dropped.
	ErrFull = errors.New("spool: full")
	// ErrTooLarge is returned for a record bigger than the whole spool or
	// than MaxRecordSize; it is counted as dropped.
	ErrTooLarge = errors.New("spool: record too large")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool: closed")
)

// Config configures a spool.
type Config struct {
	// Dir holds the segments and the state file; created if missing.
	Dir string
	// MaxBytes bounds the records not yet acknowledged (framed size).
	// Default 16 MiB.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment file starts; disk
	// use may exceed MaxBytes by up to one segment. Default MaxBytes/8,
	// at least 64 KiB.
	SegmentBytes int64
	// Policy applies when full. Default DropOldest.
	Policy Policy
	// Sync is the fsync policy. Default SyncAlways.
	Sync Sync
	// SyncInterval is the period of SyncInterval. Default 1s.
	SyncInterval time.Duration
	Logger       *slog.Logger
}

// CheckAndSetDefaults validates c and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Dir == "" {
		return errors.New("spool: Dir is required")
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 16 << 20
	}
	if c.MaxBytes < 256 {
		return fmt.Errorf("spool: MaxBytes %d is below 256 bytes", c.MaxBytes)
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = max(c.MaxBytes/8, 64<<10)
	}
	if c.Policy == "" {
		c.Policy = DropOldest
	}
	if c.Policy != DropOldest && c.Policy != DropNewest {
		return fmt.Errorf("spool: unknown full policy %q (want %s or %s)", c.Policy, DropOldest, DropNewest)
	}
	if c.Sync == "" {
		c.Sync = SyncAlways
	}
	if c.Sync != SyncAlways && c.Sync != SyncInterval && c.Sync != SyncNever {
		return fmt.Errorf("spool: unknown sync policy %q", c.Sync)
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Stats describes the spool's content.
type Stats struct {
	// Queued and Bytes count the records not yet acknowledged.
	Queued int
	Bytes  int64
	// Dropped counts records discarded by the full policy, as too large, or
	// because the disk refused them, since the spool was created (it
	// survives restarts).
	Dropped uint64
	// Corrupt counts bytes of damaged segments skipped on Open.
	Corrupt int64
	// Head is the sequence number of the oldest unacknowledged record (or
	// of the next one, when empty); Next is the one the next Append gets.
	Head, Next uint64
}

type recMeta struct {
	seq  uint64
	off  int64
	size int
}

// position locates a record.
type position struct {
	seg *segment
	rec recMeta
}

type segment struct {
	path string
	recs []recMeta
	size int64
	r    *os.File // opened lazily for reading
}

// Spool is an on-disk FIFO. Safe for concurrent use.
type Spool struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	closed  bool
	segs    []*segment // oldest first; the last is the one appended to
	w       *os.File   // the last segment, for appending
	state   *os.File
	head    uint64 // oldest unacknowledged seq
	next    uint64
	bytes   int64
	queued  int
	dropped uint64
	corrupt int64
	dirty   bool
	buf     []byte

	ready chan struct{}
	stop  chan struct{}
	wg    sync.WaitGroup
}

// Open opens or creates the spool in cfg.Dir and recovers its content.
func Open(cfg Config) (*Spool, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}, 1), stop: make(chan struct{})}
	if err := s.recover(); err != nil {
		s.closeFiles()
		return nil, err
	}
	if cfg.Sync == SyncInterval {
		s.wg.Add(1)
		go s.syncLoop()
	}
	if s.queued > 0 {
		s.signal()
	}
	return s, nil
}

func (s *Spool) recover() error {
	st, err := os.OpenFile(filepath.Join(s.cfg.Dir, "state"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("spool: open state: %w", err)
	}
	s.state = st
	raw, err := io.ReadAll(st)
	if err != nil {
		return fmt.Errorf("spool: read state: %w", err)
	}
	stateOK := false
	if len(raw) > 0 {
		if s.head, s.dropped, err = decodeState(raw); err != nil {
			// Start from the oldest record: duplicates, never loss.
			s.log.Warn("offline buffer state unreadable; redelivering from the oldest record", "err", err)
		} else {
			stateOK = true
		}
	}
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".seg") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // zero-padded first sequence numbers
	var last uint64
	for i, name := range names {
		seg, err := s.loadSegment(filepath.Join(s.cfg.Dir, name), i == len(names)-1, &last)
		if err != nil {
			return err
		}
		s.segs = append(s.segs, seg)
	}
	if !stateOK {
		s.head = 0
		for _, seg := range s.segs {
			if len(seg.recs) > 0 {
				s.head = seg.recs[0].seq
				break
			}
		}
	}
	s.next = max(last+1, s.head, 1)
	if s.head == 0 {
		s.head = s.next
	}
	for _, seg := range s.segs {
		for _, r := range seg.recs {
			if r.seq >= s.head {
				s.queued++
				s.bytes += int64(r.size)
			}
		}
	}
	s.gc()
	if len(s.segs) > 0 {
		lastSeg := s.segs[len(s.segs)-1]
		w, err := os.OpenFile(lastSeg.path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.w = w
	}
	return s.writeState()
}

// loadSegment reads a segment's records. A damaged tail of the last
// segment is cut off (a write cut short); damage elsewhere is skipped and
// counted in Stats.Corrupt.
func (s *Spool) loadSegment(path string, isLast bool, last *uint64) (*segment, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	seg := &segment{path: path}
	off := 0
	for off < len(data) {
		r, n, err := DecodeRecord(data[off:])
		if err == nil && r.Seq <= *last {
			err = fmt.Errorf("%w: sequence %d after %d", ErrCorruptRecord, r.Seq, *last)
		}
		if err != nil {
			if isLast {
				s.log.Warn("offline buffer: cutting a damaged tail", "segment", filepath.Base(path), "offset", off, "bytes", len(data)-off, "err", err)
				if terr := os.Truncate(path, int64(off)); terr != nil {
					return nil, fmt.Errorf("spool: truncate damaged tail: %w", terr)
				}
			} else {
				s.log.Error("offline buffer: skipping a damaged segment tail", "segment", filepath.Base(path), "offset", off, "bytes", len(data)-off, "err", err)
			}
			s.corrupt += int64(len(data) - off)
			break
		}
		seg.recs = append(seg.recs, recMeta{seq: r.Seq, off: int64(off), size: n})
		*last = r.Seq
		off += n
	}
	seg.size = int64(off)
	return seg, nil
}

func segmentName(firstSeq uint64) string {
	return fmt.Sprintf("%020d.seg", firstSeq)
}

// Append adds a record and returns its sequence number. Under DropNewest a
// full spool returns ErrFull; under DropOldest the oldest records make room.
func (s *Spool) Append(topic string, payload []byte, ts time.Time) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	r := Record{Seq: s.next, Time: ts, Topic: topic, Payload: payload}
	size := int64(r.size())
	if size > s.cfg.MaxBytes {
		s.dropped++
		_ = s.writeState()
		return 0, fmt.Errorf("%w: %d bytes, spool holds %d", ErrTooLarge, size, s.cfg.MaxBytes)
	}
	if s.bytes+size > s.cfg.MaxBytes {
		if s.cfg.Policy == DropNewest {
			s.dropped++
			_ = s.writeState()
			return 0, ErrFull
		}
		for s.bytes+size > s.cfg.MaxBytes && s.queued > 0 {
			m, _ := s.headMeta()
			s.advance(m)
			s.dropped++
		}
		s.gc()
		if err := s.writeState(); err != nil {
			return 0, err
		}
	}
	var err error
	s.buf, err = appendRecord(s.buf[:0], &r)
	if err != nil {
		s.dropped++
		return 0, err
	}
	if err := s.rollIfNeeded(size); err != nil {
		s.lost()
		return 0, err
	}
	seg := s.segs[len(s.segs)-1]
	if _, err := s.w.Write(s.buf); err != nil {
		// Disk full or failing. Cut the partial record off and keep going
		// in this segment; if even that fails, the next append starts a new
		// segment, and Open skips the damage.
		if terr := s.w.Truncate(seg.size); terr != nil {
			_ = s.w.Close()
			s.w = nil
		}
		s.lost()
		return 0, fmt.Errorf("spool: append: %w", err)
	}
	seg.recs = append(seg.recs, recMeta{seq: r.Seq, off: seg.size, size: int(size)})
	seg.size += size
	s.next++
	s.queued++
	s.bytes += size
	s.signal()
	if s.cfg.Sync != SyncAlways {
		s.dirty = true
	} else if err := s.w.Sync(); err != nil {
		// Written but perhaps not durable: it stays queued and will be
		// delivered; the caller learns that durability failed.
		return r.Seq, fmt.Errorf("spool: fsync: %w", err)
	}
	return r.Seq, nil
}

// lost counts a record that could not be stored.
func (s *Spool) lost() {
	s.dropped++
	_ = s.writeState()
}

// rollIfNeeded starts a new segment when there is none, the current one is
// full, or the last write failed.
func (s *Spool) rollIfNeeded(size int64) error {
	if s.w != nil && len(s.segs) > 0 && s.segs[len(s.segs)-1].size+size <= s.cfg.SegmentBytes {
		return nil
	}
	if s.w != nil && len(s.segs) > 0 && s.segs[len(s.segs)-1].size == 0 {
		return nil // an empty segment takes any record that fits the spool
	}
	if s.w != nil {
		if err := s.w.Sync(); err != nil {
			return fmt.Errorf("spool: fsync: %w", err)
		}
		_ = s.w.Close()
		s.w = nil
	}
	path := filepath.Join(s.cfg.Dir, segmentName(s.next))
	if n := len(s.segs); n > 0 && s.segs[n-1].path == path {
		// The last segment starts at the record that failed to go in:
		// it holds nothing else, so start it over.
		s.segs = s.segs[:n-1]
	}
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: new segment: %w", err)
	}
	if s.cfg.Sync != SyncNever {
		if err := syncDir(s.cfg.Dir); err != nil {
			_ = w.Close()
			return err
		}
	}
	s.w = w
	s.segs = append(s.segs, &segment{path: path})
	s.gc()
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: fsync directory: %w", err)
	}
	return nil
}

// headMeta returns the segment and metadata of the head record.
func (s *Spool) headMeta() (position, bool) {
	var out position
	for _, seg := range s.segs {
		if len(seg.recs) == 0 || seg.recs[len(seg.recs)-1].seq < s.head {
			continue
		}
		i := sort.Search(len(seg.recs), func(i int) bool { return seg.recs[i].seq >= s.head })
		out.seg, out.rec = seg, seg.recs[i]
		return out, true
	}
	return out, false
}

func (s *Spool) advance(m position) {
	s.head = m.rec.seq + 1
	s.queued--
	s.bytes -= int64(m.rec.size)
}

// gc deletes segments whose records are all acknowledged, except the one
// being appended to (it remembers the last sequence number).
func (s *Spool) gc() {
	for len(s.segs) > 1 {
		seg := s.segs[0]
		if len(seg.recs) > 0 && seg.recs[len(seg.recs)-1].seq >= s.head {
			return
		}
		if seg.r != nil {
			_ = seg.r.Close()
		}
		if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("offline buffer: cannot delete a delivered segment", "segment", filepath.Base(seg.path), "err", err)
			return
		}
		s.segs = s.segs[1:]
	}
}

// Peek returns the oldest unacknowledged record, and false when empty.
func (s *Spool) Peek() (Record, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Record{}, false, ErrClosed
	}
	m, ok := s.headMeta()
	if !ok {
		return Record{}, false, nil
	}
	if m.seg.r == nil {
		f, err := os.Open(m.seg.path)
		if err != nil {
			return Record{}, false, fmt.Errorf("spool: %w", err)
		}
		m.seg.r = f
	}
	buf := make([]byte, m.rec.size)
	if _, err := m.seg.r.ReadAt(buf, m.rec.off); err != nil {
		return Record{}, false, fmt.Errorf("spool: read record %d: %w", m.rec.seq, err)
	}
	r, _, err := DecodeRecord(buf)
	if err != nil {
		return Record{}, false, fmt.Errorf("spool: record %d: %w", m.rec.seq, err)
	}
	return r, true, nil
}

// Ack removes the head record, which must have sequence number seq (an
// Ack for a record already dropped by DropOldest is ignored).
func (s *Spool) Ack(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	m, ok := s.headMeta()
	if !ok || m.rec.seq != seq {
		return nil // dropped meanwhile
	}
	s.advance(m)
	s.gc()
	return s.writeState()
}

// writeState records head and dropped in place. It is not fsynced: a lost
// update only repeats acknowledged records (duplicates, not loss).
func (s *Spool) writeState() error {
	if _, err := s.state.WriteAt(encodeState(s.head, s.dropped), 0); err != nil {
		return fmt.Errorf("spool: write state: %w", err)
	}
	return nil
}

// Ready is signalled (capacity 1) after an Append; a drainer waits on it
// when Peek finds nothing.
func (s *Spool) Ready() <-chan struct{} { return s.ready }

func (s *Spool) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Stats returns the current counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Queued: s.queued, Bytes: s.bytes, Dropped: s.dropped, Corrupt: s.corrupt, Head: s.head, Next: s.next}
}

func (s *Spool) syncLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			if s.dirty && s.w != nil {
				if err := s.w.Sync(); err != nil {
					s.log.Warn("offline buffer: fsync", "err", err)
				}
				s.dirty = false
			}
			s.mu.Unlock()
		}
	}
}

// Close syncs and closes the files.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var err error
	if s.w != nil {
		err = s.w.Sync()
	}
	if s.state != nil {
		if serr := s.state.Sync(); err == nil {
			err = serr
		}
	}
	s.closeFiles()
	s.mu.Unlock()
	close(s.stop)
	s.wg.Wait()
	return err
}

func (s *Spool) closeFiles() {
	if s.w != nil {
		_ = s.w.Close()
	}
	if s.state != nil {
		_ = s.state.Close()
	}
	for _, seg := range s.segs {
		if seg.r != nil {
			_ = seg.r.Close()
		}
	}
}

// String names the spool for logs.
func (s *Spool) String() string {
	return "spool " + s.cfg.Dir + " (" + strconv.FormatInt(s.cfg.MaxBytes, 10) + " bytes)"
}
