package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lastmile-dm/lastmile/broker"
	"github.com/lastmile-dm/lastmile/cmd/lastmile/internal/config"
	"github.com/lastmile-dm/lastmile/dm/access"
	"github.com/lastmile-dm/lastmile/dm/command"
	configpush "github.com/lastmile-dm/lastmile/dm/config"
	"github.com/lastmile-dm/lastmile/dm/credential"
	"github.com/lastmile-dm/lastmile/dm/event"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/shadow"
	"github.com/lastmile-dm/lastmile/dm/token"
	"github.com/lastmile-dm/lastmile/services"
	"github.com/lastmile-dm/lastmile/tunnel/relay"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/proxy"
)

// ShutdownTimeout bounds the graceful part of shutdown; after it, open
// gRPC streams and HTTP requests are cut.
const ShutdownTimeout = 10 * time.Second

// Node is one running lastmile server.
type Node struct {
	cfg    config.Config
	log    *slog.Logger
	bootID string

	store    Store
	registry *registry.Service
	access   *access.Service
	tokens   *token.Service
	broker   *broker.Server
	api      *services.API
	tunnels  *relay.Relay // nil when tunnel.enabled is false
	snmp     *proxy.Proxy // nil when snmp.enabled is false
	metrics  *prometheus.Registry
	events   *event.Bus
	commands *command.Service

	subs         subscriptionFanout // the broker's SubscriptionSink
	shadows      *shadow.Service
	shadowBridge *shadowBridge
	configs      *configpush.Service
	configBridge *configBridge

	started chan struct{}
	ready   atomic.Bool

	mu    sync.Mutex
	addrs map[string]net.Addr
}

// New opens the store and builds every component; it binds no port (Run
// does). cfg must have passed CheckAndSetDefaults. On error nothing is left
// open.
func New(cfg config.Config, logger *slog.Logger) (n *Node, err error) {
	if logger == nil {
		logger = slog.Default()
	}
	boot := make([]byte, 4)
	_, _ = rand.Read(boot)
	n = &Node{cfg: cfg, log: logger.With("component", "node"), bootID: hex.EncodeToString(boot), started: make(chan struct{})}

	n.metrics = prometheus.NewRegistry()
	n.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n.store, err = OpenStore(ctx, cfg, logger, n.metrics)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if n.shadowBridge != nil {
				n.shadowBridge.close()
			}
			n.configBridge.close()
			_ = n.store.Close()
		}
	}()

	n.registry, err = registry.New(registry.Config{Store: n.store, Presence: n.store, Verifier: credential.NewVerifier(100_000), Logger: logger})
	if err != nil {
		return nil, err
	}
	anonRole := ""
	if cfg.Access.Anonymous.Enabled {
		anonRole = cfg.Access.Anonymous.Role
	}
	n.access, err = access.New(access.Config{Store: n.store, Roles: cfg.Access.DomainRoles(), AnonymousRole: anonRole,
		Verifier: credential.NewVerifier(10_000), Logger: logger})
	if err != nil {
		return nil, err
	}
	n.tokens, err = token.New(token.Config{Store: n.store, Logger: logger})
	if err != nil {
		return nil, err
	}

	if err := n.newEvents(logger); err != nil {
		return nil, err
	}
	mqttTLS, err := n.mqttTLS()
	if err != nil {
		return nil, err
	}
	l := cfg.MQTT.Limits
	bcfg := broker.Config{
		NodeName: cfg.NodeName,
		TCPAddr:  cfg.MQTT.TCPAddr,
		WSAddr:   cfg.MQTT.WSAddr,
		WSTLS:    cfg.MQTT.WSTLS,
		TLS:      mqttTLS,
		Limits: broker.Limits{
			MaxPacketSize: l.MaxPacketSize, MaxInflight: l.MaxInflight, MaxPendingWrites: l.MaxPendingWrites,
			MaxPendingBytes:   l.MaxPendingBytes,
			MaxQueuedMessages: l.MaxQueuedMessages, MaxConnections: l.MaxConnections,
			ConnectRatePerIP: l.ConnectRatePerIP, ConnectBurstPerIP: l.ConnectBurstPerIP,
			MaxSessionExpiry: l.MaxSessionExpiry, DefaultSessionExpiry: l.DefaultSessionExpiry, MaxKeepalive: l.MaxKeepalive,
			SlowConsumerPolicy: l.SlowConsumerPolicy,
		},
		Authenticator: &authenticator{registry: n.registry, access: n.access, devices: n.store, anonymous: cfg.Access.Anonymous.Enabled},
		Presence:      &presenceSink{registry: n.registry, node: cfg.NodeName, bootID: n.bootID, events: n.events},
		Sessions:      n.store,
		Subscriptions: &n.subs,
		Logger:        logger,
		Registerer:    n.metrics,
	}
	if mqttTLS != nil {
		bcfg.TLSAddr = cfg.MQTT.TLSAddr
	}
	n.broker, err = broker.New(bcfg)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	n.registry.SetKicker(deviceKicker{n.broker})
	n.access.SetKicker(appKicker{n.broker})
	if err := n.setupShadows(logger); err != nil {
		return nil, fmt.Errorf("shadows: %w", err)
	}

	if err := n.setupConfig(logger); err != nil {
		return nil, fmt.Errorf("config push: %w", err)
	}

	if n.tunnels, err = n.newTunnels(logger); err != nil {
		return nil, err
	}
	if err := n.newCommands(logger); err != nil {
		return nil, fmt.Errorf("commands: %w", err)
	}
	if err := n.subscribeTelemetry(); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	if n.snmp, err = n.newSNMP(logger); err != nil {
		return nil, err
	}

	var grpcOpts []grpc.ServerOption
	if cfg.GRPC.TLS.Enabled() {
		tc, err := cfg.GRPC.TLS.Build("grpc.tls")
		if err != nil {
			return nil, err
		}
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(tc)))
	}
	n.api, err = services.New(services.Config{
		Registry: n.registry, Access: n.access, Tokens: n.tokens, Tunnels: n.tunnels, Shadows: n.shadows, Configs: n.configs, SNMP: n.snmp,
		Commands: n.commands, Events: n.events,
		Logger: logger, Registerer: n.metrics, Gatherer: n.metrics,
		Ready: n.Ready, GRPCServerOptions: grpcOpts,
	})
	if err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	return n, nil
}

