package registry

import (
	"errors"
	"testing"
)

func TestSelector(t *testing.T) {
	t.Parallel()
	labels := map[string]string{"region": "north", "tier": "gold", "env": "prod"}
	cases := []struct {
		sel  string
		want bool
	}{
		{"", true},
		{"region=north", true},
		{"region==north", true},
		{"region=south", false},
		{"region!=south", true},
		{"region!=north", false},
		{"missing!=x", true},
		{"env in (lab, prod)", true},
		{"env in (lab)", false},
		{"env notin (lab)", true},
		{"env notin (prod,lab)", false},
		{"missing notin (a)", true},
		{"tier", true},
		{"missing", false},
		{"!missing", true},
		{"!tier", false},
		{"region=north, tier=gold ,env in (prod)", true},
		{"region=north,tier=silver", false},
	}
	for _, c := range cases {
		s, err := ParseSelector(c.sel)
		if err != nil {
			t.Errorf("ParseSelector(%q): %v", c.sel, err)
			continue
		}
		if got := s.Matches(labels); got != c.want {
			t.Errorf("%q matches %v = %v, want %v", c.sel, labels, got, c.want)
		}
	}
}

func TestSelectorRejects(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"region=north,",
		",",
		"a b",
		"env in lab",
		"env in (lab",
		"env of (lab)",
		"=x",
		"bad key=x",
		"k=a=b",
		"!",
		"env in (a,b=c)",
	} {
		if _, err := ParseSelector(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSelector(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"", "a=b", "a!=b,c", "x in (a,b)", "!y", "a==b,c notin (d)", "((", "a=(b)"} {
		f.Add(s)
	}
	labels := map[string]string{"a": "b", "x": "a"}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		sel.Matches(labels)
		sel.Matches(nil)
	})
}
