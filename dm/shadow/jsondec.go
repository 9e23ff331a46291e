package shadow

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// parseJSON decodes one JSON value from b into the types shadows are made
// of (Object, []any, string, json.Number in canonical form, bool, nil),
// exactly as encoding/json with UseNumber followed by canonical would, and
// requires nothing but whitespace after it. It exists because decoding
// every update payload through encoding/json's reflection and Decoder was
// the largest domain cost of a shadow update. Errors describe the first
// problem and its byte offset; they do not wrap ErrInvalid (the caller
// says what was being parsed), except for numbers out of range.
func parseJSON(b []byte) (any, error) { return parseJSONWith(jsonParser{b: b}) }

// errNotExact is what jsonParser.strict refuses.
var errNotExact = errors.New("repeated key or non-canonical number")

func parseJSONWith(p jsonParser) (any, error) {
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.i < len(p.b) {
		return nil, errTrailing
	}
	return v, nil
}

// maxJSONDepth is encoding/json's nesting limit; the shadow limit
// (Limits.MaxDepth) is checked on the result, so that a refusal can still
// echo the clientToken.
const maxJSONDepth = 10000

var errTrailing = fmt.Errorf("%w: payload has data after the JSON object", ErrInvalid)

type jsonParser struct {
	b []byte
	i int
	// strict refuses (errNotExact) a repeated object key, where
	// encoding/json's last-one-wins into a map and its merge into a struct
	// differ, and a number not in canonical form, which encoding/json would
	// keep as written: for decoding stored documents exactly as
	// encoding/json does, or not at all.
	strict bool
}

type jsonSyntaxError struct {
	msg string
	off int
}

func (e *jsonSyntaxError) Error() string { return fmt.Sprintf("%s at byte %d", e.msg, e.off) }

func (p *jsonParser) fail(msg string) error { return &jsonSyntaxError{msg: msg, off: p.i} }

func (p *jsonParser) unexpected(what string) error {
	if p.i >= len(p.b) {
		return p.fail("unexpected end of JSON input")
	}
	return p.fail(fmt.Sprintf("invalid character %q %s", p.b[p.i], what))
}

func (p *jsonParser) skipSpace() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// value parses the value at p.i (whitespace already skipped).
func (p *jsonParser) value(depth int) (any, error) {
	if p.i >= len(p.b) {
		return nil, p.fail("unexpected end of JSON input")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		if depth >= maxJSONDepth {
			return nil, p.fail("exceeded max depth")
		}
		return p.object(depth + 1)
	case c == '[':
		if depth >= maxJSONDepth {
			return nil, p.fail("exceeded max depth")
		}
		return p.array(depth + 1)
	case c == '"':
		return p.str()
	case c == '-' || ('0' <= c && c <= '9'):
		return p.number()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	}
	return nil, p.unexpected("looking for beginning of value")
}

func (p *jsonParser) literal(word string) error {
	for j := 0; j < len(word); j++ {
		if p.i >= len(p.b) || p.b[p.i] != word[j] {
			return p.unexpected("in literal " + word)
		}
		p.i++
	}
	return nil
}

func (p *jsonParser) object(depth int) (Object, error) {
	p.i++ // {
	o := Object{}
	p.skipSpace()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return o, nil
	}
	for {
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return nil, p.unexpected("looking for beginning of object key string")
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return nil, p.unexpected("after object key")
		}
		p.i++
		p.skipSpace()
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		if p.strict {
			if _, dup := o[k]; dup {
				return nil, errNotExact
			}
		}
		o[k] = v // a repeated key: the last one wins, as in encoding/json
		done, err := p.separator('}', "after object key:value pair")
		if err != nil {
			return nil, err
		}
		if done {
			return o, nil
		}
	}
}

func (p *jsonParser) array(depth int) ([]any, error) {
	p.i++ // [
	a := []any{}
	p.skipSpace()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return a, nil
	}
	for {
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		done, err := p.separator(']', "after array element")
		if err != nil {
			return nil, err
		}
		if done {
			return a, nil
		}
	}
}

// separator reads what follows an object member or an array element: a
// comma (more follow) or the closing bracket (done).
func (p *jsonParser) separator(closing byte, after string) (done bool, err error) {
	p.skipSpace()
	if p.i >= len(p.b) {
		return false, p.fail("unexpected end of JSON input")
	}
	switch p.b[p.i] {
	case ',':
		p.i++
		p.skipSpace()
		return false, nil
	case closing:
		p.i++
		return true, nil
	}
	return false, p.unexpected(after)
}

