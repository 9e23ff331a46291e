package tunnel

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// wire fixtures: each frame with its exact encoding, decoded and encoded by
// the same table so the two cannot drift.
var wire = []struct {
	name  string
	frame Frame
	hex   string
}{
	{"session-open", Frame{Type: TypeSessionOpen, Seq: 1, Target: "127.0.0.1:22", Token: []byte("tok")},
		"01" + "01" + "0000000000000001" + "00000000" + "0c" + hex.EncodeToString([]byte("127.0.0.1:22")) + "0003" + hex.EncodeToString([]byte("tok"))},
	{"session-accept", Frame{Type: TypeSessionAccept, Seq: 1}, "01020000000000000001" + "00000000"},
	{"session-reject", Frame{Type: TypeSessionReject, Seq: 1, Reason: ReasonNotAllowed, Message: "no"},
		"01030000000000000001" + "00000000" + "01" + "0002" + "6e6f"},
	{"session-close", Frame{Type: TypeSessionClose, Seq: 9, Reason: ReasonIdle}, "01040000000000000009" + "00000000" + "04" + "0000"},
	{"open", Frame{Type: TypeOpen, Seq: 2, Stream: 1, Window: 0x80000}, "01050000000000000002" + "00000001" + "00080000"},
	{"accept", Frame{Type: TypeAccept, Seq: 2, Stream: 1, Window: 1}, "01060000000000000002" + "00000001" + "00000001"},
	{"reject", Frame{Type: TypeReject, Seq: 3, Stream: 3, Reason: ReasonDialFailed, Message: "x"},
		"01070000000000000003" + "00000003" + "03" + "0001" + "78"},
	{"data", Frame{Type: TypeData, Seq: 0x0102030405060708, Stream: 0xfffffffe, Data: []byte{0, 1, 2}},
		"01080102030405060708" + "fffffffe" + "000102"},
	{"window", Frame{Type: TypeWindow, Seq: 5, Stream: 2, Window: 65536}, "01090000000000000005" + "00000002" + "00010000"},
	{"fin", Frame{Type: TypeFin, Seq: 6, Stream: 2}, "010a0000000000000006" + "00000002"},
	{"reset", Frame{Type: TypeReset, Seq: 7, Stream: 2, Reason: ReasonFlowControl, Message: ""},
		"010b0000000000000007" + "00000002" + "0a" + "0000"},
	{"ping", Frame{Type: TypePing, Seq: 8, Nonce: 42}, "010c0000000000000008" + "00000000" + "000000000000002a"},
	{"pong", Frame{Type: TypePong, Seq: 8, Nonce: 42}, "010d0000000000000008" + "00000000" + "000000000000002a"},
}

func TestFrameFixtures(t *testing.T) {
	t.Parallel()
	for _, c := range wire {
		b, err := c.frame.Encode()
		if err != nil {
			t.Fatalf("%s: encode: %v", c.name, err)
		}
		if got := hex.EncodeToString(b); got != c.hex {
			t.Errorf("%s: encoded\n %s\nwant\n %s", c.name, got, c.hex)
		}
		raw, _ := hex.DecodeString(c.hex)
		f, err := Decode(raw)
		if err != nil {
			t.Fatalf("%s: decode: %v", c.name, err)
		}
		if !reflect.DeepEqual(normal(f), normal(c.frame)) {
			t.Errorf("%s: decoded %+v, want %+v", c.name, f, c.frame)
		}
	}
}

func normal(f Frame) Frame {
	if len(f.Data) == 0 {
		f.Data = nil
	}
	if len(f.Token) == 0 {
		f.Token = nil
	}
	return f
}

func TestDecodeRefusesBadFrames(t *testing.T) {
	t.Parallel()
	h := func(s string) []byte { b, _ := hex.DecodeString(s); return b }
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrShortFrame},
		{"short header", h("0108000000"), ErrShortFrame},
		{"version 2", h("02080000000000000001" + "00000001" + "00"), ErrVersion},
		{"type 0", h("01000000000000000001" + "00000001"), ErrFrameType},
		{"type 200", h("01c80000000000000001" + "00000001"), ErrFrameType},
		{"seq 0", h("01080000000000000000" + "00000001" + "00"), ErrMalformed},
		{"empty data", h("01080000000000000001" + "00000001"), ErrMalformed},
		{"data on stream 0", h("01080000000000000001" + "00000000" + "00"), ErrMalformed},
		{"ping on a stream", h("010c0000000000000001" + "00000001" + "000000000000002a"), ErrMalformed},
		{"zero window", h("01090000000000000001" + "00000001" + "00000000"), ErrMalformed},
		{"window short", h("01090000000000000001" + "00000001" + "0000"), ErrShortFrame},
		{"window trailing", h("01090000000000000001" + "00000001" + "0000000100"), ErrMalformed},
		{"fin trailing", h("010a0000000000000001" + "00000001" + "00"), ErrMalformed},
		{"open no target", h("01010000000000000001" + "00000000" + "00" + "0000"), ErrMalformed},
		{"open target overruns", h("01010000000000000001" + "00000000" + "05" + "6162"), ErrShortFrame},
		{"open token overruns", h("01010000000000000001" + "00000000" + "01" + "61" + "0005" + "00"), ErrShortFrame},
		{"reset no reason", h("010b0000000000000001" + "00000001"), ErrShortFrame},
		{"reset message overruns", h("010b0000000000000001" + "00000001" + "01" + "0009" + "00"), ErrShortFrame},
		{"reset message too long", append(h("010b0000000000000001"+"00000001"+"01"+"0401"), bytes.Repeat([]byte("a"), 1025)...), ErrMalformed},
		{"data too long", append(h("01080000000000000001"+"00000001"), make([]byte, MaxData+1)...), ErrMalformed},
	}
	for _, c := range cases {
		if _, err := Decode(c.in); !errors.Is(err, c.want) {
			t.Errorf("%s: Decode = %v, want %v", c.name, err, c.want)
		}
	}
}

