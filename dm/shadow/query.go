package shadow

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/lastmile-dm/lastmile/dm/registry"
)

// Filter is a parsed fleet query. Its grammar:
//
//	filter  = term { "AND" term }            (AND is case-insensitive; no OR)
//	term    = field op value | label
//	field   = ("reported" | "desired" | "delta") { "." key }
//	op      = "=" | "!=" | "<" | "<=" | ">" | ">="
//	value   = a JSON literal: "string", number, true, false, null
//	label   = "labels." key ("=" | "!=") value     a label requirement,
//	        | "labels." key ("in" | "notin") "(" v, ... ")"
//	        | "labels." key | "!labels." key        (has / has not)
//
// A key is 1-128 characters other than space, '.', '"', '=', '!', '<', '>',
// '(' , ')'. Fields are read from the device's shadow (the classic one
// unless the query names another); a device without that shadow has no
// fields. Semantics:
//
//   - "= v" holds when the field exists and equals v; "= null" when the
//     field is absent (a stored shadow never holds null).
//   - "!= v" holds when the field is absent or differs (so
//     reported.firmware.version != "2.1.0" also selects devices that never
//     reported a version), "!= null" when the field exists.
//   - "<", "<=", ">", ">=" compare two numbers numerically or two strings
//     byte-wise; any other pair (or an absent field) does not match.
//
// Label terms are the registry's label selector (registry.ParseSelector),
// written with quotes or without.
type Filter struct {
	fields []fieldTerm
	labels registry.Selector
}

type fieldOp int

const (
	fEq fieldOp = iota
	fNe
	fLt
	fLe
	fGt
	fGe
)

type fieldTerm struct {
	half  string
	path  []string
	op    fieldOp
	value any // nil for null
}

// maxFilterLen bounds parsing work on outside input.
const maxFilterLen = 4096

// ParseFilter parses s; errors wrap ErrInvalid and name the bad term. The
// empty filter matches every device.
func ParseFilter(s string) (Filter, error) {
	if len(s) > maxFilterLen {
		return Filter{}, fmt.Errorf("%w: filter longer than %d bytes", ErrInvalid, maxFilterLen)
	}
	var f Filter
	var labelReqs []string
	terms, err := splitAnd(s)
	if err != nil {
		return Filter{}, err
	}
	for _, t := range terms {
		if rest, ok := cutLabel(t); ok {
			// One term is one requirement: a comma outside "in (...)" would
			// smuggle in another.
			outside := rest
			if i, j := strings.Index(rest, "("), strings.LastIndex(rest, ")"); i >= 0 && j > i {
				outside = rest[:i] + rest[j+1:]
			}
			if strings.Contains(outside, ",") {
				return Filter{}, fmt.Errorf("%w: filter term %q: a label value may not contain ','", ErrInvalid, t)
			}
			labelReqs = append(labelReqs, rest)
			continue
		}
		ft, err := parseFieldTerm(t)
		if err != nil {
			return Filter{}, err
		}
		f.fields = append(f.fields, ft)
	}
	if len(labelReqs) > 0 {
		sel, err := registry.ParseSelector(strings.Join(labelReqs, ","))
		if err != nil {
			return Filter{}, fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(err.Error(), registry.ErrInvalid.Error()+": "))
		}
		f.labels = sel
	}
	return f, nil
}

// splitAnd splits s on the word AND outside double quotes.
func splitAnd(s string) ([]string, error) {
	var terms []string
	inQuote, esc := false, false
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case inQuote && c == '\\':
			esc = true
		case c == '"':
			inQuote = !inQuote
		case !inQuote && (i == 0 || isSpace(s[i-1])) && i+3 <= len(s) && strings.EqualFold(s[i:i+3], "and") && (i+3 == len(s) || isSpace(s[i+3])):
			terms = append(terms, s[start:i])
			start = i + 3
			i += 2
		}
	}
	if inQuote {
		return nil, fmt.Errorf("%w: filter has an unterminated string", ErrInvalid)
	}
	terms = append(terms, s[start:])
	if len(terms) == 1 && strings.TrimSpace(terms[0]) == "" {
		return nil, nil
	}
	for i, t := range terms {
		terms[i] = strings.TrimSpace(t)
		if terms[i] == "" {
			return nil, fmt.Errorf("%w: filter %q has an empty term around AND", ErrInvalid, s)
		}
	}
	return terms, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// cutLabel returns a label term as a registry selector requirement.
