// Package apitest runs lastmile's northbound API in a test: the registry,
// access and token services on a fresh embedded store, and the real gRPC
// server and REST gateway on free loopback ports, stopped when the test
// ends. Tests add the services they exercise through services.Config.
package apitest

import (
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lastmile-dm/lastmile/dm/access"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/token"
	"github.com/lastmile-dm/lastmile/internal/store/embedded"
	"github.com/lastmile-dm/lastmile/services"
)

// Core is what every northbound API needs: the registry, access and token
// services over one embedded store.
type Core struct {
	Store    *embedded.Store
	Registry *registry.Service
	Access   *access.Service
	Tokens   *token.Service
}

// NewCore opens a fresh embedded store in a temporary directory.
func NewCore(t testing.TB) Core {
	t.Helper()
	st, err := embedded.Open(embedded.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c := Core{Store: st}
	if c.Registry, err = registry.New(registry.Config{Store: st, Presence: st}); err != nil {
		t.Fatal(err)
	}
	if c.Access, err = access.New(access.Config{Store: st}); err != nil {
		t.Fatal(err)
	}
	if c.Tokens, err = token.New(token.Config{Store: st}); err != nil {
		t.Fatal(err)
	}
	return c
}

// Token creates an API token with perms and returns its bearer secret.
func (c Core) Token(t testing.TB, name string, perms ...string) string {
	t.Helper()
	_, secret, err := c.Tokens.Create(context.Background(), name, perms, 0)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// Server is a running northbound API.
type Server struct {
	API      *services.API
	GRPCAddr string
	HTTPURL  string           // "http://127.0.0.1:port" of the REST gateway
	Conn     *grpc.ClientConn // a client connection to GRPCAddr
}

// Serve runs the API of c plus what cfg adds (cfg's Registry, Access and
// Tokens are c's; a nil Registerer gets a fresh Prometheus registry, which
// is also the Gatherer unless cfg has one).
func (c Core) Serve(t testing.TB, cfg services.Config) *Server {
	t.Helper()
	cfg.Registry, cfg.Access, cfg.Tokens = c.Registry, c.Access, c.Tokens
	if cfg.Registerer == nil {
		metrics := prometheus.NewRegistry()
		cfg.Registerer = metrics
		if cfg.Gatherer == nil {
			cfg.Gatherer = metrics
		}
	}
	api, err := services.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{API: api}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := api.GRPCServer()
	go func() { _ = gs.Serve(gl) }()
	t.Cleanup(gs.Stop)
	s.GRPCAddr = gl.Addr().String()

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h, err := api.HTTPHandler(ctx, s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h} //nolint:gosec // G112: a test server on loopback
	go func() { _ = hs.Serve(hl) }()
	t.Cleanup(func() { _ = hs.Close() })
	s.HTTPURL = "http://" + hl.Addr().String()

	if s.Conn, err = grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Conn.Close() })
	return s
}
