package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestConfigUsage: bad arguments to lmctl config fail before any call is
// made and say what is wrong (exit 2 for usage errors; a bad flag value is
// the flag package's error, exit 1, as for every lmctl verb).
func TestConfigUsage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
		code int
	}{
		{[]string{"config", "create", "wan"}, "give --format", 2},
		{[]string{"config", "create", "wan", "--require", "mtu"}, "key.path:type", 1},
		{[]string{"config", "assign", "wan"}, "want PROFILE VERSION", 2},
		{[]string{"config", "assign", "wan", "one", "--device", "d"}, "not a positive integer", 2},
		{[]string{"config", "assign", "wan", "0", "--device", "d"}, "not a positive integer", 2},
		{[]string{"config", "versions"}, "profile name", 2},
		{[]string{"config", "status", "a", "b"}, "rollout ID", 2},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(append([]string{"--server", "127.0.0.1:1", "--token", "lmt_x_y"}, c.args...), &out, &errb)
		if code != c.code || !strings.Contains(errb.String(), c.want) {
			t.Errorf("lmctl %s: exit %d, %q; want %d and %q", strings.Join(c.args, " "), code, errb.String(), c.code, c.want)
		}
	}
}