func cutLabel(t string) (string, bool) {
	neg := ""
	if r, ok := strings.CutPrefix(t, "!"); ok {
		neg, t = "!", strings.TrimSpace(r)
	}
	rest, ok := strings.CutPrefix(t, "labels.")
	if !ok {
		return "", false
	}
	return neg + strings.ReplaceAll(rest, `"`, ""), true
}

func parseFieldTerm(t string) (fieldTerm, error) {
	bad := func(why string) (fieldTerm, error) {
		return fieldTerm{}, fmt.Errorf("%w: filter term %q: %s", ErrInvalid, t, why)
	}
	i := strings.IndexAny(t, "=!<>")
	if i < 0 {
		return bad("want field op value, e.g. reported.fw = \"2.1.0\"")
	}
	lhs, rest := strings.TrimSpace(t[:i]), t[i:]
	var op fieldOp
	switch {
	case strings.HasPrefix(rest, "!="):
		op, rest = fNe, rest[2:]
	case strings.HasPrefix(rest, "<="):
		op, rest = fLe, rest[2:]
	case strings.HasPrefix(rest, ">="):
		op, rest = fGe, rest[2:]
	case strings.HasPrefix(rest, "=="):
		op, rest = fEq, rest[2:]
	case strings.HasPrefix(rest, "="):
		op, rest = fEq, rest[1:]
	case strings.HasPrefix(rest, "<"):
		op, rest = fLt, rest[1:]
	case strings.HasPrefix(rest, ">"):
		op, rest = fGt, rest[1:]
	default:
		return bad("unknown operator")
	}
	segs := strings.Split(lhs, ".")
	switch segs[0] {
	case "reported", "desired", "delta":
	default:
		return bad("a field starts with reported., desired., delta. or labels.")
	}
	for _, k := range segs[1:] {
		if k == "" || len(k) > 128 || strings.ContainsAny(k, " \t\r\n\"=!<>()") {
			return bad(fmt.Sprintf("bad key %q in field", k))
		}
	}
	dec := json.NewDecoder(strings.NewReader(strings.TrimSpace(rest)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return bad("the value must be a JSON literal (quote strings)")
	}
	if dec.More() {
		return bad("unexpected text after the value")
	}
	switch v.(type) {
	case string, json.Number, bool, nil:
	default:
		return bad("the value must be a string, number, true, false or null")
	}
	cv, err := canonical(v)
	if err != nil {
		return bad(err.Error())
	}
	if v == nil && op != fEq && op != fNe {
		return bad("null compares only with = and !=")
	}
	return fieldTerm{half: segs[0], path: segs[1:], op: op, value: cv}, nil
}

// Matches reports whether a device with these labels and shadow (nil: no
// shadow) satisfies f.
func (f Filter) Matches(labels map[string]string, d *Document) bool {
	if !f.labels.Matches(labels) {
		return false
	}
	if len(f.fields) == 0 {
		return true
	}
	if d == nil {
		d = &Document{}
	}
	var delta Object
	deltaDone := false
	for _, t := range f.fields {
		var root Object
		switch t.half {
		case "desired":
			root = d.State.Desired
		case "reported":
			root = d.State.Reported
		default:
			if !deltaDone {
				delta, _ = d.Delta()
				deltaDone = true
			}
			root = delta
		}
		v, has := lookup(root, t.path)
		if !t.holds(v, has) {
			return false
		}
	}
	return true
}

// NeedsShadow reports whether f reads shadow fields (else labels decide).
func (f Filter) NeedsShadow() bool { return len(f.fields) > 0 }

func lookup(root Object, path []string) (any, bool) {
	var cur any = root
	if root == nil {
		return nil, false
	}
	for _, k := range path {
		o, ok := cur.(Object)
		if !ok {
			return nil, false
		}
		if cur, ok = o[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func (t fieldTerm) holds(v any, has bool) bool {
	switch t.op {
	case fEq:
		if t.value == nil {
			return !has
		}
		return has && reflect.DeepEqual(v, t.value)
	case fNe:
		if t.value == nil {
			return has
		}
		return !has || !reflect.DeepEqual(v, t.value)
	}
	if !has {
		return false
	}
	c, ok := compare(v, t.value)
	if !ok {
		return false
	}
	switch t.op {
	case fLt:
		return c < 0
	case fLe:
		return c <= 0
	case fGt:
		return c > 0
	default:
		return c >= 0
	}
}

func compare(a, b any) (int, bool) {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return 0, false
		}
		fx, err1 := strconv.ParseFloat(string(x), 64)
		fy, err2 := strconv.ParseFloat(string(y), 64)
		if err1 != nil || err2 != nil {
			return 0, false
		}
		switch {
		case fx < fy:
			return -1, true
		case fx > fy:
			return 1, true
		}
		return 0, true
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(x, y), true
	}
	return 0, false
}

// FleetQuery selects devices by their shadow and labels.
type FleetQuery struct {
	Filter Filter
	// Shadow is the shadow the filter reads: "" for the classic one.
	Shadow    string
	PageSize  int
	PageToken string
}

// FleetMatch is one device that matched.
type FleetMatch struct {
	Device *registry.Device
	// Document is the queried shadow, nil if the device has none.
	Document *Document
}

// FleetPage is one page of QueryDevices.
type FleetPage struct {
	Matches   []FleetMatch
	NextToken string
}

// Paging limits of QueryDevices, as for the registry's List: a page stops
// after scanning maxFleetScan devices even if it is not full.
const (
	DefaultFleetPageSize = 100
	MaxFleetPageSize     = 1000
	maxFleetScan         = 10_000
)

// QueryDevices returns one page of devices (in ID order) that match q.
func (s *Service) QueryDevices(ctx context.Context, q FleetQuery) (FleetPage, error) {
	if err := checkName(q.Shadow); err != nil {
		return FleetPage{}, err
	}
	size := q.PageSize
	switch {
	case size < 0:
		return FleetPage{}, fmt.Errorf("%w: page_size must not be negative", ErrInvalid)
	case size == 0:
		size = DefaultFleetPageSize
	case size > MaxFleetPageSize:
		size = MaxFleetPageSize
	}
	b, err := base64.RawURLEncoding.DecodeString(q.PageToken)
	if err != nil || len(b) > 256 {
		return FleetPage{}, fmt.Errorf("%w: page_token is not one this server issued", ErrInvalid)
	}
	after := string(b)
	var page FleetPage
	scanned := 0
	for len(page.Matches) < size && scanned < maxFleetScan {
		batch, err := s.cfg.Devices.ListDevices(ctx, after, min(max(size*2, 100), maxFleetScan-scanned))
		if err != nil {
			return FleetPage{}, fmt.Errorf("query devices: %w", err)
		}
		if len(batch) == 0 {
			return page, nil
		}
		scanned += len(batch)
		for _, d := range batch {
			after = d.ID
			if !q.Filter.labels.Matches(d.Labels) {
				continue
			}
			var doc *Document
			r, err := s.cfg.Store.GetShadow(ctx, d.ID, q.Shadow)
			switch {
			case err == nil:
				if doc, err = DecodeDocument(r.Doc); err != nil {
					return FleetPage{}, err
				}
			case !errors.Is(err, ErrNotFound):
				return FleetPage{}, fmt.Errorf("query devices: %w", err)
			}
			if !q.Filter.Matches(d.Labels, doc) {
				continue
			}
			page.Matches = append(page.Matches, FleetMatch{Device: d, Document: doc})
			if len(page.Matches) == size {
				break
			}
		}
	}
	page.NextToken = base64.RawURLEncoding.EncodeToString([]byte(after))
	return page, nil
}
