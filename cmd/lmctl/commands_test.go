package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/lastmile-dm/lastmile/dm/token"
	"github.com/lastmile-dm/lastmile/internal/apitest"
	"github.com/lastmile-dm/lastmile/internal/tunneltest"
	"github.com/lastmile-dm/lastmile/services"
)

// TestRegistryVerbs drives the device, role, application and token verbs
// against the real gRPC API on an embedded store: each one-name verb finds
// its object, refuses a wrong argument count, and reports a missing object
// with the server's status.
func TestRegistryVerbs(t *testing.T) {
	t.Parallel()
	c := apitest.NewCore(t)
	lmctl := lmctlAt(c.Serve(t, services.Config{Logger: tunneltest.Quiet}).GRPCAddr, c.Token(t, "admin", token.PermAll))
	ok := func(want string, args ...string) string {
		t.Helper()
		out, errs, rc := lmctl(args...)
		if rc != 0 || !strings.Contains(out, want) {
			t.Fatalf("lmctl %q: rc %d, want %q in\n%s%s", args, rc, want, out, errs)
		}
		return out
	}
	fails := func(want string, args ...string) {
		t.Helper()
		out, errs, rc := lmctl(args...)
		if rc == 0 || !strings.Contains(errs, want) {
			t.Fatalf("lmctl %q: rc %d, want an error with %q, got\n%s%s", args, rc, want, out, errs)
		}
	}

	ok("dev1", "devices", "create", "dev1", "--label", "region=north")
	ok("region=north", "devices", "get", "dev1")
	fails("NotFound", "devices", "get", "nope")
	fails("want exactly one device ID, got 2 arguments", "devices", "get", "dev1", "dev2")
	fails("want exactly one device ID, got 0 arguments", "devices", "delete")

	ok("reader", "roles", "put", "reader", "--rule", "allow:subscribe:tele/+/#")
	ok("tele/+/#", "roles", "get", "reader")
	ok("reader", "roles", "list")
	ok("noc", "apps", "create", "noc", "--role", "reader")
	ok("app:noc", "apps", "get", "noc")
	ok("DELETED", "apps", "delete", "noc")
	fails("NotFound", "apps", "get", "noc")
	ok("DELETED", "roles", "delete", "reader")
	fails("NotFound", "roles", "get", "reader")

	out := ok("ci", "tokens", "create", "ci", "--perm", "devices:read", "-o", "json")
	id := jsonField(t, out, "id")
	ok("", "tokens", "revoke", id)
	fails("NotFound", "tokens", "revoke", "tok_missing")

	ok("", "devices", "delete", "dev1")
	fails("NotFound", "devices", "get", "dev1")
}

// jsonField finds the first value named key anywhere in a JSON document.
func jsonField(t *testing.T, doc, key string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, doc)
	}
	var find func(v any) (string, bool)
	find = func(v any) (string, bool) {
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x[key].(string); ok {
				return s, true
			}
			for _, e := range x {
				if s, ok := find(e); ok {
					return s, true
				}
			}
		case []any:
			for _, e := range x {
				if s, ok := find(e); ok {
					return s, true
				}
			}
		}
		return "", false
	}
	s, ok := find(v)
	if !ok {
		t.Fatalf("no %q in %s", key, doc)
	}
	return s
}
