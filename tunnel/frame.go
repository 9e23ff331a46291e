package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the frame format version, the first byte of every frame.
const Version = 1

// HeaderLen is the fixed part of every frame: version, type, sequence
// number and stream ID.
const HeaderLen = 1 + 1 + 8 + 4

// DefaultMaxData is the largest data frame body a side sends unless
// configured otherwise. 64 KiB fits any broker packet limit from 65 KiB up
// with room for the topic and header, so an agent needs no setting; the
// platform knows its broker's limit and sends frames up to MaxData
// (docs/tunnel.md).
const DefaultMaxData = 64 << 10

// MaxData is the largest data frame body this package ever accepts.
const MaxData = 192 << 10

// MaxTargetLen and MaxTokenLen bound the variable fields of a session open.
const (
	MaxTargetLen = 255
	MaxTokenLen  = 2048
	MaxReasonLen = 1024
)

// Type says what a frame means.
type Type uint8

// Frame types. Session-level frames carry stream 0.
const (
	TypeSessionOpen   Type = 1  // platform -> device: Target, Token
	TypeSessionAccept Type = 2  // device -> platform
	TypeSessionReject Type = 3  // device -> platform: Reason, Message
	TypeSessionClose  Type = 4  // either way: Reason, Message
	TypeOpen          Type = 5  // open stream: Window (the opener's receive window)
	TypeAccept        Type = 6  // stream accepted: Window (the acceptor's receive window)
	TypeReject        Type = 7  // stream refused: Reason, Message
	TypeData          Type = 8  // stream bytes: Data
	TypeWindow        Type = 9  // credit: Window more bytes may be sent
	TypeFin           Type = 10 // the sender will send no more data on the stream
	TypeReset         Type = 11 // the stream is aborted both ways: Reason, Message
	TypePing          Type = 12 // Nonce
	TypePong          Type = 13 // Nonce echoed
)

var typeNames = [...]string{"", "session-open", "session-accept", "session-reject", "session-close",
	"open", "accept", "reject", "data", "window", "fin", "reset", "ping", "pong"}

