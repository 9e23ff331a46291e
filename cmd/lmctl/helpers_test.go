package main

import (
	"bytes"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lastmile-dm/lastmile/dm/access"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/token"
	"github.com/lastmile-dm/lastmile/internal/store/embedded"
	"github.com/lastmile-dm/lastmile/internal/tunneltest"
	"github.com/lastmile-dm/lastmile/services"
)

// core is the registry, access and token services on a fresh embedded
// store: what every northbound API test needs before its own service.
type core struct {
	reg  *registry.Service
	acc  *access.Service
	toks *token.Service
}

func newCore(t testing.TB) core {
	t.Helper()
	st, err := embedded.Open(embedded.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	reg, _ := registry.New(registry.Config{Store: st, Presence: st})
	acc, _ := access.New(access.Config{Store: st})
	toks, _ := token.New(token.Config{Store: st})
	return core{reg, acc, toks}
}

// serveGRPC runs the northbound gRPC API of c plus whatever cfg adds, on
// a free loopback port, until the test ends, and returns its address.
func (c core) serveGRPC(t testing.TB, cfg services.Config) string {
	t.Helper()
	cfg.Registry, cfg.Access, cfg.Tokens = c.reg, c.acc, c.toks
	cfg.Registerer, cfg.Logger = prometheus.NewRegistry(), tunneltest.Quiet
	api, err := services.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = api.GRPCServer().Serve(gl) }()
	t.Cleanup(api.GRPCServer().Stop)
	return gl.Addr().String()
}

// lmctlAt returns a function running lmctl against addr with tok.
func lmctlAt(addr, tok string) func(args ...string) (stdout, stderr string, rc int) {
	return func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		rc := run(append([]string{"--server", addr, "--token", tok}, args...), &out, &errb)
		return out.String(), errb.String(), rc
	}
}
