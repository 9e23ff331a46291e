package shadow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"strconv"
)

// Object is a JSON object as decoded by this package: numbers are
// canonical json.Number values ("1.0" and "1e0" both become "1"), so two
// equal values compare equal with reflect.DeepEqual.
type Object = map[string]any

// State is the desired and reported halves of a shadow (or of their
// metadata). A nil map is an absent half.
type State struct {
	Desired  Object `json:"desired,omitempty"`
	Reported Object `json:"reported,omitempty"`
}

// Document is one stored shadow.
type Document struct {
	State State `json:"state"`
	// Metadata mirrors State; each leaf is {"timestamp": t}, the time the
	// leaf was last written. Arrays are one leaf.
	Metadata State `json:"metadata"`
	// Version increases by one on every accepted update.
	Version uint64 `json:"version"`
	// Timestamp is the time of the last update, Unix seconds.
	Timestamp int64 `json:"timestamp"`
	// ClientToken is the token of the update that made this version; it
	// makes a retried API update idempotent.
	ClientToken string `json:"clientToken,omitempty"`
}

// DecodeDocument parses a stored document. Documents this package wrote
// take a fast path (parseJSON); anything else, e.g. a field in another
// case, goes through encoding/json as before.
func DecodeDocument(b []byte) (*Document, error) {
	if d, ok := decodeDocumentFast(b); ok {
		return d, nil
	}
	var d Document
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("decode shadow document: %w", err)
	}
	return &d, nil
}

// decodeDocumentFast decodes what encode writes: ok is false for anything
// it does not recognise exactly, and the caller falls back.
func decodeDocumentFast(b []byte) (*Document, bool) {
	v, err := parseJSONWith(jsonParser{b: b, strict: true})
	if err != nil {
		return nil, false
	}
	o, ok := v.(Object)
	if !ok {
		return nil, false
	}
	d := &Document{}
	for k, v := range o {
		switch k {
		case "state":
			if d.State, ok = decodeState(v); !ok {
				return nil, false
			}
		case "metadata":
			if d.Metadata, ok = decodeState(v); !ok {
				return nil, false
			}
		case "version":
			n, isNum := v.(json.Number)
			u, err := strconv.ParseUint(string(n), 10, 64)
			if !isNum || err != nil {
				return nil, false
			}
			d.Version = u
		case "timestamp":
			n, isNum := v.(json.Number)
			i, err := strconv.ParseInt(string(n), 10, 64)
			if !isNum || err != nil {
				return nil, false
			}
			d.Timestamp = i
		case "clientToken":
			if d.ClientToken, ok = v.(string); !ok {
				return nil, false
			}
		default:
			return nil, false
		}
	}
	return d, true
}

func decodeState(v any) (State, bool) {
	o, ok := v.(Object)
	if !ok {
		return State{}, false
	}
	var s State
	for k, v := range o {
		h, ok := v.(Object)
		if !ok {
			return State{}, false
		}
		switch k {
		case "desired":
			s.Desired = h
		case "reported":
			s.Reported = h
		default:
			return State{}, false
		}
	}
	return s, true
}

// Encode returns the stored form of d.
func (d *Document) Encode() ([]byte, error) {
	b, _, err := d.encode()
	return b, err
}

// encode is Encode that also returns the length of the state's JSON (for
// the size limit) without encoding the state twice.
func (d *Document) encode() ([]byte, int, error) {
	b := make([]byte, 0, 512)
	b = append(b, `{"state":`...)
	start := len(b)
	b, err := appendState(b, d.State)
	if err != nil {
		return nil, 0, err
	}
	stateLen := len(b) - start
	b = append(b, `,"metadata":`...)
	if b, err = appendState(b, d.Metadata); err != nil {
		return nil, 0, err
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, d.Version, 10)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, d.Timestamp, 10)
	if d.ClientToken != "" {
		b = append(b, `,"clientToken":`...)
		b = appendJSONString(b, d.ClientToken)
	}
	return append(b, '}'), stateLen, nil
}

