package services

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	tunnelv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/tunnel/v1"
)

// slice cuts b into pieces of at most n bytes, as HTTP/2 frames do.
func slice(b []byte, n int) mem.BufferSlice {
	n = max(n, 1)
	var s mem.BufferSlice
	for len(b) > 0 {
		k := min(n, len(b))
		s = append(s, mem.SliceBuffer(append([]byte(nil), b[:k]...)))
		b = b[k:]
	}
	return s
}

// checkConnect decodes b with connectCodec and with proto.Unmarshal and
// fails unless both agree.
func checkConnect(t *testing.T, b []byte, piece int) {
	t.Helper()
	want := &tunnelv1.ConnectRequest{}
	werr := proto.Unmarshal(b, want)
	got := &tunnelv1.ConnectRequest{TunnelId: "stale", Data: []byte("stale"), CloseWrite: true}
	gerr := newConnectCodec().Unmarshal(slice(b, piece), got)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%x: proto says %v, connectCodec %v", b, werr, gerr)
	}
	if werr == nil && (got.GetTunnelId() != want.GetTunnelId() || !bytes.Equal(got.GetData(), want.GetData()) ||
		got.GetCloseWrite() != want.GetCloseWrite()) {
		t.Fatalf("%x: decoded %q %q %v, want %q %q %v", b, got.GetTunnelId(), got.GetData(), got.GetCloseWrite(),
			want.GetTunnelId(), want.GetData(), want.GetCloseWrite())
	}
}

func connectFixtures() [][]byte {
	m := func(r *tunnelv1.ConnectRequest) []byte { b, _ := proto.Marshal(r); return b }
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000)
	f := [][]byte{
		{},
		m(&tunnelv1.ConnectRequest{TunnelId: "0123456789abcdef0123456789abcdef"}),
		m(&tunnelv1.ConnectRequest{Data: []byte("hello")}),
		m(&tunnelv1.ConnectRequest{Data: big}),
		m(&tunnelv1.ConnectRequest{Data: big, CloseWrite: true}),
		m(&tunnelv1.ConnectRequest{CloseWrite: true}),
		{0x12, 0x00},             // empty data field
		{0x12, 0x05, 'a', 'b'},   // data longer than the message
		{0x0a, 0x02, 0xff, 0xfe}, // tunnel ID not UTF-8
		{0x18, 0x80},             // truncated varint
		{0x00, 0x01},             // field number 0
		{0x18, 0x02},             // close_write = 2 (true)
		{0x20, 0x01},             // unknown field 4
		{0x15, 1, 2, 3, 4},       // data with the wrong wire type
		{0x1b, 0x1c},             // a group
	}
	// Repeated fields: the last one wins.
	twice := protowire.AppendTag(nil, 2, protowire.BytesType)
	twice = protowire.AppendBytes(twice, []byte("first"))
	twice = protowire.AppendTag(twice, 2, protowire.BytesType)
	twice = protowire.AppendBytes(twice, []byte("second"))
	twice = protowire.AppendTag(twice, 3, protowire.VarintType)
	twice = protowire.AppendVarint(twice, 1)
	twice = protowire.AppendTag(twice, 3, protowire.VarintType)
	twice = protowire.AppendVarint(twice, 0)
	return append(f, twice)
}

func TestConnectCodecMatchesProto(t *testing.T) {
	t.Parallel()
	for _, b := range connectFixtures() {
		for _, piece := range []int{1, 3, 16 << 10, 1 << 20} {
			checkConnect(t, b, piece)
		}
	}
	// Other messages go to the proto codec.
	b, _ := proto.Marshal(&tunnelv1.ConnectResponse{Data: []byte("x"), CloseWrite: true})
	var r tunnelv1.ConnectResponse
	if err := newConnectCodec().Unmarshal(slice(b, 1), &r); err != nil || string(r.GetData()) != "x" || !r.GetCloseWrite() {
		t.Fatalf("ConnectResponse: %v %v", &r, err)
	}
}

func FuzzConnectCodec(f *testing.F) {
	for _, b := range connectFixtures() {
		f.Add(b, 7)
	}
	f.Fuzz(func(t *testing.T, b []byte, piece int) {
		checkConnect(t, b, piece%(64<<10))
	})
}
