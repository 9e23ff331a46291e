package shadow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Limits bound what a shadow may hold and what a request may cost.
type Limits struct {
	// MaxDocumentBytes bounds a request payload and the JSON of a shadow's
	// state (desired + reported, metadata excluded). Default 8 KiB.
	MaxDocumentBytes int
	// MaxDepth bounds the nesting of desired and reported: {"a":{"b":1}}
	// has depth 2. Default 8.
	MaxDepth int
	// MaxInFlight bounds the requests one MQTT connection may have queued
	// or running; more are rejected with 429. Default 16.
	MaxInFlight int
	// MaxNamedShadows bounds the named shadows of one device. Default 32.
	MaxNamedShadows int
}

// Defaults for Limits.
const (
	DefaultMaxDocumentBytes = 8 << 10
	DefaultMaxDepth         = 8
	DefaultMaxInFlight      = 16
	DefaultMaxNamedShadows  = 32
	// MaxClientTokenLen is the longest clientToken, as in AWS IoT.
	MaxClientTokenLen = 64
	// MaxNameLen is the longest shadow name, as in AWS IoT.
	MaxNameLen = 64
)

// CheckAndSetDefaults validates l and fills defaults.
func (l *Limits) CheckAndSetDefaults() error {
	if l.MaxDocumentBytes < 0 || l.MaxDepth < 0 || l.MaxInFlight < 0 || l.MaxNamedShadows < 0 {
		return errors.New("shadow: limits must not be negative")
	}
	if l.MaxDocumentBytes == 0 {
		l.MaxDocumentBytes = DefaultMaxDocumentBytes
	}
	if l.MaxDepth == 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxInFlight == 0 {
		l.MaxInFlight = DefaultMaxInFlight
	}
	if l.MaxNamedShadows == 0 {
		l.MaxNamedShadows = DefaultMaxNamedShadows
	}
	return nil
}

// ValidName reports whether name can name a named shadow: 1-64 characters
// of [A-Za-z0-9:_-]. The classic shadow's name is "".
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == ':', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Update is a parsed update request.
type Update struct {
	// Desired and Reported are the patches; nil when the request did not
	// name that half.
	Desired, Reported Object
	// ClearDesired / ClearReported: the request set that half to null,
	// which deletes all of it.
	ClearDesired, ClearReported bool
	// Version, when set, must equal the stored version.
	Version *uint64
	// ClientToken is echoed in the responses.
	ClientToken string
}

// Request is a parsed get or delete request: both payloads are optional.
type Request struct {
	ClientToken string
	// Version (delete only), when set, must equal the stored version.
	Version *uint64
}

// decodeObject parses payload as one JSON object with canonical numbers.
func decodeObject(payload []byte, lim Limits) (Object, error) {
	if len(payload) > lim.MaxDocumentBytes {
		return nil, fmt.Errorf("%w: payload is %d bytes, the limit is %d", ErrTooLarge, len(payload), lim.MaxDocumentBytes)
	}
	if !utf8.Valid(payload) {
		return nil, fmt.Errorf("%w: payload is not UTF-8 JSON", ErrInvalid)
	}
	v, err := parseJSON(payload)
	if err != nil {
		var se *jsonSyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%w: payload is not valid JSON: %s", ErrInvalid, se.Error())
		}
		return nil, err
	}
	o, ok := v.(Object)
	if !ok {
		return nil, fmt.Errorf("%w: payload must be a JSON object", ErrInvalid)
	}
	return o, nil
}

func parseToken(o Object) (string, error) {
	v, ok := o["clientToken"]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%w: clientToken must be a string", ErrInvalid)
	}
	if len(s) > MaxClientTokenLen {
		return "", fmt.Errorf("%w: clientToken is longer than %d bytes", ErrInvalid, MaxClientTokenLen)
	}
	return s, nil
}

func parseVersion(o Object) (*uint64, error) {
	v, ok := o["version"]
	if !ok || v == nil {
		return nil, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return nil, fmt.Errorf("%w: version must be a number", ErrInvalid)
	}
	u, err := strconv.ParseUint(string(n), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: version must be a non-negative integer, got %s", ErrInvalid, n)
	}
	return &u, nil
}

// ParseUpdate parses an update request:
//
//	{"state": {"desired": {...}|null, "reported": {...}|null},
//	 "version": n, "clientToken": "..."}
//
// Errors wrap ErrInvalid (bad JSON, no state, unknown field, too deep) or
// ErrTooLarge. The clientToken is returned even on error when it could be
// read, so a rejection can echo it.
func ParseUpdate(payload []byte, lim Limits) (*Update, error) {
	o, err := decodeObject(payload, lim)
	if err != nil {
		return &Update{}, err
	}
	u := &Update{}
	if u.ClientToken, err = parseToken(o); err != nil {
		return u, err
	}
	for k := range o {
		if k != "state" && k != "version" && k != "clientToken" {
			return u, fmt.Errorf("%w: unknown field %q (want state, version, clientToken)", ErrInvalid, k)
		}
	}
	if u.Version, err = parseVersion(o); err != nil {
		return u, err
	}
	sv, ok := o["state"]
	if !ok || sv == nil {
		return u, fmt.Errorf("%w: missing state", ErrInvalid)
	}
	state, ok := sv.(Object)
	if !ok {
		return u, fmt.Errorf("%w: state must be an object", ErrInvalid)
	}
	if len(state) == 0 {
		return u, fmt.Errorf("%w: state must have desired or reported", ErrInvalid)
	}
	for k, v := range state {
		var dst *Object
		var clear *bool
		switch k {
		case "desired":
			dst, clear = &u.Desired, &u.ClearDesired
		case "reported":
			dst, clear = &u.Reported, &u.ClearReported
		default:
			return u, fmt.Errorf("%w: unknown field state.%s (want desired, reported)", ErrInvalid, k)
		}
		if v == nil {
			*clear = true
			continue
		}
		obj, ok := v.(Object)
		if !ok {
			return u, fmt.Errorf("%w: state.%s must be an object or null", ErrInvalid, k)
		}
		if d := depth(obj); d > lim.MaxDepth {
			return u, fmt.Errorf("%w: state.%s is nested %d levels deep, the limit is %d", ErrInvalid, k, d, lim.MaxDepth)
		}
		*dst = obj
	}
	return u, nil
}

// ParseRequest parses a get or delete request payload: empty, or
// {"clientToken": "...", "version": n}.
func ParseRequest(payload []byte, lim Limits) (*Request, error) {
	r := &Request{}
	if len(bytes.TrimSpace(payload)) == 0 {
		return r, nil
	}
	o, err := decodeObject(payload, lim)
	if err != nil {
		return r, err
	}
	if r.ClientToken, err = parseToken(o); err != nil {
		return r, err
	}
	for k := range o {
		if k != "version" && k != "clientToken" {
			return r, fmt.Errorf("%w: unknown field %q (want clientToken, version)", ErrInvalid, k)
		}
	}
	r.Version, err = parseVersion(o)
	return r, err
}
