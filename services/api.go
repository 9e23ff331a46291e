package services

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/lastmile-dm/lastmile/dm/access"
	"github.com/lastmile-dm/lastmile/dm/command"
	"github.com/lastmile-dm/lastmile/dm/config"
	"github.com/lastmile-dm/lastmile/dm/event"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/shadow"
	"github.com/lastmile-dm/lastmile/dm/token"
	accessv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/access/v1"
	commandv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/command/v1"
	configv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/config/v1"
	devicev1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/device/v1"
	eventv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/event/v1"
	shadowv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/shadow/v1"
	snmpv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/snmp/v1"
	tunnelv1 "github.com/lastmile-dm/lastmile/proto/gen/go/lastmile/tunnel/v1"
	"github.com/lastmile-dm/lastmile/proto/gen/openapi"
	"github.com/lastmile-dm/lastmile/tunnel/relay"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/proxy"
)

// Config configures the API.
type Config struct {
	Registry *registry.Service
	Access   *access.Service
	Tokens   *token.Service
	Tunnels  *relay.Relay // optional: TunnelService is served when set
	// Shadows serves ShadowService; nil leaves it unregistered.
	Shadows *shadow.Service
	// Configs backs ConfigService; nil answers UNIMPLEMENTED.
	Configs *config.Service
	// Commands and Events back CommandService and EventService; nil
	// answers UNIMPLEMENTED.
	Commands *command.Service
	Events   *event.Bus
	SNMP     *proxy.Proxy // optional: SnmpService is served when set

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Ready reports nil when the node can serve, for /readyz.
	Ready func() error
	// GRPCServerOptions are added to the gRPC server's (e.g. TLS credentials).
	GRPCServerOptions []grpc.ServerOption
}

// CheckAndSetDefaults validates cfg and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Registry == nil || c.Access == nil || c.Tokens == nil {
		return errors.New("services: Registry, Access and Tokens are required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Gatherer == nil {
		c.Gatherer = prometheus.DefaultGatherer
	}
	if c.Ready == nil {
		c.Ready = func() error { return nil }
	}
	return nil
}

// API is the northbound API of one node.
type API struct {
	cfg  Config
	log  *slog.Logger
	grpc *grpc.Server
}

// New builds the gRPC server with every service registered.
func New(cfg Config) (*API, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	a := &API{cfg: cfg, log: cfg.Logger.With("component", "api")}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	auth := &authenticator{tokens: cfg.Tokens}
	opts := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.unary(a.log), auth.unary),
		grpc.ChainStreamInterceptor(m.stream(a.log), auth.stream),
		grpc.ForceServerCodecV2(newConnectCodec()), // tunnel uploads without two copies (tunnelcodec.go)
	}, cfg.GRPCServerOptions...)
	a.grpc = grpc.NewServer(opts...)
	devicev1.RegisterDeviceServiceServer(a.grpc, &deviceServer{reg: cfg.Registry, log: a.log, events: cfg.Events})
	accessv1.RegisterTokenServiceServer(a.grpc, &tokenServer{tokens: cfg.Tokens, log: a.log})
	accessv1.RegisterAccessServiceServer(a.grpc, &accessServer{access: cfg.Access, log: a.log})
	if cfg.Tunnels != nil {
		tunnelv1.RegisterTunnelServiceServer(a.grpc, &tunnelServer{relay: cfg.Tunnels, log: a.log})
	}
	if cfg.Shadows != nil {
		shadowv1.RegisterShadowServiceServer(a.grpc, &shadowServer{svc: cfg.Shadows, log: a.log})
	}
	if cfg.Configs != nil {
		configv1.RegisterConfigServiceServer(a.grpc, &configServer{svc: cfg.Configs, log: a.log})
	} else {
		configv1.RegisterConfigServiceServer(a.grpc, configv1.UnimplementedConfigServiceServer{})
	}
	commandv1.RegisterCommandServiceServer(a.grpc, &commandServer{cmds: cfg.Commands, log: a.log})
	eventv1.RegisterEventServiceServer(a.grpc, &eventServer{bus: cfg.Events, log: a.log})
	if cfg.SNMP != nil {
		snmpv1.RegisterSnmpServiceServer(a.grpc, &snmpServer{proxy: cfg.SNMP, log: a.log})
	}
	reflection.Register(a.grpc)
	return a, nil
}

// GRPCServer returns the gRPC server; the caller serves it on a listener.
func (a *API) GRPCServer() *grpc.Server { return a.grpc }

// HTTPHandler returns the HTTP side: the REST gateway (dialing the gRPC
// server at grpcDialAddr), /openapi.json, /healthz, /readyz, /metrics.
func (a *API) HTTPHandler(ctx context.Context, grpcDialAddr string, dialOpts ...grpc.DialOption) (http.Handler, error) {
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
	)
	for _, reg := range []func(context.Context, *runtime.ServeMux, string, []grpc.DialOption) error{
		devicev1.RegisterDeviceServiceHandlerFromEndpoint,
		accessv1.RegisterTokenServiceHandlerFromEndpoint,
		accessv1.RegisterAccessServiceHandlerFromEndpoint,
		tunnelv1.RegisterTunnelServiceHandlerFromEndpoint,
		shadowv1.RegisterShadowServiceHandlerFromEndpoint,
		configv1.RegisterConfigServiceHandlerFromEndpoint,
		commandv1.RegisterCommandServiceHandlerFromEndpoint,
		eventv1.RegisterEventServiceHandlerFromEndpoint,
		snmpv1.RegisterSnmpServiceHandlerFromEndpoint,
	} {
		if err := reg(ctx, gw, grpcDialAddr, dialOpts); err != nil {
			return nil, err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", gw)
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi.Spec)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.cfg.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.cfg.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not found: the API is under /v1/ (see /openapi.json)", http.StatusNotFound)
	})
	return mux, nil
}
