package registry

import (
	"fmt"
	"slices"
	"strings"
)

// Selector is a parsed label selector in the Kubernetes syntax operators
// know: "region=north,tier!=gold,env in (lab,prod),env notin (x),legacy,!beta".
// All requirements must hold. The zero Selector matches everything.
type Selector struct {
	reqs []requirement
}

type selectorOp int

const (
	opEq selectorOp = iota
	opNe
	opIn
	opNotIn
	opExists
	opNotExists
)

type requirement struct {
	key    string
	op     selectorOp
	values []string
}

// maxSelectorLen bounds parsing work on outside input.
const maxSelectorLen = 4096

// ParseSelector parses s; errors wrap ErrInvalid and say where parsing failed.
func ParseSelector(s string) (Selector, error) {
	if len(s) > maxSelectorLen {
		return Selector{}, fmt.Errorf("%w: label selector longer than %d bytes", ErrInvalid, maxSelectorLen)
	}
	var sel Selector
	for _, part := range splitTop(s) {
		part = strings.TrimSpace(part)
		if part == "" {
			if strings.TrimSpace(s) == "" {
				break
			}
			return Selector{}, fmt.Errorf("%w: label selector %q has an empty requirement", ErrInvalid, s)
		}
		r, err := parseRequirement(part)
		if err != nil {
			return Selector{}, err
		}
		sel.reqs = append(sel.reqs, r)
	}
	return sel, nil
}

// splitTop splits on commas outside parentheses.
func splitTop(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

func parseRequirement(p string) (requirement, error) {
	bad := func(why string) (requirement, error) {
		return requirement{}, fmt.Errorf("%w: label selector requirement %q: %s", ErrInvalid, p, why)
	}
	if k, ok := strings.CutPrefix(p, "!"); ok {
		k = strings.TrimSpace(k)
		if err := validLabelKey(k); err != nil {
			return bad(err.Error())
		}
		return requirement{key: k, op: opNotExists}, nil
	}
	if i := strings.Index(p, "!="); i >= 0 {
		return binary(p, p[:i], p[i+2:], opNe)
	}
	if i := strings.Index(p, "=="); i >= 0 {
		return binary(p, p[:i], p[i+2:], opEq)
	}
	if i := strings.Index(p, "="); i >= 0 {
		return binary(p, p[:i], p[i+1:], opEq)
	}
	fields := strings.Fields(p)
	if len(fields) == 1 {
		if err := validLabelKey(fields[0]); err != nil {
			return bad(err.Error())
		}
		return requirement{key: fields[0], op: opExists}, nil
	}
	if len(fields) < 2 {
		return bad("expected key, key=value, key!=value, key in (...) or key notin (...)")
	}
	key, op := fields[0], fields[1]
	rest := strings.TrimSpace(strings.Join(fields[2:], " "))
	var o selectorOp
	switch op {
	case "in":
		o = opIn
	case "notin":
		o = opNotIn
	default:
		return bad(fmt.Sprintf("unknown operator %q", op))
	}
	if err := validLabelKey(key); err != nil {
		return bad(err.Error())
	}
	if !strings.HasPrefix(rest, "(") || !strings.HasSuffix(rest, ")") {
		return bad("values must be in parentheses")
	}
	var values []string
	for _, v := range strings.Split(rest[1:len(rest)-1], ",") {
		v = strings.TrimSpace(v)
		if err := validLabelValue(v); err != nil {
			return bad(err.Error())
		}
		values = append(values, v)
	}
	return requirement{key: key, op: o, values: values}, nil
}

func binary(p, key, value string, op selectorOp) (requirement, error) {
	key, value = strings.TrimSpace(key), strings.TrimSpace(value)
	if err := validLabelKey(key); err != nil {
		return requirement{}, fmt.Errorf("%w: label selector requirement %q: %w", ErrInvalid, p, err)
	}
	if err := validLabelValue(value); err != nil {
		return requirement{}, fmt.Errorf("%w: label selector requirement %q: %w", ErrInvalid, p, err)
	}
	return requirement{key: key, op: op, values: []string{value}}, nil
}

// Matches reports whether labels satisfy every requirement.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s.reqs {
		v, has := labels[r.key]
		var ok bool
		switch r.op {
		case opEq:
			ok = has && v == r.values[0]
		case opNe:
			ok = !has || v != r.values[0]
		case opIn:
			ok = has && slices.Contains(r.values, v)
		case opNotIn:
			ok = !has || !slices.Contains(r.values, v)
		case opExists:
			ok = has
		case opNotExists:
			ok = !has
		}
		if !ok {
			return false
		}
	}
	return true
}

// Empty reports whether the selector matches everything.
func (s Selector) Empty() bool { return len(s.reqs) == 0 }