func (n *Node) mqttTLS() (*tls.Config, error) {
	if !n.cfg.MQTT.TLS.Enabled() {
		return nil, nil
	}
	return n.cfg.MQTT.TLS.Build()
}

// Tokens returns the token service, for the first-start bootstrap token.
func (n *Node) Tokens() *token.Service { return n.tokens }

// Ready reports nil when the node serves: the broker is started and the
// store answers.
func (n *Node) Ready() error {
	if !n.ready.Load() {
		return errors.New("not started")
	}
	if err := pingStore(context.Background(), n.store); err != nil {
		return fmt.Errorf("store unreachable: %w", err)
	}
	return nil
}

// Started is closed once every listener is bound.
func (n *Node) Started() <-chan struct{} { return n.started }

// Addrs returns the bound listener addresses, keyed "mqtt", "mqtt_tls",
// "ws", "grpc" and "http" (only those that are on), once Started.
func (n *Node) Addrs() map[string]net.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]net.Addr, len(n.addrs))
	for k, v := range n.addrs {
		out[k] = v
	}
	return out
}

// Run starts every listener and serves until ctx is done, then shuts down
// gracefully and returns nil. A listener that cannot start is an error; the
// store is closed either way. Run may be called once.
func (n *Node) Run(ctx context.Context) (err error) {
	stopped := false
	defer func() {
		if !stopped {
			n.shutdown(nil, nil)
		}
	}()

	// Crash recovery: devices this node held before it died are offline.
	if err := n.store.ResetNode(ctx, n.cfg.NodeName, time.Now().UTC(), "node restarted"); err != nil {
		return fmt.Errorf("reset presence of node %s: %w", n.cfg.NodeName, err)
	}
	if err := n.broker.Start(ctx); err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	addrs := map[string]net.Addr{}
	for k, v := range n.broker.Addrs() {
		switch k {
		case "tcp":
			addrs["mqtt"] = v
		case "tls":
			addrs["mqtt_tls"] = v
		default:
			addrs[k] = v
		}
	}
	if err := n.listenSNMP(addrs); err != nil {
		return fmt.Errorf("snmp.listen: %w", err)
	}
	stopPprof, err := n.startPprof(addrs)
	if err != nil {
		return err
	}
	defer stopPprof()

	// gRPC; when it is switched off the REST gateway still needs one, on
	// loopback only.
	grpcAddr := n.cfg.GRPC.Addr
	public := grpcAddr != ""
	if !public {
		grpcAddr = "127.0.0.1:0"
	}
	gl, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		return fmt.Errorf("grpc.addr: listen on %s: %w", grpcAddr, err)
	}
	if public {
		addrs["grpc"] = gl.Addr()
	}
	gs := n.api.GRPCServer()
	go func() {
		if err := gs.Serve(gl); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("grpc server stopped", "error", err)
		}
	}()

	var hs *http.Server
	if n.cfg.HTTP.Addr != "" {
		hs, err = n.startHTTP(ctx, gl.Addr(), addrs)
		if err != nil {
			n.shutdown(gs, nil)
			stopped = true
			return err
		}
	}

	n.mu.Lock()
	n.addrs = addrs
	n.mu.Unlock()
	n.ready.Store(true)
	close(n.started)
	attrs := []any{"node", n.cfg.NodeName, "store", n.cfg.Store.Engine}
	for _, k := range []string{"mqtt", "mqtt_tls", "ws", "grpc", "http", "snmp", "pprof"} {
		if a, ok := addrs[k]; ok {
			attrs = append(attrs, k, a.String())
		}
	}
	n.log.Info("listening", attrs...)

	<-ctx.Done()
	n.log.Info("shutting down")
	n.shutdown(gs, hs)
	stopped = true
	n.log.Info("stopped")
	return nil
}

