package main

import "bytes"

// lmctlAt returns a function running lmctl against addr with tok.
func lmctlAt(addr, tok string) func(args ...string) (stdout, stderr string, rc int) {
	return func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		rc := run(append([]string{"--server", addr, "--token", tok}, args...), &out, &errb)
		return out.String(), errb.String(), rc
	}
}