// FuzzDecode: any input decodes or fails cleanly, and what decodes
// re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	for _, c := range wire {
		b, _ := hex.DecodeString(c.hex)
		f.Add(b)
	}
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Decode(b)
		if err != nil {
			return
		}
		again, err := fr.Encode()
		if err != nil {
			t.Fatalf("decoded frame %+v does not encode: %v", fr, err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x, was %x", again, b)
		}
	})
}

func TestTokens(t *testing.T) {
	t.Parallel()
	pub, key, _ := ed25519.GenerateKey(nil)
	other, otherKey, _ := ed25519.GenerateKey(nil)
	now := time.Unix(1_800_000_000, 0)
	c := Claims{Device: "d1", Session: "s1", Target: "127.0.0.1:22", Principal: "op", IssuedAt: now.Unix(), Expires: now.Add(30 * time.Second).Unix()}
	tok, err := SignToken(c, key)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := VerifyToken(tok, []ed25519.PublicKey{other, pub}, "d1", "s1", "127.0.0.1:22", now); err != nil || got != c {
		t.Fatalf("good token: %+v %v", got, err)
	}
	forged, _ := SignToken(c, otherKey)
	tampered := bytes.Replace(bytes.Clone(tok), []byte("127.0.0.1:22"), []byte("127.0.0.1:23"), 1)
	cases := []struct {
		name                    string
		tok                     []byte
		dev, sess, target, want string
		at                      time.Time
	}{
		{"other device", tok, "d2", "s1", "127.0.0.1:22", "another device", now},
		{"other session", tok, "d1", "s2", "127.0.0.1:22", "another session", now},
		{"other target", tok, "d1", "s1", "127.0.0.1:80", "another target", now},
		{"expired", tok, "d1", "s1", "127.0.0.1:22", "expired", now.Add(30 * time.Second)},
		{"future", tok, "d1", "s1", "127.0.0.1:22", "future", now.Add(-2 * time.Minute)},
		{"forged", forged, "d1", "s1", "127.0.0.1:22", "signature", now},
		{"tampered", tampered, "d1", "s1", "127.0.0.1:23", "signature", now},
		{"empty", nil, "d1", "s1", "127.0.0.1:22", "length", now},
		{"signature only", make([]byte, 64), "d1", "s1", "127.0.0.1:22", "length", now},
	}
	for _, k := range cases {
		_, err := VerifyToken(k.tok, []ed25519.PublicKey{pub}, k.dev, k.sess, k.target, k.at)
		if !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), k.want) {
			t.Errorf("%s: %v, want ErrBadToken mentioning %q", k.name, err, k.want)
		}
	}
}

// FuzzParseToken: arbitrary bytes never verify and never crash; a token
// signed over arbitrary claims round-trips.
func FuzzParseToken(f *testing.F) {
	pub, key, _ := ed25519.GenerateKey(nil)
	good, _ := SignToken(Claims{Device: "d", Session: "s", Target: "h:1", Expires: 9}, key)
	f.Add(good, "d", "h:1")
	f.Add([]byte("{}"), "", "")
	f.Fuzz(func(t *testing.T, b []byte, dev, target string) {
		if !bytes.Equal(b, good) {
			if _, err := ParseToken(b, []ed25519.PublicKey{pub}); err == nil {
				t.Fatalf("unsigned bytes %x verified", b)
			}
		}
		c := Claims{Device: dev, Session: "s", Target: target, Expires: 10}
		tok, err := SignToken(c, key)
		if err != nil {
			if utf8.ValidString(dev) && utf8.ValidString(target) && len(dev)+len(target) < MaxTokenLen/8 {
				t.Fatalf("SignToken(%q, %q): %v", dev, target, err)
			}
			return // not UTF-8, or too long
		}
		got, err := ParseToken(tok, []ed25519.PublicKey{pub})
		if err != nil {
			t.Fatalf("signed token does not parse: %v", err)
		}
		if got.Device != dev || got.Target != target {
			t.Fatalf("device %q, target %q came back as %q, %q", dev, target, got.Device, got.Target)
		}
	})
}
