// Command lastmile is the lastmile platform server: the MQTT broker, the
// device registry and the northbound gRPC/REST API in one process, on an
// embedded store or on Redis.
//
//	lastmile serve [flags]           run the server
//	lastmile token create|list|revoke  manage API tokens offline
//	lastmile version                 print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/lastmile-dm/lastmile/cmd/lastmile/internal/config"
	"github.com/lastmile-dm/lastmile/cmd/lastmile/internal/node"
	"github.com/lastmile-dm/lastmile/dm/token"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `lastmile — device management over MQTT

Usage:
  lastmile serve [flags]                 run the server (see lastmile serve --help)
  lastmile token create --name NAME      create an API token (server stopped, or on Redis)
  lastmile token list                    list API tokens
  lastmile token revoke ID               revoke an API token
  lastmile version                       print the version

Configuration: a YAML file (--config or LASTMILE_CONFIG), LASTMILE_* environment
variables and flags, in rising precedence. Reference: docs/configuration.md.
`

// run is main without os.Exit, so tests and main share it.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stderr)
	case "token", "tokens":
		err = tokenCmd(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "lastmile", versionString())
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "lastmile: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "lastmile: %v\n", err)
		return 1
	}
}

// errUsage marks an error whose message the flag package already printed.
var errUsage = errors.New("usage")

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		v += " " + bi.GoVersion
	}
	return v
}

// configFlags are the flags every subcommand that reads the configuration
// shares; each names the configuration key it sets.
type configFlags struct {
	path string
	// set holds flag name -> value for flags given on the command line.
	set map[string]string
}

// flagKeys maps a flag to the configuration key it overrides.
var flagKeys = []struct{ flag, key, help string }{
	{"data-dir", "data_dir", "`directory` of the embedded store"},
	{"node-name", "node_name", "`name` of this node in presence records (default: hostname)"},
	{"store", "store.engine", "store `engine`: embedded or redis"},
	{"redis-addr", "store.redis.addr", "Redis `host:port` (with --store redis)"},
	{"mqtt-addr", "mqtt.tcp_addr", "MQTT TCP listen `address` (\"\" = off)"},
	{"mqtt-tls-addr", "mqtt.tls_addr", "MQTT over TLS listen `address` (needs mqtt.tls.cert_file)"},
	{"ws-addr", "mqtt.ws_addr", "MQTT over WebSocket listen `address` (\"\" = off)"},
	{"grpc-addr", "grpc.addr", "gRPC listen `address` (\"\" = off)"},
	{"http-addr", "http.addr", "HTTP (REST, metrics, health) listen `address` (\"\" = off)"},
	{"log-level", "log.level", "`level`: debug, info, warn or error"},
	{"log-format", "log.format", "`format`: text or json"},
	{"pprof-addr", "debug.pprof_addr", "serve /debug/pprof/ on this `address` (unauthenticated; loopback only; \"\" = off)"},
}

