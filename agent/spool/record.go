package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// On disk, a record is
//
//	magic   1 byte  0xA7
//	length  4 bytes big endian, of the body
//	crc     4 bytes big endian, CRC-32C of the body
//	body:   seq 8 | unix nanos 8 | topic length 2 | topic | payload
const (
	recordMagic   = 0xA7
	headerSize    = 1 + 4 + 4
	bodyFixedSize = 8 + 8 + 2
	// MaxRecordSize bounds one record's body, so a corrupt length can never
	// make the parser allocate much.
	MaxRecordSize = 4 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Record is one spooled message.
type Record struct {
	Seq     uint64
	Time    time.Time
	Topic   string
	Payload []byte
}

// Errors of the record parser.
var (
	// ErrShortRecord means the buffer ends inside a record: at the end of a
	// segment, a write that a crash cut short.
	ErrShortRecord = errors.New("spool: truncated record")
	// ErrCorruptRecord means the bytes are not a record (bad magic, length,
	// checksum or topic).
	ErrCorruptRecord = errors.New("spool: corrupt record")
)

// size is the framed size of r on disk.
func (r *Record) size() int { return headerSize + bodyFixedSize + len(r.Topic) + len(r.Payload) }

// appendRecord appends r, framed, to dst.
func appendRecord(dst []byte, r *Record) ([]byte, error) {
	if len(r.Topic) == 0 || len(r.Topic) > 0xFFFF {
		return dst, fmt.Errorf("%w: topic length %d", ErrCorruptRecord, len(r.Topic))
	}
	body := bodyFixedSize + len(r.Topic) + len(r.Payload)
	if body > MaxRecordSize {
		return dst, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, body, MaxRecordSize)
	}
	start := len(dst)
	dst = append(dst, recordMagic, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, r.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.Time.UnixNano()))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(r.Topic)))
	dst = append(dst, r.Topic...)
	dst = append(dst, r.Payload...)
	binary.BigEndian.PutUint32(dst[start+1:], uint32(body))
	binary.BigEndian.PutUint32(dst[start+5:], crc32.Checksum(dst[start+headerSize:], crcTable))
	return dst, nil
}

// DecodeRecord parses the record at the start of b and returns it with the
// number of bytes it took. The record's Payload aliases b.
func DecodeRecord(b []byte) (Record, int, error) {
	if len(b) < headerSize {
		return Record{}, 0, ErrShortRecord
	}
	if b[0] != recordMagic {
		return Record{}, 0, fmt.Errorf("%w: bad magic 0x%02x", ErrCorruptRecord, b[0])
	}
	n := binary.BigEndian.Uint32(b[1:])
	if n < bodyFixedSize+1 || n > MaxRecordSize {
		return Record{}, 0, fmt.Errorf("%w: body length %d", ErrCorruptRecord, n)
	}
	if uint64(len(b)-headerSize) < uint64(n) {
		return Record{}, 0, ErrShortRecord
	}
	body := b[headerSize : headerSize+int(n)]
	if crc32.Checksum(body, crcTable) != binary.BigEndian.Uint32(b[5:]) {
		return Record{}, 0, fmt.Errorf("%w: checksum mismatch", ErrCorruptRecord)
	}
	tl := int(binary.BigEndian.Uint16(body[16:]))
	if tl == 0 || bodyFixedSize+tl > len(body) {
		return Record{}, 0, fmt.Errorf("%w: topic length %d in a %d-byte body", ErrCorruptRecord, tl, len(body))
	}
	r := Record{
		Seq:     binary.BigEndian.Uint64(body),
		Time:    time.Unix(0, int64(binary.BigEndian.Uint64(body[8:]))),
		Topic:   string(body[bodyFixedSize : bodyFixedSize+tl]),
		Payload: body[bodyFixedSize+tl:],
	}
	return r, headerSize + int(n), nil
}

// The state file: head 8 | dropped 8 | crc 4 (CRC-32C of the 16 bytes).
const stateSize = 20

func encodeState(head, dropped uint64) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, stateSize), head)
	b = binary.BigEndian.AppendUint64(b, dropped)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func decodeState(b []byte) (head, dropped uint64, err error) {
	if len(b) != stateSize || crc32.Checksum(b[:16], crcTable) != binary.BigEndian.Uint32(b[16:]) {
		return 0, 0, fmt.Errorf("%w: state file of %d bytes", ErrCorruptRecord, len(b))
	}
	return binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:]), nil
}

func crc(b []byte) uint32 { return crc32.Checksum(b, crcTable) }