// str parses a string at p.i (the opening quote). Invalid UTF-8 and lone
// surrogates become U+FFFD, as in encoding/json.
func (p *jsonParser) str() (string, error) {
	p.i++ // "
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := intern(p.b[start:p.i])
			p.i++
			return s, nil
		case c == '\\':
			return p.strSlow(start)
		case c < 0x20:
			return "", p.unexpected("in string literal")
		case c < utf8.RuneSelf:
			p.i++
		default:
			r, size := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && size == 1 {
				return p.strSlow(start)
			}
			p.i += size
		}
	}
	return "", p.fail("unexpected end of JSON input")
}

// strSlow finishes a string that has escapes or invalid UTF-8, from start
// (just after the opening quote); p.i is at the first such byte.
func (p *jsonParser) strSlow(start int) (string, error) {
	out := make([]byte, 0, p.i-start+16)
	out = append(out, p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(out), nil
		case c < 0x20:
			return "", p.unexpected("in string literal")
		case c == '\\':
			p.i++
			if p.i >= len(p.b) {
				return "", p.fail("unexpected end of JSON input")
			}
			switch e := p.b[p.i]; e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := p.hex4(p.i + 1)
				if !ok {
					return "", p.unexpected("in \\u hexadecimal character escape")
				}
				p.i += 4
				if utf16.IsSurrogate(r) {
					if p.i+6 < len(p.b) && p.b[p.i+1] == '\\' && p.b[p.i+2] == 'u' {
						if r2, ok := p.hex4(p.i + 3); ok {
							if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
								out = utf8.AppendRune(out, dec)
								p.i += 6
								break
							}
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
			default:
				return "", p.unexpected("in string escape code")
			}
			p.i++
		case c < utf8.RuneSelf:
			out = append(out, c)
			p.i++
		default:
			r, size := utf8.DecodeRune(p.b[p.i:])
			out = utf8.AppendRune(out, r) // RuneError for invalid bytes
			p.i += size
		}
	}
	return "", p.fail("unexpected end of JSON input")
}

// hex4 reads the 4 hex digits at b[at:].
func (p *jsonParser) hex4(at int) (rune, bool) {
	if at+4 > len(p.b) {
		return 0, false
	}
	var r rune
	for _, c := range p.b[at : at+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r*16 + rune(c)
	}
	return r, true
}

// number parses a number literal into its canonical json.Number.
func (p *jsonParser) number() (json.Number, error) {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	switch {
	case p.i < len(p.b) && p.b[p.i] == '0':
		p.i++
	case p.i < len(p.b) && '1' <= p.b[p.i] && p.b[p.i] <= '9':
		digits()
	default:
		return "", p.unexpected("in numeric literal")
	}
	integer := true
	if p.i < len(p.b) && p.b[p.i] == '.' {
		integer = false
		p.i++
		if digits() == 0 {
			return "", p.unexpected("after decimal point in numeric literal")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		integer = false
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return "", p.unexpected("in exponent of numeric literal")
		}
	}
	lit := p.b[start:p.i]
	// An integer of up to 18 digits fits int64 and is already canonical
	// (JSON has no leading zeros or '+'), but for "-0".
	if integer && len(lit) <= 18 && string(lit) != "-0" {
		return json.Number(lit), nil
	}
	n, err := canonicalNumber(json.Number(lit))
	if err == nil && p.strict && string(n) != string(lit) {
		return "", errNotExact
	}
	return n, err
}

// canonicalNumber is the canonical form of a number literal: integers that
// fit int64 print as integers, everything else as the shortest float64
// form.
func canonicalNumber(x json.Number) (json.Number, error) {
	if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
		return json.Number(strconv.FormatInt(i, 10)), nil
	}
	f, err := strconv.ParseFloat(string(x), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return "", fmt.Errorf("%w: number %s is out of range", ErrInvalid, x)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return json.Number(strconv.FormatInt(int64(f), 10)), nil
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
}

// intern returns the keys every document and request repeats without
// allocating (every metadata leaf is {"timestamp": t}), else a copy of b.
func intern(b []byte) string {
	switch string(b) { // no allocation: the compiler compares in place
	case "timestamp":
		return "timestamp"
	case "state":
		return "state"
	case "reported":
		return "reported"
	case "desired":
		return "desired"
	case "metadata":
		return "metadata"
	case "version":
		return "version"
	case "clientToken":
		return "clientToken"
	}
	return string(b)
}