func (cf *configFlags) register(fs *flag.FlagSet, only ...string) {
	fs.StringVar(&cf.path, "config", "", "YAML configuration `file` (default $"+config.EnvConfigPath+")")
	cf.set = map[string]string{}
	for _, f := range flagKeys {
		if len(only) > 0 && !contains(only, f.flag) {
			continue
		}
		fs.Func(f.flag, f.help+" ("+f.key+")", func(v string) error {
			cf.set[f.flag] = v
			return nil
		})
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// load merges defaults, file, environment and flags, and validates.
func (cf *configFlags) load() (config.Config, error) {
	path := cf.path
	if path == "" {
		path = os.Getenv(config.EnvConfigPath)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return config.Config{}, err
	}
	for _, f := range flagKeys {
		if v, ok := cf.set[f.flag]; ok {
			if err := cfg.Set(f.key, v); err != nil {
				return config.Config{}, fmt.Errorf("--%s: %w", f.flag, err)
			}
		}
	}
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return config.Config{}, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated already
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", "lastmile serve [--config FILE] [flags]", stderr)
	var cf configFlags
	cf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lastmile serve: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	logger := newLogger(cfg.Log, stderr)
	logger.Info("starting lastmile", "version", version, "node", cfg.NodeName, "store", cfg.Store.Engine, "gogc", tuneGC())

	n, err := node.New(cfg, logger)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills at once
	}()

	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	bearer, err := n.Tokens().Bootstrap(bctx)
	cancel()
	if err != nil {
		logger.Error("create the bootstrap token", "error", err)
	} else if bearer != "" {
		printBootstrap(stderr, bearer, cfg)
	}
	return n.Run(ctx)
}

// printBootstrap shows the first API token once, framed so it stands out of
// the log lines around it. It is the only place a token is ever printed by
// the server.
func printBootstrap(w io.Writer, bearer string, cfg config.Config) {
	again := "lastmile token create --data-dir " + cfg.DataDir + " --name admin"
	if cfg.Store.Engine == config.EngineRedis {
		again = "lastmile token create --store redis --redis-addr " + cfg.Store.Redis.Addr + " --name admin"
	}
	lines := []string{
		"lastmile: first start. Bootstrap API token (every permission):",
		"",
		"    " + bearer,
		"",
		"It is shown ONCE; only its hash is stored. Use it with lmctl or REST:",
		"",
		"    export LASTMILE_TOKEN=" + bearer,
		"    curl -H \"Authorization: Bearer $LASTMILE_TOKEN\" localhost:8080/v1/devices",
		"",
		"Lost it? Stop the server and run:",
		"    " + again,
	}
	width := 0
	for _, l := range lines {
		width = max(width, len(l))
	}
	bar := "+" + strings.Repeat("-", width+2) + "+"
	var b strings.Builder
	b.WriteString("\n" + bar + "\n")
	for _, l := range lines {
		b.WriteString("| " + l + strings.Repeat(" ", width-len(l)) + " |\n")
	}
	b.WriteString(bar + "\n\n")
	fmt.Fprint(w, b.String())
}

const tokenUsage = `Usage:
  lastmile token create --name NAME [--permissions P,...] [--ttl DURATION] [store flags]
  lastmile token list [--all] [store flags]
  lastmile token revoke ID [store flags]

Store flags: --config FILE, --data-dir DIR (embedded, server stopped),
or --store redis --redis-addr HOST:PORT (server may run).
Permissions: ` + "*, devices:read, devices:write, tokens:admin, access:admin" + ` (default *).
`

func tokenCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, tokenUsage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("token "+sub, "lastmile token "+sub+" [flags]", stderr)
	var cf configFlags
	cf.register(fs, "data-dir", "store", "redis-addr", "log-level", "log-format")
	var (
		name, perms string
		ttl         time.Duration
		all         bool
	)
	switch sub {
	case "create":
		fs.StringVar(&name, "name", "", "name of the token (required), e.g. who or what uses it")
		fs.StringVar(&perms, "permissions", token.PermAll, "comma-separated permissions: "+strings.Join(token.KnownPermissions, ", "))
		fs.DurationVar(&ttl, "ttl", 0, "lifetime, e.g. 720h (0 = no expiry)")
	case "list":
		fs.BoolVar(&all, "all", false, "include revoked and expired tokens")
	case "revoke":
	default:
		fmt.Fprintf(stderr, "lastmile token: unknown subcommand %q\n\n%s", sub, tokenUsage)
		return errUsage
	}
	// Allow "revoke ID --data-dir DIR" as well as flags first.
	var id string
	if sub == "revoke" && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if sub == "revoke" && id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	} else if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lastmile token %s: unexpected argument %q\n", sub, fs.Arg(0))
		return errUsage
	}
	if sub == "revoke" && id == "" {
		fmt.Fprintln(stderr, "lastmile token revoke: give the token ID")
		return errUsage
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	// Keep the server's info logs (store opening) out of a CLI's output.
	if _, ok := cf.set["log-level"]; !ok {
		cfg.Log.Level = "warn"
	}
	logger := newLogger(cfg.Log, stderr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	st, err := node.OpenStore(ctx, cfg, logger, nil)
	if errors.Is(err, node.ErrStoreLocked) {
		return fmt.Errorf("%w\nstop the server first or use `lmctl tokens create`", err)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	tokens, err := token.New(token.Config{Store: st, Logger: logger})
	if err != nil {
		return err
	}

	switch sub {
	case "create":
		if name == "" {
			fmt.Fprintln(stderr, "lastmile token create: --name is required")
			return errUsage
		}
		var ps []string
		for _, p := range strings.Split(perms, ",") {
			if p = strings.TrimSpace(p); p != "" {
				ps = append(ps, p)
			}
		}
		t, bearer, err := tokens.Create(ctx, name, ps, ttl)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "created token %s (%s), permissions %s; it is shown once:\n", t.ID, t.Name, strings.Join(t.Permissions, ","))
		fmt.Fprintln(stdout, bearer)
	case "list":
		fmt.Fprintf(stdout, "%-12s  %-20s  %-30s  %-20s  %s\n", "ID", "NAME", "PERMISSIONS", "CREATED", "STATE")
		after := ""
		for {
			page, next, err := tokens.List(ctx, after, 1000, all)
			if err != nil {
				return err
			}
			for _, t := range page {
				state := "active"
				switch {
				case !t.RevokedAt.IsZero():
					state = "revoked " + t.RevokedAt.Format(time.RFC3339)
				case !t.ExpiresAt.IsZero() && !t.Active(time.Now()):
					state = "expired " + t.ExpiresAt.Format(time.RFC3339)
				case !t.ExpiresAt.IsZero():
					state = "expires " + t.ExpiresAt.Format(time.RFC3339)
				}
				fmt.Fprintf(stdout, "%-12s  %-20s  %-30s  %-20s  %s\n", t.ID, t.Name, strings.Join(t.Permissions, ","), t.CreatedAt.Format(time.RFC3339), state)
			}
			if next == "" || len(page) == 0 {
				return nil
			}
			after = next
		}
	case "revoke":
		t, err := tokens.Revoke(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s (%s)\n", t.ID, t.Name)
	}
	return nil
}