func (t Type) String() string {
	if int(t) < len(typeNames) && t != 0 {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Reason says why a session or stream was refused or ended.
type Reason uint8

// Reasons.
const (
	ReasonNormal       Reason = 0  // orderly close
	ReasonNotAllowed   Reason = 1  // target not on the agent's allow-list
	ReasonBadToken     Reason = 2  // token missing, forged, expired, replayed or for another device/target
	ReasonDialFailed   Reason = 3  // the agent could not connect to the target
	ReasonIdle         Reason = 4  // idle timeout
	ReasonLifetime     Reason = 5  // maximum session lifetime reached
	ReasonLost         Reason = 6  // frames were lost (sequence gap); the session cannot continue
	ReasonProtocol     Reason = 7  // the peer broke the protocol
	ReasonTooMany      Reason = 8  // too many sessions or streams
	ReasonShutdown     Reason = 9  // the side is shutting down
	ReasonFlowControl  Reason = 10 // the peer sent more than its credit
	ReasonPeerGone     Reason = 11 // the peer stopped answering pings
	ReasonUnknown      Reason = 12 // unknown session or stream
	ReasonClosedByUser Reason = 13 // an operator closed the session
)

var reasonNames = [...]string{"normal", "target not allowed", "bad token", "dial failed", "idle timeout",
	"maximum lifetime reached", "frames lost", "protocol error", "too many sessions or streams",
	"shutting down", "flow control violated", "peer not answering", "unknown session or stream", "closed by operator"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Frame is one tunnel message; one frame is one MQTT PUBLISH payload.
// Which fields are meaningful depends on Type.
type Frame struct {
	Type   Type
	Seq    uint64 // per session and direction, from 1, no gaps
	Stream uint32 // 0 for session frames

	Target  string // SessionOpen
	Token   []byte // SessionOpen
	Window  uint32 // Open, Accept, Window
	Data    []byte // Data; aliases the decoded buffer
	Reason  Reason // SessionReject, SessionClose, Reject, Reset
	Message string // SessionReject, SessionClose, Reject, Reset
	Nonce   uint64 // Ping, Pong
}

// Decoding errors.
var (
	// ErrShortFrame: the frame ends before its fields do.
	ErrShortFrame = errors.New("tunnel: frame too short")
	// ErrVersion: the frame has another format version.
	ErrVersion = errors.New("tunnel: unsupported frame version")
	// ErrFrameType: the type byte is unknown.
	ErrFrameType = errors.New("tunnel: unknown frame type")
	// ErrMalformed: a field is out of range or the frame has trailing bytes.
	ErrMalformed = errors.New("tunnel: malformed frame")
)

// appendHeader appends the HeaderLen bytes every frame starts with.
func appendHeader(b []byte, t Type, seq uint64, stream uint32) []byte {
	b = append(b, Version, byte(t))
	b = binary.BigEndian.AppendUint64(b, seq)
	return binary.BigEndian.AppendUint32(b, stream)
}

// Append encodes f at the end of b.
func (f *Frame) Append(b []byte) ([]byte, error) {
	if f.Type == 0 || int(f.Type) >= len(typeNames) {
		return nil, fmt.Errorf("%w: %d", ErrFrameType, f.Type)
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	b = appendHeader(b, f.Type, f.Seq, f.Stream)
	switch f.Type {
	case TypeSessionOpen:
		b = append(b, byte(len(f.Target)))
		b = append(b, f.Target...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(f.Token))) //nolint:gosec // checked
		b = append(b, f.Token...)
	case TypeSessionReject, TypeSessionClose, TypeReject, TypeReset:
		b = append(b, byte(f.Reason))
		b = binary.BigEndian.AppendUint16(b, uint16(len(f.Message))) //nolint:gosec // checked
		b = append(b, f.Message...)
	case TypeOpen, TypeAccept, TypeWindow:
		b = binary.BigEndian.AppendUint32(b, f.Window)
	case TypeData:
		b = append(b, f.Data...)
	case TypePing, TypePong:
		b = binary.BigEndian.AppendUint64(b, f.Nonce)
	}
	return b, nil
}

// Encode returns f's wire form.
func (f *Frame) Encode() ([]byte, error) {
	return f.Append(make([]byte, 0, f.encodedLen()))
}

// encodedLen bounds the length of f's wire form.
func (f *Frame) encodedLen() int {
	return HeaderLen + 16 + len(f.Data) + len(f.Target) + len(f.Token) + len(f.Message)
}

// check validates the fields both Append and Decode care about.
func (f *Frame) check() error {
	session := f.Type <= TypeSessionClose || f.Type == TypePing || f.Type == TypePong
	if session != (f.Stream == 0) {
		return fmt.Errorf("%w: %s frame with stream %d", ErrMalformed, f.Type, f.Stream)
	}
	switch {
	case f.Seq == 0:
		return fmt.Errorf("%w: sequence number 0", ErrMalformed)
	case len(f.Target) > MaxTargetLen:
		return fmt.Errorf("%w: target longer than %d bytes", ErrMalformed, MaxTargetLen)
	case len(f.Token) > MaxTokenLen:
		return fmt.Errorf("%w: token longer than %d bytes", ErrMalformed, MaxTokenLen)
	case len(f.Message) > MaxReasonLen:
		return fmt.Errorf("%w: message longer than %d bytes", ErrMalformed, MaxReasonLen)
	case len(f.Data) > MaxData:
		return fmt.Errorf("%w: data longer than %d bytes", ErrMalformed, MaxData)
	case f.Type == TypeData && len(f.Data) == 0:
		return fmt.Errorf("%w: empty data frame", ErrMalformed)
	case f.Type == TypeWindow && f.Window == 0:
		return fmt.Errorf("%w: zero window update", ErrMalformed)
	case f.Type == TypeSessionOpen && f.Target == "":
		return fmt.Errorf("%w: session open without a target", ErrMalformed)
	}
	return nil
}

// Decode parses one frame. Data in the result aliases b.
func Decode(b []byte) (Frame, error) {
	var f Frame
	if len(b) < HeaderLen {
		return f, ErrShortFrame
	}
	if b[0] != Version {
		return f, fmt.Errorf("%w: %d", ErrVersion, b[0])
	}
	f.Type = Type(b[1])
	if f.Type == 0 || int(f.Type) >= len(typeNames) {
		return f, fmt.Errorf("%w: %d", ErrFrameType, b[1])
	}
	f.Seq = binary.BigEndian.Uint64(b[2:])
	f.Stream = binary.BigEndian.Uint32(b[10:])
	r := b[HeaderLen:]
	var ok bool
	switch f.Type {
	case TypeSessionOpen:
		var target []byte
		if target, r, ok = cut8(r); !ok {
			return f, ErrShortFrame
		}
		f.Target = string(target)
		if f.Token, r, ok = cut16(r); !ok {
			return f, ErrShortFrame
		}
		f.Token = append([]byte(nil), f.Token...)
	case TypeSessionReject, TypeSessionClose, TypeReject, TypeReset:
		if len(r) < 1 {
			return f, ErrShortFrame
		}
		f.Reason = Reason(r[0])
		var msg []byte
		if msg, r, ok = cut16(r[1:]); !ok {
			return f, ErrShortFrame
		}
		f.Message = string(msg)
	case TypeOpen, TypeAccept, TypeWindow:
		if len(r) < 4 {
			return f, ErrShortFrame
		}
		f.Window, r = binary.BigEndian.Uint32(r), r[4:]
	case TypeData:
		f.Data, r = r, nil
	case TypePing, TypePong:
		if len(r) < 8 {
			return f, ErrShortFrame
		}
		f.Nonce, r = binary.BigEndian.Uint64(r), r[8:]
	}
	if len(r) != 0 {
		return f, fmt.Errorf("%w: %d trailing bytes after %s", ErrMalformed, len(r), f.Type)
	}
	if err := f.check(); err != nil {
		return f, err
	}
	return f, nil
}

func cut8(b []byte) (field, rest []byte, ok bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return nil, nil, false
	}
	return b[1 : 1+int(b[0])], b[1+int(b[0]):], true
}

func cut16(b []byte) (field, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return nil, nil, false
	}
	return b[2 : 2+n], b[2+n:], true
}
