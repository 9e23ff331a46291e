package main

import (
	"slices"
	"testing"
)

func TestSplitGlobals(t *testing.T) {
	cases := []struct {
		in            []string
		globals, rest []string
	}{
		{[]string{"devices", "get", "dev1", "-o", "json"}, []string{"-o", "json"}, []string{"devices", "get", "dev1"}},
		{[]string{"--server=x:1", "devices", "list", "--selector", "a=b"}, []string{"--server=x:1"}, []string{"devices", "list", "--selector", "a=b"}},
		{[]string{"--tls", "tokens", "create", "ci", "--perm", "*", "--token", "lmt_x"}, []string{"--tls", "--token", "lmt_x"}, []string{"tokens", "create", "ci", "--perm", "*"}},
		{[]string{"devices", "create", "-h"}, nil, []string{"devices", "create", "-h"}},
		{[]string{"-h"}, []string{"-h"}, nil},
	}
	for _, c := range cases {
		g, r := splitGlobals(c.in)
		if !slices.Equal(g, c.globals) || !slices.Equal(r, c.rest) {
			t.Errorf("splitGlobals(%q) = %q, %q; want %q, %q", c.in, g, r, c.globals, c.rest)
		}
	}
}