// appendState encodes s as json.Marshal does (empty halves omitted).
func appendState(b []byte, s State) ([]byte, error) {
	b = append(b, '{')
	var err error
	if len(s.Desired) > 0 {
		b = append(b, `"desired":`...)
		if b, err = appendJSON(b, s.Desired); err != nil {
			return nil, err
		}
	}
	if len(s.Reported) > 0 {
		if len(s.Desired) > 0 {
			b = append(b, ',')
		}
		b = append(b, `"reported":`...)
		if b, err = appendJSON(b, s.Reported); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// Delta returns the desired values that reported does not match (nil if
// none), and their desired metadata.
func (d *Document) Delta() (Object, Object) {
	delta := diff(d.State.Desired, d.State.Reported)
	if len(delta) == 0 {
		return nil, nil
	}
	return delta, metaFor(delta, d.Metadata.Desired)
}

// clone returns a deep copy of d.
func (d *Document) clone() *Document {
	c := *d
	c.State = State{Desired: cloneObj(d.State.Desired), Reported: cloneObj(d.State.Reported)}
	c.Metadata = State{Desired: cloneObj(d.Metadata.Desired), Reported: cloneObj(d.Metadata.Reported)}
	return &c
}

func cloneObj(o Object) Object {
	if o == nil {
		return nil
	}
	out := make(Object, len(o))
	for k, v := range o {
		out[k] = cloneVal(v)
	}
	return out
}

func cloneVal(v any) any {
	switch x := v.(type) {
	case Object:
		return cloneObj(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneVal(e)
		}
		return out
	}
	return v
}

// merge returns dst with patch applied (deep merge; nil deletes a key) and
// meta with ts stamped on every leaf it writes; objects left empty are
// removed. It never modifies dst, meta or patch: it copies the objects on
// the paths it changes and shares the rest, so a stored document can be
// read by others while the next version is built from it.
func merge(dst, meta Object, patch Object, ts json.Number) (Object, Object) {
	// Every leaf written gets the same {"timestamp": ts}: metadata is never
	// modified in place, so one object can stand for all of them.
	return mergeStamp(dst, meta, patch, Object{"timestamp": ts})
}

func mergeStamp(dst, meta Object, patch Object, stamp Object) (Object, Object) {
	// maps.Clone copies a map's table as is, much cheaper than inserting
	// its entries one by one; most updates write keys that exist already.
	nd, nm := maps.Clone(dst), maps.Clone(meta)
	if nd == nil {
		nd = make(Object, len(patch))
	}
	if nm == nil {
		nm = make(Object, len(patch))
	}
	for k, v := range patch {
		if v == nil {
			delete(nd, k)
			delete(nm, k)
			continue
		}
		if pv, ok := v.(Object); ok {
			dv, wasObj := dst[k].(Object)
			var mv Object
			if wasObj {
				mv, _ = meta[k].(Object)
			}
			sub, subMeta := mergeStamp(dv, mv, pv, stamp)
			if len(sub) == 0 {
				delete(nd, k)
				delete(nm, k)
				continue
			}
			nd[k], nm[k] = sub, subMeta
			continue
		}
		nd[k] = v
		nm[k] = stamp
	}
	return nd, nm
}

// diff returns the part of desired that reported does not match: keys
// missing from reported or with another value; objects recurse.
func diff(desired, reported Object) Object {
	var out Object
	for k, dv := range desired {
		rv, has := reported[k]
		if dobj, ok := dv.(Object); ok {
			if robj, ok := rv.(Object); ok {
				if sub := diff(dobj, robj); len(sub) > 0 {
					if out == nil {
						out = Object{}
					}
					out[k] = sub
				}
				continue
			}
		} else if has && reflect.DeepEqual(dv, rv) {
			continue
		}
		if out == nil {
			out = Object{}
		}
		out[k] = dv
	}
	return out
}

// metaFor returns the part of meta that covers the keys of state.
func metaFor(state, meta Object) Object {
	out := Object{}
	for k, v := range state {
		m, ok := meta[k]
		if !ok {
			continue
		}
		if sv, ok := v.(Object); ok {
			if mo, ok := m.(Object); ok {
				out[k] = metaFor(sv, mo)
				continue
			}
		}
		out[k] = m
	}
	return out
}

// depth returns the nesting depth of v: a scalar is 0, {"a":1} is 1.
func depth(v any) int {
	d := 0
	switch x := v.(type) {
	case Object:
		for _, e := range x {
			d = max(d, depth(e))
		}
		return d + 1
	case []any:
		for _, e := range x {
			d = max(d, depth(e))
		}
		return d + 1
	}
	return 0
}

// canonical rewrites every number in v to its canonical form, in place, and
// returns v. Integers that fit int64 print as integers, everything else as
// the shortest float64 form.
func canonical(v any) (any, error) {
	switch x := v.(type) {
	case Object:
		for k, e := range x {
			c, err := canonical(e)
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
	case []any:
		for i, e := range x {
			c, err := canonical(e)
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return json.Number(strconv.FormatInt(i, 10)), nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("%w: number %s is out of range", ErrInvalid, x)
		}
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return json.Number(strconv.FormatInt(int64(f), 10)), nil
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
	}
	return v, nil
}
