package services

import (
	"encoding/binary"
	"io"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/lastmile-dm/lastmile/internal/bufpool"
	tunnelv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/tunnel/v1"
)

// connectCodec is gRPC's proto codec except for one message: it decodes a
// tunnel Connect request's bytes straight from the received HTTP/2 frames
// into a pooled buffer. The proto codec first joins the frames into one
// buffer and then copies the bytes field out of it into a fresh
// allocation: two copies, an allocation and its garbage for every byte an
// operator uploads (docs/performance.md, "Tunnel"). upload recycles the
// buffer once the bytes are in a tunnel frame.
//
// A request with anything the fast path does not expect (another field, a
// field of the wrong wire type) goes to the proto codec, so the result is
// always what proto.Unmarshal would give.
type connectCodec struct {
	encoding.CodecV2 // the proto codec
}

func newConnectCodec() connectCodec {
	return connectCodec{CodecV2: encoding.GetCodecV2(proto.Name)}
}

// Unmarshal implements encoding.CodecV2.
func (c connectCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*tunnelv1.ConnectRequest)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	r := data.Reader()
	defer func() { _ = r.Close() }()
	var d connectFields
	if !d.decode(r) {
		d.free()
		return c.CodecV2.Unmarshal(data, v)
	}
	m.Reset()
	m.TunnelId, m.Data, m.CloseWrite = d.tunnelID, d.data, d.closeWrite
	return nil
}

type connectFields struct {
	tunnelID   string
	data       []byte // from bufpool; nil when absent or empty
	closeWrite bool
}

func (d *connectFields) free() {
	if d.data != nil {
		recycle(d.data)
		d.data = nil
	}
}

// decode reads ConnectRequest's fields 1 (string), 2 (bytes) and 3 (bool)
// in any order, the last occurrence winning, as proto3 decodes them. It
// reports false for anything else (another field, another wire type,
// broken encoding, a tunnel ID that is not UTF-8): the proto codec then
// decodes the request, or words the error.
func (d *connectFields) decode(r *mem.Reader) bool {
	for r.Remaining() > 0 {
		tag, err := binary.ReadUvarint(r)
		if err != nil {
			return false
		}
		switch field, wire := tag>>3, tag&7; {
		case field == 3 && wire == 0:
			b, err := binary.ReadUvarint(r)
			if err != nil {
				return false
			}
			d.closeWrite = b != 0
		case (field == 1 || field == 2) && wire == 2:
			n, err := binary.ReadUvarint(r)
			if err != nil || n > uint64(r.Remaining()) { //nolint:gosec // Remaining >= 0
				return false
			}
			if field == 1 {
				b := make([]byte, n)
				if _, err := io.ReadFull(r, b); err != nil || !utf8.Valid(b) {
					return false
				}
				d.tunnelID = string(b)
				continue
			}
			d.free()
			if n == 0 {
				continue
			}
			bp := bufpool.Get(int(n)) //nolint:gosec // n <= Remaining
			if _, err := io.ReadFull(r, *bp); err != nil {
				bufpool.Put(bp)
				return false
			}
			d.data = *bp
		default:
			return false
		}
	}
	return true
}

// recycle returns a Connect request's bytes to the pool once they are
// sent on.
func recycle(data []byte) {
	if data != nil {
		bufpool.Put(&data) // the pool owns this copy of the slice header
	}
}
