package packets

import (
	"bytes"
	"errors"
	"reflect"
	"runtime"
	"testing"

	upstream "github.com/eclipse/paho.golang/packets"
)

// encoded returns the wire form of some packets of every kind a client
// reads, for the fuzz corpus and the tests.
func encoded(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	add := func(cp *ControlPacket) {
		var b bytes.Buffer
		if _, err := cp.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Bytes())
	}
	for _, p := range []*Publish{
		{Topic: "a/b", QoS: 0, Payload: []byte("hello"), Properties: &Properties{}},
		{Topic: "$dm/dev1/tunnel/x", QoS: 1, PacketID: 7, Payload: bytes.Repeat([]byte{1, 2, 3}, 50000),
			Properties: &Properties{CorrelationData: []byte("c"), ResponseTopic: "r", User: []User{{"k", "v"}}}},
		{Topic: "t", QoS: 2, PacketID: 9, Retain: true, Duplicate: true, Properties: &Properties{}},
	} {
		cp := NewControlPacket(PUBLISH)
		cp.Content = p
		add(cp)
	}
	for _, ty := range []byte{CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, PINGRESP, DISCONNECT, AUTH} {
		add(NewControlPacket(ty))
	}
	return out
}

// FuzzReadPacketMatchesUpstream: the fork's ReadPacket decodes any input
// exactly as upstream paho's does, and fails where upstream fails.
func FuzzReadPacketMatchesUpstream(f *testing.F) {
	for _, b := range encoded(f) {
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, gerr := ReadPacket(bytes.NewReader(data))
		if errors.Is(gerr, ErrMalformedVBI) {
			return // upstream reads such an integer on; MQTT and the fork refuse it
		}
		if n, ok := remaining(data); ok && n > len(data) {
			// A truncated packet: both fail, and upstream would first
			// allocate up to 256 MiB for it.
			if gerr == nil {
				t.Fatalf("fork read a %d-byte packet from %d bytes", n, len(data))
			}
			return
		}
		want, werr := upstream.ReadPacket(bytes.NewReader(data))
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("fork err %v, upstream err %v", gerr, werr)
		}
		if gerr != nil {
			return
		}
		if got.Type != want.Type || got.Flags != want.Flags {
			t.Fatalf("fork header %v/%v, upstream %v/%v", got.Type, got.Flags, want.Type, want.Flags)
		}
		// The forks' types are copies of upstream's: compare field by field.
		gv, wv := reflect.ValueOf(got.Content).Elem(), reflect.ValueOf(want.Content).Elem()
		if !sameFields(gv, wv) {
			t.Fatalf("fork decoded %+v, upstream %+v", got.Content, want.Content)
		}
	})
}

// remaining decodes the remaining length of the packet data starts with.
func remaining(data []byte) (int, bool) {
	n, shift := 0, 0
	for i := 1; i < len(data) && i <= 4; i++ {
		n |= int(data[i]&0x7f) << shift
		if data[i] < 0x80 {
			return n, true
		}
		shift += 7
	}
	return 0, false
}

// sameFields compares two structs of identically shaped types.
func sameFields(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameFields(a.Elem(), b.Elem())
	case reflect.Struct:
		if a.NumField() != b.NumField() {
			return false
		}
		for i := range a.NumField() {
			if a.Type().Field(i).Name != b.Type().Field(i).Name || !sameFields(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !sameFields(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	default:
		if !a.CanInterface() {
			return reflect.DeepEqual(a.String(), b.String()) && a.Kind() == b.Kind()
		}
		return reflect.DeepEqual(a.Interface(), b.Interface())
	}
}

func TestReadPacketMatchesUpstream(t *testing.T) {
	for i, b := range encoded(t) {
		got, err := ReadPacket(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		want, err := upstream.ReadPacket(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("packet %d upstream: %v", i, err)
		}
		if !sameFields(reflect.ValueOf(got.Content).Elem(), reflect.ValueOf(want.Content).Elem()) {
			t.Fatalf("packet %d: fork decoded %+v, upstream %+v", i, got.Content, want.Content)
		}
	}
}

// TestReadPublishAllocatesItsSizeOnce: reading a PUBLISH allocates about
// its size once (upstream: about three times, growing two buffers).
func TestReadPublishAllocatesItsSizeOnce(t *testing.T) {
	const size, n = 192 << 10, 50
	cp := NewControlPacket(PUBLISH)
	cp.Content = &Publish{Topic: "$dm/dev1/tunnel/s", QoS: 0, Payload: make([]byte, size), Properties: &Properties{}}
	var wire bytes.Buffer
	for range n {
		if _, err := cp.WriteTo(&wire); err != nil {
			t.Fatal(err)
		}
	}
	r := bytes.NewReader(wire.Bytes())
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		p, err := ReadPacket(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(p.Content.(*Publish).Payload); got != size {
			t.Fatalf("payload %d bytes, want %d", got, size)
		}
	}
	runtime.ReadMemStats(&after)
	if per := float64(after.TotalAlloc-before.TotalAlloc) / n; per > 1.2*size {
		t.Fatalf("reading a %d-byte PUBLISH allocated %.0f bytes, want about its size once", size, per)
	}
}