func (n *Node) startHTTP(ctx context.Context, grpcAddr net.Addr, addrs map[string]net.Addr) (*http.Server, error) {
	// The gateway dials our own gRPC port on loopback.
	dial := "127.0.0.1:" + portOf(grpcAddr)
	creds := insecure.NewCredentials()
	if n.cfg.GRPC.TLS.Enabled() {
		tc, err := n.cfg.GRPC.TLS.Build("grpc.tls")
		if err != nil {
			return nil, err
		}
		// Trust exactly our own certificate: it need not name 127.0.0.1.
		own := tc.Certificates[0].Certificate[0]
		// VerifyConnection runs on resumed sessions too.
		creds = credentials.NewTLS(&tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // replaced by the pin in VerifyConnection
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, own) {
					return errors.New("gateway: gRPC server presented a certificate that is not ours")
				}
				return nil
			},
		})
	}
	h, err := n.api.HTTPHandler(ctx, dial, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("http gateway: %w", err)
	}
	hl, err := net.Listen("tcp", n.cfg.HTTP.Addr)
	if err != nil {
		return nil, fmt.Errorf("http.addr: listen on %s: %w", n.cfg.HTTP.Addr, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)}
	if n.cfg.HTTP.TLS.Enabled() {
		tc, err := n.cfg.HTTP.TLS.Build("http.tls")
		if err != nil {
			_ = hl.Close()
			return nil, err
		}
		hs.TLSConfig = tc
		hl = tls.NewListener(hl, tc)
	}
	addrs["http"] = hl.Addr()
	go func() {
		if err := hs.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "error", err)
		}
	}()
	return hs, nil
}

// shutdown stops in dependency order: the northbound API first (so no call
// reaches a stopping broker), then the broker (flushing sessions and
// recording disconnects), then presence, then the store.
func (n *Node) shutdown(gs *grpc.Server, hs *http.Server) {
	n.ready.Store(false)
	n.stopTunnels()
	n.stopCommandsAndEvents()
	n.stopSNMP()
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if hs != nil {
		if err := hs.Shutdown(ctx); err != nil {
			_ = hs.Close()
		}
	}
	if gs != nil {
		done := make(chan struct{})
		go func() { gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			gs.Stop()
		}
	}
	n.shadowBridge.close()
	n.configBridge.close()
	if err := n.broker.Shutdown(ctx); err != nil {
		n.log.Error("broker shutdown", "error", err)
	}
	if err := n.store.ResetNode(ctx, n.cfg.NodeName, time.Now().UTC(), "node stopped"); err != nil {
		n.log.Error("mark devices offline", "error", err)
	}
	if err := n.store.Close(); err != nil {
		n.log.Error("close store", "error", err)
	}
}

func portOf(a net.Addr) string {
	_, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "0"
	}
	return port
}
